"""The report: one JSON document, and markdown tables rendered from it (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pounce_bench.results import RunRecord, ratios, summarise, summarise_servers

SCHEMA = 1


def build_report(
    *,
    machine: dict[str, Any],
    settings: dict[str, Any],
    servers: dict[str, dict[str, Any]],
    skipped: dict[str, str],
    runs: Sequence[RunRecord],
    workloads: Sequence[str],
    started_at: str,
    finished_at: str,
) -> dict[str, Any]:
    """The whole report as JSON-ready data.  ``servers`` maps each name to at least
    ``kind`` ("pounce" or "peer"), in the order they are to be shown."""
    names = list(servers)
    ours = [n for n in names if servers[n]["kind"] == "pounce"]
    peers = [n for n in names if servers[n]["kind"] == "peer"]
    summary = summarise(runs, workloads, names)
    return {
        "schema": SCHEMA,
        "started_at": started_at,
        "finished_at": finished_at,
        "machine": machine,
        "settings": settings,
        "servers": servers,
        "skipped": skipped,
        "workloads": list(workloads),
        "summary": summary,
        "per_server": summarise_servers(runs, names),
        "ratios": ratios(summary, ours, peers),
        "runs": [r.as_dict() for r in runs],
    }


# -- markdown ---------------------------------------------------------------------------------


def fmt_number(value: float | None, digits: int = 0) -> str:
    """``12345.6`` -> ``"12,346"``; None -> ``"—"``."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ms(value: float | None) -> str:
    """Milliseconds with precision that suits their size."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_mib(kib: float | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"  # noqa: RUF001


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A markdown table; ``align`` has one ``l``/``r`` per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def spread(values: Sequence[float | None]) -> float | None:
    """Half the range as a fraction of the median: ``[90, 100, 110]`` -> 0.1."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    mid = statistics.median(present)
    return (max(present) - min(present)) / 2 / mid if mid else None


def _cell_rps(cell: dict[str, Any]) -> str:
    text = fmt_number(cell["requests_per_s"])
    if cell["runs"] and cell["failed"] == cell["runs"]:
        return "failed"
    plus_minus = spread(cell.get("rps_all") or [])
    if plus_minus is not None:
        text += f" ±{plus_minus * 100:.0f}%"
    if cell["failed"] or cell["errors"]:
        text += " †"
    return text


def render_markdown(report: dict[str, Any]) -> str:
    """Every table of the report, with the machine and the settings above them."""
    servers = list(report["servers"])
    parts = [_heading(report), _throughput(report, servers)]
    parts += _ratio_tables(report)
    parts += [_latency(report, servers), _memory(report, servers)]
    idle = _idle(report, servers)
    if idle:
        parts.append(idle)
    parts.append(_notes(report))
    return "\n\n".join(p for p in parts if p) + "\n"


