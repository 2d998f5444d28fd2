"""The ``status`` and ``workers`` replies, built from plain data (pure: the clock's
reading is passed in)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pounce.control.handler import (
    CrashBudget,
    StatusResult,
    SupervisorState,
    WorkerInfo,
    WorkerState,
)


class WorkerView(Protocol):
    """What the status needs of a worker handle."""

    @property
    def id(self) -> int: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def thread(self) -> threading.Thread | None: ...
    @property
    def generation(self) -> int: ...
    @property
    def state(self) -> WorkerState: ...
    @property
    def started(self) -> float: ...
    @property
    def restarts(self) -> int: ...
    @property
    def stats(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class DaemonView:
    """What the status needs of the daemon, besides its workers."""

    pid: int
    version: str
    state: SupervisorState
    started: float
    generation: int
    worker_mode: str
    target_workers: int
    listeners: list[str]
    crash_budget: CrashBudget
    restarts: dict[str, int]
    reloads: dict[str, int]
    config: str | None


def worker_info(h: WorkerView, now: float) -> WorkerInfo:
    stats = h.stats
    return {
        "id": h.id,
        "pid": h.pid,
        "thread": h.thread.name if h.thread else None,
        "generation": h.generation,
        "state": h.state.value,
        "uptime": round(now - h.started, 3),
        "requests": sum(int(v) for v in stats.get("requests", {}).values()),
        "connections": int(stats.get("connections", 0)),
        "restarts": h.restarts,
        "healthy": h.state is not WorkerState.UNHEALTHY,
    }


def build_status(daemon: DaemonView, workers: Iterable[WorkerView], now: float) -> StatusResult:
    return {
        "pid": daemon.pid,
        "version": daemon.version,
        "state": daemon.state.value,
        "uptime": round(now - daemon.started, 3),
        "generation": daemon.generation,
        "worker_mode": daemon.worker_mode,
        "target_workers": daemon.target_workers,
        "workers": [worker_info(h, now) for h in sorted(workers, key=lambda h: h.id)],
        "listeners": [absolute_listener(shown) for shown in daemon.listeners],
        "crash_budget": daemon.crash_budget,
        "restarts": daemon.restarts,
        "reloads": daemon.reloads,
        "config": daemon.config,
    }


def absolute_listener(shown: str) -> str:
    """``unix:app.sock`` as ``unix:/srv/app/app.sock`` (the daemon's working directory)."""
    path = shown.removeprefix("unix:")
    if path == shown or path.startswith(("/", "\0", "@", "(")):
        return shown
    return "unix:" + os.path.abspath(path)
