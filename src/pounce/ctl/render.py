"""Rich tables for ``pounce ctl status`` and ``pounce ctl workers``.

Pure functions from the reply dict to renderables: no I/O, no clock, so tests
render them to a string.  Replies are untrusted JSON from a daemon that may be
older or newer than this client: a missing or mistyped field shows as ``-``.
The shapes are documented in :mod:`pounce.control.handler`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from pounce.ctl.format import as_list, format_count, format_duration, format_text

STATE_STYLES: Mapping[str, str] = {
    "starting": "cyan",
    "booting": "cyan",
    "running": "green",
    "ready": "green",
    "reloading": "cyan",
    "draining": "yellow",
    "drained": "yellow",
    "stopping": "red",
    "unhealthy": "bold red",
    "exited": "dim",
}
"""How each supervisor or worker state is coloured; unknown states stay plain."""

WORKER_COLUMNS = ("ID", "PID/THREAD", "GEN", "STATE", "UPTIME", "REQUESTS", "CONNS", "RESTARTS")


def render_status(status: Mapping[str, Any]) -> Group:
    """The whole ``status`` screen: the daemon summary, then the workers table."""
    return Group(summary_table(status), workers_table(as_list(status.get("workers")), status))


def summary_table(status: Mapping[str, Any]) -> Table:
    """The daemon's pid, version, state, uptime, generation, crash budget and listeners."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    state = format_text(status.get("state"))
    table.add_row(
        "daemon",
        f"pid {format_text(status.get('pid'))}, pounce {format_text(status.get('version'))}",
    )
    table.add_row("state", Text(state, style=STATE_STYLES.get(state, "")))
    table.add_row("uptime", format_duration(status.get("uptime")))
    table.add_row("generation", format_text(status.get("generation")))
    workers = as_list(status.get("workers"))
    mode = format_text(status.get("worker_mode"))
    table.add_row("workers", f"{len(workers)} ({mode})")
    table.add_row("crash budget", crash_budget_text(status.get("crash_budget")))
    listeners = [format_text(item) for item in as_list(status.get("listeners"))]
    table.add_row("listeners", "\n".join(listeners) or "-")
    table.add_row("config", format_text(status.get("config")))
    return table


def crash_budget_text(budget: object) -> Text:
    """``1 of 5 restarts used in a 1m 00s window, 4 left``; red when none are left."""
    if not isinstance(budget, Mapping):
        return Text("-")
    used, limit, left = (format_text(budget.get(k)) for k in ("used", "max_restarts", "left"))
    window = format_duration(budget.get("window"))
    text = f"{used} of {limit} restarts used in a {window} window, {left} left"
    exhausted = isinstance(budget.get("left"), int) and budget["left"] <= 0
    return Text(text, style="bold red" if exhausted else "")


def workers_table(workers: Sequence[Any], status: Mapping[str, Any] | None = None) -> Table:
    """One row per worker.  Workers of an older generation than ``status["generation"]``
    (the ones a reload is draining) are dimmed; an unhealthy worker says so in red."""
    current = status.get("generation") if status is not None else None
    table = Table(title=f"workers ({len(workers)})", title_justify="left")
    for name in WORKER_COLUMNS:
        numeric = name in {"ID", "GEN", "REQUESTS", "CONNS", "RESTARTS"}
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for worker in workers:
        if not isinstance(worker, Mapping):
            continue
        generation = worker.get("generation")
        old = isinstance(current, int) and isinstance(generation, int) and generation < current
        table.add_row(
            format_text(worker.get("id")),
            _who(worker),
            format_text(generation),
            _worker_state(worker),
            format_duration(worker.get("uptime")),
            format_count(worker.get("requests")),
            format_count(worker.get("connections")),
            format_count(worker.get("restarts")),
            style="dim" if old else None,
        )
    return table


def _worker_state(worker: Mapping[str, Any]) -> Text:
    state = format_text(worker.get("state"))
    if worker.get("healthy") is False and state != "unhealthy":
        return Text(f"{state} (unhealthy)", style=STATE_STYLES["unhealthy"])
    return Text(state, style=STATE_STYLES.get(state, ""))


def _who(worker: Mapping[str, Any]) -> str:
    pid = worker.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool):
        return str(pid)
    return format_text(worker.get("thread"))
