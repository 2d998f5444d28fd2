"""``pounce ctl status`` and ``workers`` as plain text, for a pipe or a file.

No box characters, no padding, no colour: ``key: value`` lines for the daemon and
one tab-separated line per worker under a header, so ``grep``, ``cut -f`` and
``awk -F'\\t'`` read it.  Pure functions of the reply, like :mod:`pounce.ctl.render`
(whose tables a terminal gets), and without rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pounce.ctl.format import as_list, format_count, format_duration, format_text

WORKER_COLUMNS = ("ID", "PID/THREAD", "GEN", "STATE", "UPTIME", "REQUESTS", "CONNS", "RESTARTS")


def status_text(status: Mapping[str, Any]) -> str:
    """The daemon summary, a blank line, then the workers."""
    workers = as_list(status.get("workers"))
    budget = status.get("crash_budget")
    if isinstance(budget, Mapping):
        used, limit, left = (format_text(budget.get(k)) for k in ("used", "max_restarts", "left"))
        window = format_duration(budget.get("window"))
        budget_text = f"{used} of {limit} restarts used in a {window} window, {left} left"
    else:
        budget_text = "-"
    lines = [
        f"daemon: {_daemon(status)}",
        f"state: {format_text(status.get('state'))}",
        f"uptime: {format_duration(status.get('uptime'))}",
        f"generation: {format_text(status.get('generation'))}",
        f"workers: {len(workers)} ({format_text(status.get('worker_mode'))})",
        f"crash budget: {budget_text}",
        *(f"listener: {format_text(item)}" for item in as_list(status.get("listeners"))),
        f"config: {format_text(status.get('config'))}",
    ]
    return "\n".join(lines) + "\n\n" + workers_text(workers, status)


def workers_text(workers: Sequence[Any], status: Mapping[str, Any] | None = None) -> str:
    """A header and one tab-separated line per worker."""
    lines = ["\t".join(WORKER_COLUMNS)]
    for worker in workers:
        if not isinstance(worker, Mapping):
            continue
        state = format_text(worker.get("state"))
        if worker.get("healthy") is False and state != "unhealthy":
            state += " (unhealthy)"
        pid = worker.get("pid")
        who = str(pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
        cells = (
            format_text(worker.get("id")),
            who or format_text(worker.get("thread")),
            format_text(worker.get("generation")),
            state,
            format_duration(worker.get("uptime")),
            format_count(worker.get("requests")),
            format_count(worker.get("connections")),
            format_count(worker.get("restarts")),
        )
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def _daemon(status: Mapping[str, Any]) -> str:
    return f"pid {format_text(status.get('pid'))}, pounce {format_text(status.get('version'))}"
