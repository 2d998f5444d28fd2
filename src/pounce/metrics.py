"""Request metrics: counted in each worker, added up by the supervisor, rendered for Prometheus.

A worker keeps a :class:`Collector`; its :meth:`~Collector.snapshot` is plain JSON
data that crosses the process boundary.  The supervisor keeps the last snapshot of
every live worker and folds the final one of each exited worker into a retired
total, so counters never go backwards across restarts and reloads.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pounce._version import __version__

# Request duration buckets in seconds (Prometheus client defaults, plus finer low end).
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

Snapshot = dict[str, Any]

#: Why a request or connection was turned away (``pounce_requests_shed_total{reason}``).
SHED_REASONS: tuple[str, ...] = ("max_connections", "concurrency", "queue_timeout", "rate_limit")


class Collector:
    """One worker's counters.  Not thread-safe: used from its worker's event loop."""

    __slots__ = (
        "_buckets",
        "_duration_sum",
        "_requests",
        "accept_pauses",
        "apps_cancelled",
        "response_bytes",
        "shed",
    )

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._duration_sum = 0.0
        self.response_bytes = 0
        #: Apps cancelled because they ran on past http.disconnect_grace after their client left.
        self.apps_cancelled = 0
        #: Times accepting paused because the process ran out of file descriptors.
        self.accept_pauses = 0
        #: Requests (and connections) turned away by the limits, by reason (SHED_REASONS).
        self.shed: dict[str, int] = {}

    def observe(self, method: str, status: int, duration: float, nbytes: int) -> None:
        """Count one finished request."""
        key = (method, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        self._buckets[bisect_left(BUCKETS, duration)] += 1
        self._duration_sum += duration
        self.response_bytes += nbytes

    def count_shed(self, reason: str) -> None:
        """Count one request or connection turned away for ``reason`` (one of SHED_REASONS)."""
        self.shed[reason] = self.shed.get(reason, 0) + 1

    @property
    def requests_total(self) -> int:
        return sum(self._requests.values())

    def snapshot(self, in_flight: int = 0, connections: int = 0) -> Snapshot:
        """The counters, with the gauges the worker reads now (requests, connections)."""
        return {
            "requests": {f"{m} {s}": n for (m, s), n in self._requests.items()},
            "buckets": list(self._buckets),
            "duration_sum": self._duration_sum,
            "response_bytes": self.response_bytes,
            "in_flight": in_flight,
            "connections": connections,
            "apps_cancelled": self.apps_cancelled,
            "accept_pauses": self.accept_pauses,
            "shed": dict(self.shed),
        }


def empty_snapshot() -> Snapshot:
    return Collector().snapshot()


def add_counters(total: Snapshot, part: Mapping[str, Any]) -> None:
    """Add the counters (not the gauges) of ``part`` into ``total`` in place."""
    requests = total["requests"]
    for key, value in part.get("requests", {}).items():
        requests[key] = requests.get(key, 0) + int(value)
    buckets = part.get("buckets", [])
    for i, value in enumerate(buckets[: len(total["buckets"])]):
        total["buckets"][i] += int(value)
    total["duration_sum"] += float(part.get("duration_sum", 0.0))
    total["response_bytes"] += int(part.get("response_bytes", 0))
    for key in ("apps_cancelled", "accept_pauses"):
        total[key] += int(part.get(key, 0))
    shed = total["shed"]
    for reason, value in part.get("shed", {}).items():
        shed[reason] = shed.get(reason, 0) + int(value)


def merge(retired: Mapping[str, Any], live: Iterable[Mapping[str, Any]]) -> Snapshot:
    """Counters of retired plus live workers; gauges of the live ones only."""
    total = empty_snapshot()
    add_counters(total, retired)
    for part in live:
        add_counters(total, part)
        total["in_flight"] += int(part.get("in_flight", 0))
        total["connections"] += int(part.get("connections", 0))
    return total


# -- process figures, read from /proc the way prometheus_client's ProcessCollector does ----

#: ``process_*`` families: (name, type, help), in the order they are written.
PROCESS_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
    ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
    ("process_open_fds", "gauge", "Number of open file descriptors."),
    ("process_max_fds", "gauge", "Maximum number of open file descriptors."),
)


@functools.cache
def _boot_time(proc: str) -> float:
    with open(os.path.join(proc, "stat"), "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def read_process(pid: int | str = "self", proc: str = "/proc") -> dict[str, float] | None:
    """The ``process_*`` figures of one process, or ``None`` without /proc (or the process).

    Reads ``/proc/PID/stat``, ``fd`` and ``limits``: a few small files, no
    subprocess, cheap enough for every scrape.
    """
    base = os.path.join(proc, str(pid))
    try:
        ticks = float(os.sysconf("SC_CLK_TCK"))
        with open(os.path.join(base, "stat"), "rb") as stat:
            parts = stat.read().rsplit(b")", 1)[-1].split()
        figures = {
            "process_cpu_seconds_total": (float(parts[11]) + float(parts[12])) / ticks,
            "process_resident_memory_bytes": float(parts[21]) * os.sysconf("SC_PAGE_SIZE"),
            "process_virtual_memory_bytes": float(parts[20]),
            "process_start_time_seconds": float(parts[19]) / ticks + _boot_time(proc),
            "process_open_fds": float(len(os.listdir(os.path.join(base, "fd")))),
        }
        with open(os.path.join(base, "limits"), "rb") as limits:
            for line in limits:
                if line.startswith(b"Max open files"):
                    soft = line.split()[3]
                    if soft.isdigit():
                        figures["process_max_fds"] = float(soft)
    except (OSError, ValueError, IndexError):
        return None
    return figures


def process_figures(workers: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """``process_*`` figures by ``worker`` label: ``supervisor`` and each worker process."""
    out: dict[str, dict[str, float]] = {}
    for label, pid in {"supervisor": os.getpid(), **workers}.items():
        figures = read_process(pid)
        if figures is not None:
            out[label] = figures
    return out


@functools.cache
def build_labels() -> dict[str, str]:
    """The labels of ``pounce_build_info``."""
    gil_check = getattr(sys, "_is_gil_enabled", None)
    return {
        "version": __version__,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "gil": "disabled" if gil_check is not None and not gil_check() else "enabled",
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(total: Mapping[str, Any], daemon: Mapping[str, Any]) -> str:
    """Prometheus text exposition format 0.0.4.

    ``daemon`` holds supervisor figures: ``workers`` {state: n}, ``restarts``
    {reason: n}, ``reloads`` {result: n}, ``generation``, ``crash_budget`` {used, left},
    and optionally ``per_worker`` {worker: snapshot}, ``processes`` {worker:
    :func:`read_process` figures} and ``last_reload`` {time, ok}.
    """
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("http_requests_total", "counter", "HTTP requests answered, by method and status.")
    for key in sorted(total["requests"]):
        method, _, status = key.partition(" ")
        value = total["requests"][key]
        out.append(f'http_requests_total{{method="{_label(method)}",status="{status}"}} {value}')
    family("http_request_duration_seconds", "histogram", "Time from request head to response end.")
    cumulative = 0
    for bound, count in zip((*BUCKETS, float("inf")), total["buckets"], strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else _num(bound)
        out.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {cumulative}')
    out.append(f"http_request_duration_seconds_sum {_num(float(total['duration_sum']))}")
    out.append(f"http_request_duration_seconds_count {cumulative}")
    family("http_requests_in_flight", "gauge", "Requests being answered now.")
    out.append(f"http_requests_in_flight {total['in_flight']}")
    family("http_connections_active", "gauge", "Open client connections.")
    out.append(f"http_connections_active {total['connections']}")
    family("http_response_bytes_total", "counter", "Bytes written in responses, heads included.")
    out.append(f"http_response_bytes_total {total['response_bytes']}")
    family(
        "pounce_apps_cancelled_total",
        "counter",
        "Requests whose app was cancelled, still running http.disconnect_grace after its "
        "client left.",
    )
    out.append(f"pounce_apps_cancelled_total {total.get('apps_cancelled', 0)}")
    family(
        "pounce_accept_pauses_total",
        "counter",
        "Times a worker paused accepting connections because it ran out of file descriptors.",
    )
    out.append(f"pounce_accept_pauses_total {total.get('accept_pauses', 0)}")
    family(
        "pounce_requests_shed_total",
        "counter",
        "Requests and connections turned away by [limits], by reason.",
    )
    shed = total.get("shed", {})
    for reason in sorted({*SHED_REASONS, *shed}):
        out.append(f'pounce_requests_shed_total{{reason="{_label(reason)}"}} {shed.get(reason, 0)}')
    family("pounce_workers", "gauge", "Workers by state.")
    for state, n in sorted(daemon.get("workers", {}).items()):
        out.append(f'pounce_workers{{state="{_label(state)}"}} {n}')
    family("pounce_worker_restarts_total", "counter", "Worker restarts by the reason of the exit.")
    for reason, n in sorted(daemon.get("restarts", {}).items()):
        out.append(f'pounce_worker_restarts_total{{reason="{_label(reason)}"}} {n}')
    family("pounce_reloads_total", "counter", "Reloads by result.")
    for result, n in sorted(daemon.get("reloads", {}).items()):
        out.append(f'pounce_reloads_total{{result="{_label(result)}"}} {n}')
    family("pounce_generation", "gauge", "The serving worker generation.")
    out.append(f"pounce_generation {daemon.get('generation', 0)}")
    budget = daemon.get("crash_budget", {})
    family("pounce_crash_budget_used", "gauge", "Restarts counted in the crash budget window.")
    out.append(f"pounce_crash_budget_used {budget.get('used', 0)}")
    family("pounce_crash_budget_left", "gauge", "Restarts left before the supervisor gives up.")
    out.append(f"pounce_crash_budget_left {budget.get('left', 0)}")
    family("pounce_build_info", "gauge", "Pounce and Python versions; always 1.")
    labels = ",".join(f'{k}="{_label(v)}"' for k, v in build_labels().items())
    out.append(f"pounce_build_info{{{labels}}} 1")
    last = daemon.get("last_reload")
    if last is not None:
        family(
            "pounce_last_reload_success_timestamp_seconds",
            "gauge",
            "When the configuration was last loaded successfully (start or reload), unix time.",
        )
        out.append(f"pounce_last_reload_success_timestamp_seconds {_num(float(last['time']))}")
        family("pounce_last_reload_successful", "gauge", "Whether the last reload succeeded.")
        out.append(f"pounce_last_reload_successful {1 if last['ok'] else 0}")
    _per_worker(out, family, daemon.get("per_worker", {}))
    processes: Mapping[str, Mapping[str, float]] = daemon.get("processes", {})
    for name, kind, help_text in PROCESS_FAMILIES:
        rows = [(w, f[name]) for w, f in processes.items() if name in f]
        if rows:
            family(name, kind, help_text)
            out += [f'{name}{{worker="{_label(w)}"}} {_num(v)}' for w, v in rows]
    return "\n".join(out) + "\n"


def _per_worker(
    out: list[str],
    family: Callable[[str, str, str], None],
    per_worker: Mapping[str, Mapping[str, Any]],
) -> None:
    """Figures of each live worker, labelled ``worker``: how evenly the load is spread."""
    if not per_worker:
        return
    family("pounce_worker_requests_total", "counter", "HTTP requests answered by each worker.")
    for worker, snap in per_worker.items():
        count = sum(int(n) for n in snap.get("requests", {}).values())
        out.append(f'pounce_worker_requests_total{{worker="{_label(worker)}"}} {count}')
    family("pounce_worker_requests_in_flight", "gauge", "Requests each worker is answering now.")
    for worker, snap in per_worker.items():
        value = int(snap.get("in_flight", 0))
        out.append(f'pounce_worker_requests_in_flight{{worker="{_label(worker)}"}} {value}')
    family("pounce_worker_connections_active", "gauge", "Open client connections per worker.")
    for worker, snap in per_worker.items():
        value = int(snap.get("connections", 0))
        out.append(f'pounce_worker_connections_active{{worker="{_label(worker)}"}} {value}')
