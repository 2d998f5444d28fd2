"""WebSocket connections: take over an HTTP/1.1 connection on ``Upgrade: websocket``.

:class:`WebSocketUpgrades` is the worker's ``on_upgrade`` hook and keeps the set of
open WebSocket connections (to close them with 1001/1012 on drain).  Each
:class:`WebSocketConnection` is the transport's ``asyncio.Protocol`` after the
switch: flow control, ping/pong keep-alive and the closing of the TCP connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from pounce.asgi.websocket import WebSocketCycle, websocket_scope
from pounce.protocols import http11
from pounce.protocols.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_SERVICE_RESTART,
    UpgradeError,
    check_upgrade,
    is_websocket_upgrade,
)
from pounce.worker.connection import HTTPConnection, start_eagerly

if TYPE_CHECKING:
    from pounce.worker.server import ServerState

error_log = logging.getLogger("pounce.error")

# How long the closing handshake (and the peer's FIN after ours) may take.
CLOSE_TIMEOUT = 5.0


class WebSocketUpgrades:
    """The ``on_upgrade`` hook of one worker, and its open WebSocket connections."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.connections: set[WebSocketConnection] = set()

    def on_upgrade(
        self, conn: HTTPConnection, request: http11.Request, scope: dict[str, Any]
    ) -> bool:
        """Take the connection if it asks for ``websocket``; else leave it to HTTP."""
        config = self.state.config.websocket
        if not config.enabled or not is_websocket_upgrade(request.headers):
            return False
        if self.state.special_routes and scope["path"] in self.state.special_routes:
            return False  # health and metrics paths are HTTP only
        try:
            handshake = check_upgrade(request)
        except UpgradeError as exc:
            error_log.info("invalid WebSocket upgrade from %s: %s", _peer(conn), exc.message)
            conn.closing = True
            conn.write(exc.response())
            if conn.transport is not None:
                conn.transport.close()
            return True
        transport = conn.transport
        secure = transport is not None and transport.get_extra_info("ssl_object") is not None
        ws = WebSocketConnection(self, dict(websocket_scope(scope, handshake, secure=secure)))
        ws.cycle = WebSocketCycle(
            ws,
            ws.scope,
            handshake,
            max_message_size=config.max_message_size,
            per_message_deflate=config.per_message_deflate,
            access_log=self.state.config.logging.access_log,
            metrics=self.state.metrics,
        )
        conn.switch_protocol(ws, conn.take_buffered())
        return True

    def shutdown(self) -> None:
        """Close every WebSocket: 1012 (service restart) on a handover, else 1001."""
        handover = self.state.drain_grace > 0
        code = CLOSE_SERVICE_RESTART if handover else CLOSE_GOING_AWAY
        for ws in list(self.connections):
            ws.close(code, "server restarting" if handover else "server shutting down")

    def abort(self) -> None:
        for ws in list(self.connections):
            ws.abort()


def _peer(conn: HTTPConnection) -> str:
    client = conn.client
    return f"{client[0]}:{client[1]}" if client else "unix socket"


class WebSocketConnection(asyncio.Protocol):
    """One WebSocket over the transport an HTTP/1.1 connection handed over."""

    def __init__(self, upgrades: WebSocketUpgrades, scope: dict[str, Any]) -> None:
        self.upgrades = upgrades
        self.state = upgrades.state
        self.scope = scope
        self.cycle: WebSocketCycle | None = None
        self.transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = asyncio.Event()
        self._finishing = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._pings = 0

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.upgrades.connections.add(self)
        state = self.state
        assert self.cycle is not None
        task = start_eagerly(self._run(self.cycle), state.loop)
        if task is not None:
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        if state.draining:
            self.close(CLOSE_GOING_AWAY, "server shutting down")

    async def _run(self, cycle: WebSocketCycle) -> None:
        await cycle.run(self.state.app)
        if not self._closed.is_set():
            # Stay in the worker's tasks until the closing handshake is over, so a
            # draining worker does not exit under it (bounded by CLOSE_TIMEOUT).
            self._arm_close_timer()
            await self._closed.wait()

    def data_received(self, data: bytes) -> None:
        if self.cycle is not None:
            self.cycle.data_received(data)
            self._check_pong()

    def eof_received(self) -> bool | None:
        if self.cycle is not None:
            self.cycle.connection_lost()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.upgrades.connections.discard(self)
        self._cancel_timers()
        self._writable.set()
        if self.cycle is not None:
            self.cycle.connection_lost()
        self._closed.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- WebSocketSink ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()

    def finish(self) -> None:
        """Both sides are done: send our FIN and wait (bounded) for the peer's.

        Closing at once with unread bytes queued would reset the connection and
        could lose the close frame just written (RFC 6455 §7.1.1: the server
        closes the TCP connection first; a half-close keeps it readable).
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self._finishing:
            return
        self._finishing = True
        self._cancel_ping()
        if transport.can_write_eof():
            transport.write_eof()
            self._arm_close_timer()
        else:
            transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def accepted(self) -> None:
        self._schedule_ping()

    def date_header(self) -> bytes:
        return self.state.date_header()

    # -- closing, keep-alive ----------------------------------------------------------

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake from the server side (drain)."""
        if self.cycle is not None:
            self.cycle.close(code, reason)
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and self.transport is not None:
            self._close_timer = self.state.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def _schedule_ping(self) -> None:
        interval = self.state.config.websocket.ping_interval
        if interval > 0 and not self._finishing:
            self._ping_timer = self.state.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        self._pings += 1
        self._ping_payload = b"pounce-%d" % self._pings
        assert self.cycle is not None
        self.cycle.ping(self._ping_payload)
        timeout = self.state.config.websocket.ping_timeout
        self._ping_timer = self.state.loop.call_later(timeout, self._pong_timeout)

    def _check_pong(self) -> None:
        assert self.cycle is not None
        pongs = self.cycle.pongs
        if not pongs:
            return
        if self._ping_payload is not None and self._ping_payload in pongs:
            self._ping_payload = None
            self._cancel_ping()
            self._schedule_ping()
        pongs.clear()

    def _pong_timeout(self) -> None:
        self._ping_timer = None
        error_log.info("WebSocket %s: no pong within ws ping_timeout, closing", self.scope["path"])
        if self.cycle is not None:
            self.cycle.close(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
        if self.transport is not None:
            self.transport.close()  # after the close frame: the peer is not answering
            self._arm_close_timer()  # and abort if it does not read that either

    def _cancel_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_ping()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
