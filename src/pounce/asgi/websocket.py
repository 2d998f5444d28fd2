"""One WebSocket as ASGI, whatever carries it: the bridge, written once.

:class:`WebSocketCycle` knows ASGI ``websocket.*`` messages and the sans-I/O
:class:`~pounce.protocols.websocket.Session`, never sockets or HTTP framing: it
talks to what carries the WebSocket through the small :class:`WebSocketTransport`
interface, which two adapters implement:

- :class:`~pounce.asgi.ws_http11.HTTP11WebSocket`: an HTTP/1.1 connection after
  ``Upgrade: websocket`` (RFC 6455); accepting answers ``101``;
- :class:`~pounce.asgi.h2websocket.H2WebSocketStream`: an HTTP/2 stream opened
  with an extended CONNECT (RFC 8441); accepting answers ``:status 200``.

The cycle owns what both share: the scope, accepting or denying the handshake
(the WebSocket Denial Response extension; closing before accepting answers 403,
failing before it 500), messages both ways, close codes, the largest message,
the receive queue and its backpressure, the ping/pong keep-alive, and the access
log line and metrics of the handshake.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from typing import Any, Protocol

from wsproto.extensions import Extension

from pounce.asgi.accesslog import access_log, log_request
from pounce.asgi.http import ASGIProtocolError, _as_header_list
from pounce.asgi.requestid import add_header, log_suffix
from pounce.asgi.scope import websocket_scope as websocket_scope
from pounce.metrics import Collector
from pounce.protocols import http11
from pounce.protocols.websocket import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    Closed,
    Message,
    Session,
    negotiate_extensions,
)
from pounce.types import ASGIApp, Scope

error_log = logging.getLogger("pounce.error")

#: Stop reading (or, over HTTP/2, re-opening the window) when this many received
#: messages wait for the app; go on when it has taken half of them.
QUEUE_HIGH_WATER = 16
#: How long the closing handshake (and the peer's end after ours) may take.
CLOSE_TIMEOUT = 5.0

Headers = list[tuple[bytes, bytes]]


class WebSocketTransport(Protocol):
    """What the bridge needs from what carries one WebSocket."""

    #: The handshake's method and its success status, for the access log and metrics.
    method: str
    accept_status: int
    #: Bytes written so far (the access log's size of the handshake's answer).
    bytes_sent: int

    def send_accept(
        self, subprotocol: str | None, extensions: bytes | None, headers: Headers
    ) -> None:
        """Answer the handshake: the connection is a WebSocket from now on."""

    async def send_response(
        self, status: int, headers: Headers, body: bytes, *, more_body: bool
    ) -> None:
        """An HTTP response instead (a denial, or a 500): its head and first body."""

    async def send_body(self, body: bytes, *, more_body: bool) -> None:
        """More of that response's body."""

    def write(self, data: bytes) -> None:
        """WebSocket frames, in order."""

    async def drain(self) -> None:
        """Wait while the peer is not taking what was written (backpressure)."""

    def accepted(self) -> None:
        """The handshake is answered and the bytes that came before it are fed."""

    def end(self) -> None:
        """Nothing more goes out: end our side after what is written (FIN, END_STREAM)."""

    def hang_up(self) -> None:
        """End our side and let go without waiting for the peer: it stopped answering."""

    def abort(self) -> None:
        """Drop the connection (or stream) now."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class ClientDisconnected(OSError):
    """``send()`` on a WebSocket that is closed (ASGI: an ``IOError`` subclass)."""


class Phase(enum.Enum):
    """Where the cycle is: the state machine of the ASGI WebSocket spec."""

    CONNECTING = "connecting"  # the app has not answered the handshake yet
    DENYING = "denying"  # websocket.http.response.start sent, body pending
    OPEN = "open"  # accepted
    CLOSED = "closed"  # nothing more goes out


def _checked_headers(message: dict[str, Any]) -> Headers:
    headers = _as_header_list(message.get("headers", ()))
    problem = http11.check_response_headers(headers)
    if problem is not None:
        raise ASGIProtocolError(problem)
    return headers


class WebSocketCycle:
    """The ASGI side of one WebSocket."""

    def __init__(
        self,
        conn: WebSocketTransport,
        scope: Scope,
        extension_offers: list[str],
        *,
        max_message_size: int,
        per_message_deflate: bool,
        ping_interval: float = 0.0,
        ping_timeout: float = 0.0,
        access_log: bool,
        metrics: Collector | None = None,
        id_header: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.conn = conn
        #: The request ID's response header (name, value), added to the handshake's
        #: answer unless the app sent that header; None without an ID.
        self.id_header = id_header
        self.scope = scope
        self.extension_offers = extension_offers
        self.max_message_size = max_message_size
        self.per_message_deflate = per_message_deflate
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.access_log = access_log
        self.metrics = metrics
        self.phase = Phase.CONNECTING
        self.session: Session | None = None
        self.closed: Closed | None = None  # set when the app should see a disconnect
        self.gone = False  # the connection (or stream) went away under us
        self.start_time = time.perf_counter()
        self.status = 0
        self._recorded = False
        self._connect_sent = False
        self._pending: list[bytes] = []  # received before the app accepted
        self._input_ended = False
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._close_on_accept: tuple[int, str] | None = None
        self._denial: tuple[int, Headers] | None = None  # head waiting for the first body
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._pings = 0

    # -- fed by the transport ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Bytes of WebSocket frames from the client."""
        if self.session is not None:
            self._feed(data)
        elif self.phase is Phase.CONNECTING:
            self._pending.append(data)  # a client should wait for the answer (RFC 6455 §4.1)

    def _feed(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        events, out = session.receive(data)
        if out:
            self.conn.write(out)
        for event in events:
            if isinstance(event, Message):
                self._queue.append(event)
            else:
                self._closed(event)
        if session.pong_payloads:
            self._pong(session.pong_payloads)
        if session.done:
            self._shut()
            self.conn.end()
        if len(self._queue) >= QUEUE_HIGH_WATER and not self._paused:
            self._paused = True
            self.conn.pause_reading()
        self._wake()

    def input_ended(self) -> None:
        """The client ended its side (HTTP/2 END_STREAM): without a closing handshake,
        1006.  Before the app answers, that waits for the answer."""
        self._input_ended = True
        if self.session is not None and not self.session.done:
            self.session.receive(None)
        self._closed(Closed(CLOSE_ABNORMAL))
        if self.session is not None:
            self._shut()
            self.conn.end()
        self._wake()

    def connection_lost(self) -> None:
        """The connection (or stream) is gone: the app sees 1006 unless it saw a close."""
        self.gone = True
        if self.session is not None and not self.session.done:
            self.session.receive(None)
        self._closed(Closed(CLOSE_ABNORMAL))
        self._shut()
        self._wake()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (the app's close, drain, ping timeout)."""
        if self.phase is Phase.CONNECTING:
            self._close_on_accept = (code, reason)  # the handshake is still the app's
            return
        if self.session is not None and self.phase is Phase.OPEN:
            self._shut()
            self.conn.write(self.session.close(code, reason))
            self._closed(Closed(code, reason, by_peer=False))
        self._wake()

    def _closed(self, event: Closed) -> None:
        if self.closed is None:
            self.closed = event
        if event.by_peer and self.phase is Phase.OPEN:
            self._shut()

    def _shut(self) -> None:
        """Nothing more goes out but the closing handshake."""
        self.phase = Phase.CLOSED
        self._stop_pings()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- keep-alive: a ping every ping_interval, its pong within ping_timeout ----------

    def _schedule_ping(self) -> None:
        if self.ping_interval > 0 and self.phase is Phase.OPEN:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.phase is not Phase.OPEN or self.session is None:
            return
        self._pings += 1
        self._ping_payload = b"pounce-%d" % self._pings
        self.conn.write(self.session.ping(self._ping_payload))
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(self.ping_timeout, self._pong_timeout)

    def _pong(self, payloads: list[bytes]) -> None:
        if self._ping_payload is not None and self._ping_payload in payloads:
            self._ping_payload = None
            self._stop_pings()
            self._schedule_ping()
        payloads.clear()

    def _pong_timeout(self) -> None:
        self._ping_timer = None
        if self.phase is not Phase.OPEN:
            return
        rid, extra = log_suffix(self.scope)
        error_log.info(
            "WebSocket %s%s: no pong within ws ping_timeout, closing",
            self.scope["path"],
            rid,
            extra=extra,
        )
        self.close(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
        self.conn.hang_up()  # after the close frame: the peer is not answering

    def _stop_pings(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    # -- ASGI --------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self._queue:
                message = self._queue.popleft()
                if self._paused and len(self._queue) < QUEUE_HIGH_WATER // 2:
                    self._paused = False
                    self.conn.resume_reading()
                if isinstance(message.data, str):
                    return {"type": "websocket.receive", "text": message.data}
                return {"type": "websocket.receive", "bytes": message.data}
            if self.closed is not None:
                return {
                    "type": "websocket.disconnect",
                    "code": self.closed.code,
                    "reason": self.closed.reason,
                }
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        phase = self.phase
        if phase is Phase.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._start_denial({"type": kind, "status": 403})
                await self._deny_body(b"", more_body=False)
            elif kind == "websocket.http.response.start":
                self._start_denial(message)
            else:
                raise ASGIProtocolError(f"unexpected ASGI message {kind!r} before the handshake")
        elif phase is Phase.DENYING:
            if kind != "websocket.http.response.body":
                raise ASGIProtocolError(f"unexpected ASGI message {kind!r} in a denial response")
            more = bool(message.get("more_body", False))
            await self._deny_body(bytes(message.get("body", b"")), more_body=more)
        elif phase is Phase.OPEN:
            assert self.session is not None
            if kind == "websocket.send":
                text, data = message.get("text"), message.get("bytes")
                if (text is None) == (data is None):
                    raise ASGIProtocolError("websocket.send needs exactly one of bytes and text")
                payload: str | bytes = str(text) if text is not None else bytes(data or b"")
                self.conn.write(self.session.send(payload))
                await self.conn.drain()
            elif kind == "websocket.close":
                self.close(int(message.get("code") or CLOSE_NORMAL), message.get("reason") or "")
            else:
                raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on an open WebSocket")
        elif kind in ("websocket.send", "websocket.close"):
            raise ClientDisconnected("the WebSocket is closed")
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on a closed WebSocket")

    def _accept(self, message: dict[str, Any]) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise ASGIProtocolError(f"invalid subprotocol {subprotocol!r}")
        headers = add_header(_checked_headers(message), self.id_header)
        agreed: bytes | None = None
        extensions: list[Extension] = []
        if self.per_message_deflate:
            agreed, extensions = negotiate_extensions(
                self.extension_offers, max_message_size=self.max_message_size
            )
        self.conn.send_accept(subprotocol, agreed, headers)
        self.session = Session(extensions, self.max_message_size)
        self.phase = Phase.OPEN
        self.status = self.conn.accept_status
        self._record(self.status)
        pending, self._pending = self._pending, []
        for data in pending:
            self._feed(data)
        if self._input_ended and self.phase is Phase.OPEN:
            self.input_ended()  # the client ended its side before we answered
        self.conn.accepted()
        self._schedule_ping()
        if self._close_on_accept is not None:
            self.close(*self._close_on_accept)  # the worker began draining meanwhile

    def _start_denial(self, message: dict[str, Any]) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 200 <= status <= 999:
            raise ASGIProtocolError(f"invalid denial status {status!r}")
        headers = add_header(_checked_headers(message), self.id_header)
        self.phase = Phase.DENYING
        self.status = status
        self._denial = (status, headers)

    async def _deny_body(self, body: bytes, *, more_body: bool) -> None:
        if self._denial is not None:
            (status, headers), self._denial = self._denial, None
            await self.conn.send_response(status, headers, body, more_body=more_body)
        else:
            await self.conn.send_body(body, more_body=more_body)
        if not more_body:
            self._shut()
            self._record(self.status)
            self.conn.end()

    # -- running the app ---------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app, turning its failures into a 500 or a 1011 close."""
        try:
            await app(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            # shutdown.timeout: the worker drops every connection now.
            self._shut()
            self._record(self.status or 500)
            self.conn.abort()
            raise
        except BaseException as exc:
            if not (isinstance(exc, ClientDisconnected) and self.closed is not None):
                rid, extra = log_suffix(self.scope)
                error_log.error(
                    "Exception in ASGI application (WebSocket %s%s)",
                    self.scope["path"],
                    rid,
                    exc_info=exc,
                    extra=extra,
                )
            await self._fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if self.phase is Phase.CONNECTING or self.phase is Phase.DENYING:
                if not self.gone:
                    rid, extra = log_suffix(self.scope)
                    error_log.error(
                        "ASGI application returned without answering the WebSocket handshake"
                        " (%s%s)",
                        self.scope["path"],
                        rid,
                        extra=extra,
                    )
                await self._fail()
            elif self.phase is Phase.OPEN:
                # The app is done with an open connection: close it normally.
                self.close(CLOSE_NORMAL)
        self._stop_pings()

    async def _fail(self) -> None:
        phase = self.phase
        self._shut()
        if self.gone:
            self._record(self.status or 499)  # the client went away first
            self.conn.abort()
        elif phase is Phase.CONNECTING:
            self.status = 500
            body = b"Internal Server Error\n"
            headers = add_header([(b"content-type", b"text/plain; charset=utf-8")], self.id_header)
            await self.conn.send_response(500, headers, body, more_body=False)
            self._record(500)
            self.conn.end()
        elif phase is Phase.DENYING:
            self._record(self.status)
            self.conn.abort()  # part of the denial went out: it cannot become a 500
        elif phase is Phase.OPEN and self.session is not None:
            self.conn.write(self.session.close(CLOSE_INTERNAL_ERROR))

    def _record(self, status: int) -> None:
        """Count the handshake like a request and write its access-log line (once)."""
        if self._recorded:
            return
        self._recorded = True
        duration = time.perf_counter() - self.start_time
        method, nbytes = self.conn.method, self.conn.bytes_sent
        if self.metrics is not None:
            self.metrics.observe(method, status, duration, nbytes)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            log_request(self.scope, status, nbytes, duration, method=method)
