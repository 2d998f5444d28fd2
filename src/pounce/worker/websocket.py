"""WebSocket connections: take over an HTTP/1.1 connection on ``Upgrade: websocket``.

:class:`WebSocketUpgrades` is the worker's handler of the ``websocket`` upgrade token.  Each
:class:`WebSocketConnection` is the transport's ``asyncio.Protocol`` after the
switch and one of the worker's connections (in ``state.connections``: counted in
the open-connections gauge, closed with 1001/1012 on drain), until the TCP
connection closes.  It owns flow control and the closing of the TCP connection;
the WebSocket itself (handshake answer, messages, keep-alive) is the ASGI
bridge's, :class:`~pounce.asgi.websocket.WebSocketCycle`, reached through
:class:`~pounce.asgi.ws_http11.HTTP11WebSocket`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from pounce.asgi.requestid import log_suffix
from pounce.asgi.websocket import CLOSE_TIMEOUT, WebSocketCycle, websocket_scope
from pounce.asgi.ws_http11 import HTTP11WebSocket
from pounce.protocols import http11
from pounce.protocols.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    UpgradeError,
    check_upgrade,
    is_websocket_upgrade,
)
from pounce.types import Scope
from pounce.worker.context import ServerState, Upgradable
from pounce.worker.launch import launch, track

error_log = logging.getLogger("pounce.error")


class WebSocketUpgrades:
    """The ``websocket`` upgrade handler of one worker."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def on_upgrade(self, conn: Upgradable, request: http11.Request, scope: Scope) -> bool:
        """Take the connection if it asks for ``websocket``; else leave it to HTTP."""
        config = self.state.config.websocket
        if not config.enabled or not is_websocket_upgrade(request.headers):
            return False
        if self.state.special_routes and scope["path"] in self.state.special_routes:
            return False  # health and metrics paths are HTTP only
        try:
            handshake = check_upgrade(request)
        except UpgradeError as exc:
            rid, extra = log_suffix(scope)
            error_log.info(
                "invalid WebSocket upgrade from %s: %s%s",
                _peer(conn),
                exc.message,
                rid,
                extra=extra,
            )
            conn.closing = True
            conn.write(exc.response())
            conn.close_transport()
            return True
        ws = WebSocketConnection(self.state)
        ids = self.state.request_ids
        ws.cycle = WebSocketCycle(
            HTTP11WebSocket(ws, handshake),
            dict(websocket_scope(scope, handshake.subprotocols)),
            handshake.extension_offers,
            max_message_size=config.max_message_size,
            per_message_deflate=config.per_message_deflate,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            access_log=self.state.config.logging.access_log,
            metrics=self.state.metrics,
            id_header=None if ids is None else ids.pair(scope),
        )
        conn.switch_protocol(ws, conn.take_buffered())
        return True


def _peer(conn: Upgradable) -> str:
    client = conn.client
    return f"{client[0]}:{client[1]}" if client else "unix socket"


class WebSocketConnection(asyncio.Protocol):
    """One WebSocket over the transport an HTTP/1.1 connection handed over."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.cycle: WebSocketCycle | None = None
        self.transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = asyncio.Event()
        self._finishing = False
        self._close_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        state = self.state
        state.connections.add(self)
        assert self.cycle is not None
        track(launch(self._run(self.cycle), state.loop), state.tasks)
        if state.draining:
            self.shutdown(state.drain_grace)

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

    def eof_received(self) -> bool | None:
        if self.cycle is not None:
            self.cycle.connection_lost()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._cancel_close_timer()
        self._writable.set()
        if self.cycle is not None:
            self.cycle.connection_lost()
        self._closed.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- the worker's Connection interface ---------------------------------------------

    def shutdown(self, idle_grace: float = 0.0) -> None:
        """Drain: start the closing handshake with 1012 (service restart) when another
        generation takes over (``idle_grace`` > 0), else 1001 (going away)."""
        if idle_grace > 0:
            code, reason = CLOSE_SERVICE_RESTART, "server restarting"
        else:
            code, reason = CLOSE_GOING_AWAY, "server shutting down"
        if self.cycle is not None:
            self.cycle.close(code, reason)
        self._arm_close_timer()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- ConnectionSink (for HTTP11WebSocket) --------------------------------------------

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
        if transport.can_write_eof():
            transport.write_eof()
            self._arm_close_timer()
        else:
            transport.close()

    def hang_up(self) -> None:
        """Close after the bytes written (the close frame), and abort if the peer
        does not read them either."""
        if self.transport is not None:
            self.transport.close()
            self._arm_close_timer()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def date_header(self) -> bytes:
        return self.state.date_header()

    # -- timers -----------------------------------------------------------------------------

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and self.transport is not None:
            self._close_timer = self.state.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def _cancel_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
