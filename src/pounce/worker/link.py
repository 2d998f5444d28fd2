"""A worker's link to its supervisor: framed messages over a Unix socket pair.

The messages and their codec are specified, sans-I/O, in :mod:`pounce.protocols.link`
(one frame codec with the control socket); this module moves them: the worker's side,
:class:`SupervisorLink`, and :func:`receive`, the read loop both sides use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from pounce.errors import LinkProtocolError
from pounce.protocols.link import (
    Heartbeat,
    LinkDecoder,
    Message,
    MetricsReply,
    MetricsRequest,
    SnapshotReply,
    SnapshotRequest,
    StateUpdate,
    Stop,
    SupervisorMessage,
    WorkerMessage,
    decode_from_supervisor,
    encode,
)

log = logging.getLogger("pounce.error")

_CHUNK = 64 * 1024
M = TypeVar("M", bound=Message)


async def receive(
    reader: asyncio.StreamReader, decode: Callable[[bytes], M], who: str
) -> AsyncIterator[M]:
    """The messages read from the link until the peer closes it or breaks the framing.

    A message that is framed but malformed is logged and skipped.
    """
    decoder = LinkDecoder()
    while True:
        try:
            data = await reader.read(_CHUNK)
        except OSError:
            return
        if not data:
            return
        decoder.feed(data)
        while True:
            try:
                payload = decoder.next_frame()
                if payload is None:
                    break
                message = decode(payload)
            except LinkProtocolError as exc:
                log.warning("link from %s: %s", who, exc)
                if exc.fatal:
                    return
                continue
            yield message


def send_blocking(sock: socket.socket, message: WorkerMessage) -> None:
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

    def send(self, message: WorkerMessage) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(encode(message))

    async def close(self, final: WorkerMessage | None = None) -> None:
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
        self.send(MetricsRequest(ident))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(ident, None)

    @property
    def supervisor_alive(self) -> bool:
        return time.monotonic() - self.last_seen < max(5.0, self.heartbeat_interval * 5)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        async for message in receive(reader, decode_from_supervisor, "the supervisor"):
            self.last_seen = time.monotonic()
            self._handle(message)
        log.warning("worker %d lost its supervisor; shutting down", os.getpid())
        self.on_stop(0.0)

    def _handle(self, message: SupervisorMessage) -> None:
        match message:
            case StateUpdate():
                self.ready_for_traffic = message.ready
                self.supervisor_can_spawn = message.live
            case Stop():
                self.on_stop(message.grace)
            case SnapshotRequest():
                self.send(SnapshotReply(message.id, self.snapshot()))
            case MetricsReply():
                future = self._pending.get(message.id)
                if future is not None and not future.done():
                    future.set_result(message.text)

    async def _heartbeat(self) -> None:
        while True:
            self.send(Heartbeat(self.snapshot()))
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("worker %d: the supervisor is gone; shutting down", os.getpid())
                self.on_stop(0.0)
                return
            await asyncio.sleep(self.heartbeat_interval)
