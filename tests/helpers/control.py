"""A real ControlServer run by a fake supervisor, shared by test_control_server and
test_ctl.

``FakeSupervisor`` implements the control handler and records every call; ``Daemon``
serves a ``ControlServer`` from an event loop in a background thread, as the daemon does,
while the tests call it from the main thread.  Every wait is bounded by ``WAIT``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pounce.control.client import ControlClient
from pounce.control.handler import (
    DrainResult,
    ReloadResult,
    ScaleResult,
    StateResult,
    StatusResult,
    WorkersResult,
)
from pounce.control.server import ControlServer
from pounce.errors import ControlCommandError

T = TypeVar("T")
WAIT = 10.0

STATUS: StatusResult = {
    "pid": 4242,
    "version": "0.1.0",
    "state": "running",
    "uptime": 12.5,
    "generation": 2,
    "worker_mode": "process",
    "target_workers": 1,
    "workers": [
        {
            "id": 0,
            "pid": 4243,
            "thread": None,
            "generation": 2,
            "state": "ready",
            "uptime": 3.0,
            "requests": 10,
            "connections": 1,
            "restarts": 0,
            "healthy": True,
        }
    ],
    "listeners": ["http://127.0.0.1:8000"],
    "crash_budget": {"max_restarts": 5, "window": 60.0, "used": 0, "left": 5},
    "restarts": {},
    "reloads": {"success": 1, "failed": 0},
    "config": "/etc/pounce.toml",
}


class FakeSupervisor:
    """Implements ControlHandler; records calls; a few knobs to make commands misbehave."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reload_started = threading.Event()
        self.reload_gate: asyncio.Event | None = None
        self.reload_error: ControlCommandError | None = None
        self.status_raises: BaseException | None = None
        self.status_returns: Any = None
        self.on_stop: Callable[[], Coroutine[Any, Any, None]] | None = None

    async def status(self) -> StatusResult:
        self.calls.append(("status", {}))
        if self.status_raises is not None:
            raise self.status_raises
        if self.status_returns is not None:
            return self.status_returns  # type: ignore[no-any-return]
        return STATUS

    async def reload(self) -> ReloadResult:
        self.calls.append(("reload", {}))
        self.reload_started.set()
        if self.reload_gate is not None:
            await self.reload_gate.wait()
        if self.reload_error is not None:
            raise self.reload_error
        return {"generation": 3, "duration": 1.5, "workers": 1, "needs_restart": []}

    async def drain(self, wait: bool, timeout: float | None) -> DrainResult:
        self.calls.append(("drain", {"wait": wait, "timeout": timeout}))
        return {"state": "drained" if wait else "draining", "connections": 0}

    async def resume(self) -> StateResult:
        self.calls.append(("resume", {}))
        return {"state": "running"}

    async def stop(self, now: bool) -> StateResult:
        self.calls.append(("stop", {"now": now}))
        if self.on_stop is not None:
            await self.on_stop()
        return {"state": "stopping"}

    async def scale(self, workers: int) -> ScaleResult:
        self.calls.append(("scale", {"workers": workers}))
        if workers > 64:
            raise ControlCommandError("too many workers", ["the limit is 64"])
        return {"previous": 1, "workers": workers, "configured": 1}

    async def workers(self) -> WorkersResult:
        self.calls.append(("workers", {}))
        return {"generation": 2, "workers": STATUS["workers"]}


class Daemon:
    """A ControlServer served by an event loop in a background thread."""

    def __init__(self, path: str, handler: FakeSupervisor, **kwargs: Any) -> None:
        self.path = path
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ControlServer(path, handler, **kwargs)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def start(self) -> Daemon:
        self.run(self.server.start())
        return self

    def shutdown(self) -> None:
        if not self.loop.is_closed():
            self.run(self.server.close())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()

    def client(self, timeout: float | None = WAIT) -> ControlClient:
        return ControlClient(self.path, timeout=timeout)

    def call(self, cmd: str, timeout: float | None = WAIT, **args: Any) -> dict[str, Any]:
        """One command on a fresh connection, closed afterwards."""
        with self.client(timeout) as client:
            return client.call(cmd, **args)


async def make_event() -> asyncio.Event:
    """An event of the daemon's loop: ``daemon.run(make_event())``."""
    return asyncio.Event()