def _heading(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    pin = (
        f"server pinned to CPU {s['server_cpu']}, wrk to CPU {s['client_cpu']}"
        if s.get("server_cpu") is not None
        else "no CPU pinning"
    )
    versions = "; ".join(
        f"**{name}**: {info['version']}" for name, info in report["servers"].items()
    )
    return "\n".join(
        [
            f"# Pounce benchmark, {report['started_at']}",
            "",
            f"- Machine: {m['cpu_model']}, {m['cpu_count']} cores, {m['os']}, "
            f"kernel {m['kernel']}, Python {m['python']}, wrk {m['wrk']}",
            f"- Load average at start / end: {_load(m, 'start')} / {_load(m, 'end')}",
            f"- Settings: {_plural(s['reps'], 'repetition')} of {s['duration_s']} s "
            f"(+{s['warmup_s']} s warm-up), {s['connections']} connections, one worker each, "
            f"{pin}, servers interleaved",
            f"- Versions: {versions}",
        ]
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _load(machine: dict[str, Any], when: str) -> str:
    values = machine.get(f"load_average_{when}") or []
    return ", ".join(f"{v:.2f}" for v in values) or "?"


def _throughput(report: dict[str, Any], servers: list[str]) -> str:
    rows = [
        [w, *(_cell_rps(report["summary"][w][s]) for s in servers)] for w in report["workloads"]
    ]
    title = "## Requests per second (median; ± half the range over the repetitions)"
    return title + "\n\n" + table(["workload", *servers], rows)


def _ratio_tables(report: dict[str, Any]) -> list[str]:
    out = []
    for ours in [n for n, i in report["servers"].items() if i["kind"] == "pounce"]:
        peers = [n for n, i in report["servers"].items() if i["kind"] == "peer"]
        if not peers:
            continue
        rows = [
            [w, *(fmt_ratio(report["ratios"][w][ours][p]["requests_per_s"]) for p in peers)]
            for w in report["workloads"]
        ]
        title = f"## {ours} ÷ peer, requests per second (above 1: {ours} is faster)"
        out.append(title + "\n\n" + table(["workload", *(f"vs {p}" for p in peers)], rows))
    return out


def _latency(report: dict[str, Any], servers: list[str]) -> str:
    rows = []
    for w in report["workloads"]:
        cells = report["summary"][w]
        rows.append(
            [
                w,
                *(
                    f"{fmt_ms(cells[s]['latency_p50_ms'])} / {fmt_ms(cells[s]['latency_p99_ms'])}"
                    for s in servers
                ),
            ]
        )
    return "## Latency p50 / p99, ms (median over repetitions)\n\n" + table(
        ["workload", *servers], rows
    )


def _memory(report: dict[str, Any], servers: list[str]) -> str:
    rows = []
    for s in servers:
        d = report["per_server"][s]
        peak = fmt_mib(d["rss_peak_kib"])
        if d["rss_peak_workload"]:
            peak += f" ({d['rss_peak_workload']})"
        rows.append(
            [
                s,
                fmt_number(d["processes"]),
                fmt_number(d["startup_ms"]),
                fmt_mib(d["rss_idle_kib"]),
                fmt_mib(d.get("worker_rss_idle_kib")),
                fmt_mib(d["rss_after_kib"]),
                peak,
            ]
        )
    header = ["server", "processes", "start-up to first 200, ms", "RSS idle, MiB"]
    header += ["one worker's RSS idle, MiB", "RSS after load, MiB"]
    title = "## Start-up and memory (whole process tree; medians, peak: highest)"
    return title + "\n\n" + table([*header, "RSS peak, MiB"], rows)


def _idle(report: dict[str, Any], servers: list[str]) -> str:
    idle = [w for w in report["workloads"] if w.startswith("idle")]
    if not idle:
        return ""
    want = report["settings"].get("idle_connections")
    rows = [
        [w, *(fmt_number(report["summary"][w][s]["idle_connections_open"]) for s in servers)]
        for w in idle
    ]
    title = f"## Idle connections still open after the load (of {want})"
    return title + "\n\n" + table(["workload", *servers], rows)


def _notes(report: dict[str, Any]) -> str:
    cells = [c for w in report["workloads"] for c in report["summary"][w].values()]
    lines = []
    if any(c["failed"] or c["errors"] for c in cells):
        lines.append(
            "† some runs failed or had socket errors / non-2xx answers; see `runs` in the JSON."
        )
    lines += [
        "RSS sums VmRSS (peak: VmHWM) over the server's process tree "
        "(a supervisor and its worker count together); one worker's RSS is the largest "
        "VmRSS of a process without children (a single-process server's only process).",
    ]
    for name, why in report["skipped"].items():
        lines.append(f"Not run: {name}: {why}.")
    for w in report["workloads"]:
        for s, cell in report["summary"][w].items():
            for err in cell["errors_text"]:
                lines.append(f"{w} / {s}: {err.splitlines()[0]}")
    return "\n".join(f"- {line}" for line in lines)
