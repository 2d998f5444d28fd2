"""A worker's link to its supervisor: JSON lines over a Unix socket pair.

Worker to supervisor: ``ready``, ``hb`` (heartbeat with a metrics snapshot),
``snapshot`` (an answer), ``metrics_req`` (a /metrics request on a public port),
``boot_failed``, ``bye`` (final snapshot before a clean exit).
Supervisor to worker: ``state`` (ready for traffic; live, false while the supervisor
cannot start workers; also proves the supervisor is alive), ``stop``, ``snapshot_req``,
``metrics`` (the answer to ``metrics_req``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pounce.error")

Message = dict[str, Any]


def encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def send_blocking(sock: socket.socket, message: Message) -> None:
    """Send one message from outside an event loop (boot failures)."""
    with contextlib.suppress(OSError):
        sock.setblocking(True)
        sock.sendall(encode(message))


class SupervisorLink:
    """The worker side of the link.  Runs inside the worker's event loop."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        heartbeat_interval: float,
        snapshot: Callable[[], dict[str, Any]],
        on_stop: Callable[[float | None], None],
        parent_pid: int | None,
    ) -> None:
        self.sock = sock
        self.heartbeat_interval = heartbeat_interval
        self.snapshot = snapshot
        self.on_stop = on_stop
        self.parent_pid = parent_pid
        self.ready_for_traffic = False  # the supervisor says: a generation is ready, not draining
        self.supervisor_can_spawn = True  # the supervisor says: it can start workers
        self.last_seen = time.monotonic()
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._next_id = 0

    async def start(self) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=self.sock)
        self._writer = writer
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(reader)),
            loop.create_task(self._heartbeat()),
        ]

    def send(self, message: Message) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(encode(message))

    async def close(self, final: Message | None = None) -> None:
        for task in self._tasks:
            task.cancel()
        writer = self._writer
        if writer is None:
            return
        if final is not None:
            self.send(final)
        with contextlib.suppress(OSError, RuntimeError):
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()

    async def fetch_metrics(self, timeout: float = 5.0) -> str:
        """Ask the supervisor for the aggregated metrics text."""
        self._next_id += 1
        ident = self._next_id
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self.send({"t": "metrics_req", "id": ident})
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(ident, None)

    @property
    def supervisor_alive(self) -> bool:
        return time.monotonic() - self.last_seen < max(5.0, self.heartbeat_interval * 5)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except (OSError, ValueError):
                line = b""
            if not line:
                log.warning("worker %d lost its supervisor; shutting down", os.getpid())
                self.on_stop(0.0)
                return
            self.last_seen = time.monotonic()
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self._handle(message)

    def _handle(self, message: Message) -> None:
        kind = message.get("t")
        if kind == "state":
            self.ready_for_traffic = bool(message.get("ready"))
            self.supervisor_can_spawn = bool(message.get("live", True))
        elif kind == "stop":
            grace = message.get("grace")
            self.on_stop(float(grace) if isinstance(grace, int | float) else None)
        elif kind == "snapshot_req":
            self.send({"t": "snapshot", "id": message.get("id"), "stats": self.snapshot()})
        elif kind == "metrics":
            future = self._pending.get(int(message.get("id", -1)))
            if future is not None and not future.done():
                future.set_result(str(message.get("text", "")))

    async def _heartbeat(self) -> None:
        while True:
            self.send({"t": "hb", "stats": self.snapshot()})
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("worker %d: the supervisor is gone; shutting down", os.getpid())
                self.on_stop(0.0)
                return
            await asyncio.sleep(self.heartbeat_interval)
