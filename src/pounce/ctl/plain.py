"""``pounce ctl status`` and ``workers`` as plain text, for a pipe or a file.

No box characters, no padding, no colour: ``key: value`` lines for the daemon and
one tab-separated line per worker under a header, so ``grep``, ``cut -f`` and
``awk -F'\\t'`` read it.  Pure functions of the reply, like :mod:`pounce.ctl.render`
(whose tables a terminal gets), and without rich.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pounce.ctl.format import format_count, format_duration

WORKER_COLUMNS = ("ID", "PID/THREAD", "GEN", "STATE", "UPTIME", "REQUESTS", "CONNS", "RESTARTS")


def status_text(status: Mapping[str, Any]) -> str:
    """The daemon summary, a blank line, then the workers."""
    workers = _list(status.get("workers"))
    budget = status.get("crash_budget")
    if isinstance(budget, Mapping):
        used, limit, left = (_str(budget.get(k)) for k in ("used", "max_restarts", "left"))
        window = format_duration(budget.get("window"))
        budget_text = f"{used} of {limit} restarts used in a {window} window, {left} left"
    else:
        budget_text = "-"
    lines = [
        f"daemon: pid {_str(status.get('pid'))}, pounce {_str(status.get('version'))}",
        f"state: {_str(status.get('state'))}",
        f"uptime: {format_duration(status.get('uptime'))}",
        f"generation: {_str(status.get('generation'))}",
        f"workers: {len(workers)} ({_str(status.get('worker_mode'))})",
        f"crash budget: {budget_text}",
        *(f"listener: {_str(item)}" for item in _list(status.get("listeners"))),
        f"config: {_str(status.get('config'))}",
    ]
    return "\n".join(lines) + "\n\n" + workers_text(workers, status)


def workers_text(workers: Sequence[Any], status: Mapping[str, Any] | None = None) -> str:
    """A header and one tab-separated line per worker."""
    lines = ["\t".join(WORKER_COLUMNS)]
    for worker in workers:
        if not isinstance(worker, Mapping):
            continue
        state = _str(worker.get("state"))
        if worker.get("healthy") is False and state != "unhealthy":
            state += " (unhealthy)"
        pid = worker.get("pid")
        who = str(pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
        cells = (
            _str(worker.get("id")),
            who or _str(worker.get("thread")),
            _str(worker.get("generation")),
            state,
            format_duration(worker.get("uptime")),
            format_count(worker.get("requests")),
            format_count(worker.get("connections")),
            format_count(worker.get("restarts")),
        )
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def _str(value: object) -> str:
    if value is None or isinstance(value, Mapping | list):
        return "-"
    return str(value)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
