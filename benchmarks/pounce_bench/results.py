"""What one measurement records, and the pure math that sums them up.

Medians across repetitions for speeds, latencies, start-up and idle memory; the
maximum for peak memory; ratios are of medians (Pounce's median over the peer's).
Failed runs are counted but left out of every median.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class RunRecord:
    """One server under one workload in one repetition."""

    rep: int
    workload: str
    server: str
    ok: bool = False
    error: str | None = None
    requests_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_avg_ms: float | None = None
    latency_max_ms: float | None = None
    transfer_mib_per_s: float | None = None
    requests: int | None = None
    socket_errors: int = 0
    non_2xx: int = 0
    startup_ms: float | None = None
    processes: int | None = None
    rss_idle_kib: int | None = None
    worker_rss_idle_kib: int | None = None
    rss_peak_kib: int | None = None
    rss_after_kib: int | None = None
    idle_connections_open: int | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: Iterable[float | int | None]) -> float | None:
    """The median of the values that are not None, or None when there are none."""
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def maximum(values: Iterable[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs``, or None when either is missing or ``theirs`` is zero."""
    if ours is None or theirs is None or theirs == 0 or math.isnan(theirs):
        return None
    return ours / theirs


def summarise_cell(runs: Sequence[RunRecord]) -> dict[str, Any]:
    """Medians (peak: maximum) over the runs of one server under one workload."""
    good = [r for r in runs if r.ok]
    opens = [r.idle_connections_open for r in good if r.idle_connections_open is not None]
    return {
        "runs": len(runs),
        "failed": len(runs) - len(good),
        "requests_per_s": median(r.requests_per_s for r in good),
        "latency_p50_ms": median(r.latency_p50_ms for r in good),
        "latency_p99_ms": median(r.latency_p99_ms for r in good),
        "transfer_mib_per_s": median(r.transfer_mib_per_s for r in good),
        "startup_ms": median(r.startup_ms for r in runs),
        "rss_idle_kib": median(r.rss_idle_kib for r in runs),
        "worker_rss_idle_kib": median(r.worker_rss_idle_kib for r in runs),
        "rss_peak_kib": maximum(r.rss_peak_kib for r in good),
        "rss_after_kib": median(r.rss_after_kib for r in good),
        "errors": sum(r.socket_errors + r.non_2xx for r in runs),
        "idle_connections_open": min(opens) if opens else None,
        "rps_all": [r.requests_per_s for r in good],
        "errors_text": sorted({r.error for r in runs if r.error}),
    }


def summarise(
    runs: Sequence[RunRecord], workloads: Sequence[str], servers: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary[workload][server]``: :func:`summarise_cell` over the matching runs."""
    return {
        w: {
            s: summarise_cell([r for r in runs if r.workload == w and r.server == s])
            for s in servers
        }
        for w in workloads
    }


def summarise_servers(runs: Sequence[RunRecord], servers: Sequence[str]) -> dict[str, Any]:
    """Per server, across every workload: start-up and idle memory (medians), peak (max)."""
    out: dict[str, Any] = {}
    for s in servers:
        mine = [r for r in runs if r.server == s]
        peak = max(
            (r for r in mine if r.rss_peak_kib is not None),
            key=lambda r: r.rss_peak_kib or 0,
            default=None,
        )
        out[s] = {
            "processes": median(r.processes for r in mine),
            "startup_ms": median(r.startup_ms for r in mine),
            "rss_idle_kib": median(r.rss_idle_kib for r in mine),
            "worker_rss_idle_kib": median(r.worker_rss_idle_kib for r in mine),
            "rss_peak_kib": peak.rss_peak_kib if peak else None,
            "rss_peak_workload": peak.workload if peak else None,
            "rss_after_kib": median(r.rss_after_kib for r in mine if r.ok),
        }
    return out


def ratios(
    summary: dict[str, dict[str, dict[str, Any]]],
    ours: Sequence[str],
    peers: Sequence[str],
) -> dict[str, dict[str, dict[str, dict[str, float | None]]]]:
    """``ratios[workload][pounce_variant][peer]``: req/s and p99 latency, ours over theirs.

    Above 1 means more requests per second, but a *longer* p99 latency.
    """
    out: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
    for workload, cells in summary.items():
        out[workload] = {
            o: {
                p: {
                    "requests_per_s": ratio(cells[o]["requests_per_s"], cells[p]["requests_per_s"]),
                    "latency_p99_ms": ratio(cells[o]["latency_p99_ms"], cells[p]["latency_p99_ms"]),
                }
                for p in peers
            }
            for o in ours
        }
    return out
