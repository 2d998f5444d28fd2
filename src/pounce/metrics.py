"""Request metrics: counted in each worker, added up by the supervisor, rendered for Prometheus.

A worker keeps a :class:`Collector`; its :meth:`~Collector.snapshot` is plain JSON
data that crosses the process boundary.  The supervisor keeps the last snapshot of
every live worker and folds the final one of each exited worker into a retired
total, so counters never go backwards across restarts and reloads.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

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


class Collector:
    """One worker's counters.  Not thread-safe: used from its worker's event loop."""

    __slots__ = (
        "_buckets",
        "_duration_sum",
        "_requests",
        "accept_pauses",
        "apps_cancelled",
        "connections",
        "in_flight",
        "response_bytes",
    )

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._duration_sum = 0.0
        self.response_bytes = 0
        self.in_flight = 0
        self.connections = 0
        #: Apps cancelled because they ran on past http.disconnect_grace after their client left.
        self.apps_cancelled = 0
        #: Times accepting paused because the process ran out of file descriptors.
        self.accept_pauses = 0

    def observe(self, method: str, status: int, duration: float, nbytes: int) -> None:
        """Count one finished request."""
        key = (method, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        self._buckets[bisect_left(BUCKETS, duration)] += 1
        self._duration_sum += duration
        self.response_bytes += nbytes

    @property
    def requests_total(self) -> int:
        return sum(self._requests.values())

    def snapshot(self) -> Snapshot:
        return {
            "requests": {f"{m} {s}": n for (m, s), n in self._requests.items()},
            "buckets": list(self._buckets),
            "duration_sum": self._duration_sum,
            "response_bytes": self.response_bytes,
            "in_flight": self.in_flight,
            "connections": self.connections,
            "apps_cancelled": self.apps_cancelled,
            "accept_pauses": self.accept_pauses,
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


def merge(retired: Mapping[str, Any], live: Iterable[Mapping[str, Any]]) -> Snapshot:
    """Counters of retired plus live workers; gauges of the live ones only."""
    total = empty_snapshot()
    add_counters(total, retired)
    for part in live:
        add_counters(total, part)
        total["in_flight"] += int(part.get("in_flight", 0))
        total["connections"] += int(part.get("connections", 0))
    return total


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(total: Mapping[str, Any], daemon: Mapping[str, Any]) -> str:
    """Prometheus text exposition format 0.0.4.

    ``daemon`` holds supervisor figures: ``workers`` {state: n}, ``restarts``
    {reason: n}, ``reloads`` {result: n}, ``generation``, ``crash_budget`` {used, left}.
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
    return "\n".join(out) + "\n"
