"""One WebSocket connection as ASGI: ``receive()`` and ``send()`` for the app.

The cycle knows ASGI ``websocket.*`` messages and the sans-I/O session of
:mod:`pounce.protocols.websocket`, never sockets: it talks to its connection
through the small :class:`WebSocketSink` interface.  Before ``websocket.accept``
the app may deny the upgrade with an HTTP response (the WebSocket Denial Response
extension); closing before accepting answers 403.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from typing import Any, Protocol

from pounce.asgi.accesslog import access_log, log_request
from pounce.asgi.http import ASGIProtocolError, _as_header_list
from pounce.metrics import Collector
from pounce.protocols import http11
from pounce.protocols.websocket import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    Closed,
    Handshake,
    Message,
    Session,
)
from pounce.types import ASGIApp, Scope

error_log = logging.getLogger("pounce.error")

# Pause reading the socket when this many received messages wait for the app.
QUEUE_HIGH_WATER = 16


class WebSocketSink(Protocol):
    """What a WebSocket cycle needs from its connection."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def accepted(self) -> None: ...
    def date_header(self) -> bytes: ...


class ClientDisconnected(OSError):
    """``send()`` on a WebSocket that is closed (ASGI: an ``IOError`` subclass)."""


class Phase(enum.Enum):
    """Where the cycle is: the state machine of the ASGI WebSocket spec."""

    CONNECTING = "connecting"  # the app has not answered the handshake yet
    DENYING = "denying"  # websocket.http.response.start sent, body pending
    OPEN = "open"  # accepted
    CLOSED = "closed"  # nothing more goes out


def websocket_scope(http_scope: Scope, handshake: Handshake, *, secure: bool) -> Scope:
    """The ASGI ``websocket`` scope (spec 2.4) for an HTTP upgrade request's scope."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_scope["http_version"],
        "scheme": "wss" if secure else "ws",
        "path": http_scope["path"],
        "raw_path": http_scope["raw_path"],
        "query_string": http_scope["query_string"],
        "root_path": http_scope["root_path"],
        "headers": http_scope["headers"],
        "client": http_scope["client"],
        "server": http_scope["server"],
        "subprotocols": list(handshake.subprotocols),
        "state": http_scope["state"],
        "extensions": _extensions(http_scope),
    }


def _extensions(http_scope: Scope) -> dict[str, Any]:
    """The Denial Response extension, and the TLS one when the HTTP scope has it."""
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    tls = http_scope.get("extensions", {}).get("tls")
    if tls is not None:
        extensions["tls"] = tls
    return extensions


class WebSocketCycle:
    """The ASGI side of one WebSocket connection."""

    def __init__(
        self,
        conn: WebSocketSink,
        scope: Scope,
        handshake: Handshake,
        *,
        max_message_size: int,
        per_message_deflate: bool,
        access_log: bool,
        metrics: Collector | None = None,
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.handshake = handshake
        self.max_message_size = max_message_size
        self.per_message_deflate = per_message_deflate
        self.access_log = access_log
        self.metrics = metrics
        self.phase = Phase.CONNECTING
        self.session: Session | None = None
        self.closed: Closed | None = None  # set when the app should see a disconnect
        self.start_time = time.perf_counter()
        self.bytes_sent = 0
        self.status = 0
        self._connect_sent = False
        self._pending = b""  # bytes received before the app accepted
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._deny_chunked = False
        self._close_on_accept: tuple[int, str] | None = None
        self._deny_headers: list[tuple[bytes, bytes]] | None = None

    # -- fed by the connection -------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            if self.phase is Phase.CONNECTING:
                self._pending += data  # a client must wait for the 101 (RFC 6455 §4.1)
            return
        self._feed(data)

    def _feed(self, data: bytes | None) -> None:
        assert self.session is not None
        events, out = self.session.receive(data)
        if out:
            self.conn.write(out)
        for event in events:
            if isinstance(event, Message):
                self._queue.append(event)
            else:
                self._closed(event)
        if self.session.done:
            self.phase = Phase.CLOSED
            self.conn.finish()
        if len(self._queue) >= QUEUE_HIGH_WATER and not self._paused:
            self._paused = True
            self.conn.pause_reading()
        self._wake()

    def connection_lost(self) -> None:
        if self.session is not None and not self.session.done:
            self.session.receive(None)
        self._closed(Closed(CLOSE_ABNORMAL))
        self.phase = Phase.CLOSED
        self._wake()

    def _closed(self, event: Closed) -> None:
        if self.closed is None:
            self.closed = event
        if event.by_peer and self.phase is Phase.OPEN:
            self.phase = Phase.CLOSED

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- driven by the connection's timers ----------------------------------

    def ping(self, payload: bytes) -> None:
        if self.session is not None and self.phase is Phase.OPEN:
            self.conn.write(self.session.ping(payload))

    def close(self, code: int, reason: str = "") -> None:
        """Server-side close (drain, ping timeout): the app sees a disconnect."""
        if self.phase is Phase.CONNECTING:
            self._close_on_accept = (code, reason)  # the handshake is still the app's
            return
        if self.session is not None and self.phase is Phase.OPEN:
            self.phase = Phase.CLOSED
            self._write(self.session.close(code, reason))
            self._closed(Closed(code, reason, by_peer=False))
        self._wake()

    @property
    def pongs(self) -> list[bytes]:
        return self.session.pong_payloads if self.session is not None else []

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
                self._deny(403, [], b"", more_body=False)
            elif kind == "websocket.http.response.start":
                self._start_denial(message)
            else:
                raise ASGIProtocolError(f"unexpected ASGI message {kind!r} before the handshake")
        elif phase is Phase.DENYING:
            if kind != "websocket.http.response.body":
                raise ASGIProtocolError(f"unexpected ASGI message {kind!r} in a denial response")
            more = bool(message.get("more_body", False))
            self._deny_body(bytes(message.get("body", b"")), more)
            if more:
                await self.conn.drain()
        elif phase is Phase.OPEN:
            assert self.session is not None
            if kind == "websocket.send":
                text, data = message.get("text"), message.get("bytes")
                if (text is None) == (data is None):
                    raise ASGIProtocolError("websocket.send needs exactly one of bytes and text")
                payload: str | bytes = str(text) if text is not None else bytes(data or b"")
                self._write(self.session.send(payload))
                await self.conn.drain()
            elif kind == "websocket.close":
                code = message.get("code") or CLOSE_NORMAL
                self.phase = Phase.CLOSED
                reason = message.get("reason") or ""
                self._write(self.session.close(int(code), reason))
                self._closed(Closed(int(code), reason, by_peer=False))
                self._wake()
            else:
                raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on an open WebSocket")
        elif kind in ("websocket.send", "websocket.close"):
            raise ClientDisconnected("the WebSocket is closed")
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on a closed WebSocket")

    def _write(self, data: bytes) -> None:
        if data:
            self.bytes_sent += len(data)
            self.conn.write(data)

    def _accept(self, message: dict[str, Any]) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise ASGIProtocolError(f"invalid subprotocol {subprotocol!r}")
        headers = _as_header_list(message.get("headers", ()))
        problem = http11.check_response_headers(headers)
        if problem is not None:
            raise ASGIProtocolError(problem)
        head = self.handshake.accept(
            subprotocol, headers, deflate=self.per_message_deflate, date=self.conn.date_header()
        )
        self.session = Session(self.handshake.extensions, self.max_message_size)
        self.phase = Phase.OPEN
        self._write(head)
        self._record(101)
        self.conn.accepted()
        pending, self._pending = self._pending, b""
        if pending:
            self._feed(pending)
        if self._close_on_accept is not None:
            self.close(*self._close_on_accept)  # the worker began draining meanwhile

    def _start_denial(self, message: dict[str, Any]) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status <= 999 or status == 101:
            raise ASGIProtocolError(f"invalid denial status {status!r}")
        headers = _as_header_list(message.get("headers", ()))
        problem = http11.check_response_headers(headers)
        if problem is not None:
            raise ASGIProtocolError(problem)
        self.phase = Phase.DENYING
        self.status = status
        self._deny_headers = headers

    def _deny_body(self, body: bytes, more_body: bool) -> None:
        if self._deny_headers is not None:
            headers, self._deny_headers = self._deny_headers, None
            self._deny(self.status, headers, body, more_body=more_body)
            return
        out = (http11.chunk(body) if body else b"") if self._deny_chunked else body
        if not more_body:
            out += http11.LAST_CHUNK if self._deny_chunked else b""
        self._write(out)
        if not more_body:
            self._denied()

    def _deny(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, more_body: bool
    ) -> None:
        """Write a denial response head (and first body); the connection then closes."""
        self.phase = Phase.DENYING
        self.status = status
        out: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = value.strip()
                if not length.isdigit():
                    raise ASGIProtocolError(f"invalid Content-Length {value!r}")
            elif lname not in (b"transfer-encoding", b"connection"):
                out.append((name, value))
        if length is not None:
            out.append((b"content-length", length))
        elif more_body:
            self._deny_chunked = True
            out.append((b"transfer-encoding", b"chunked"))
        else:
            out.append((b"content-length", b"%d" % len(body)))
        names = {name.lower() for name, _ in out}
        if b"date" not in names:
            out.append((b"date", self.conn.date_header()))
        if b"server" not in names:
            out.append((b"server", b"pounce"))
        out.append((b"connection", b"close"))
        data = http11.serialize_head(status, out)
        data += http11.chunk(body) if self._deny_chunked and body else body
        if not more_body and self._deny_chunked:
            data += http11.LAST_CHUNK
        self._write(data)
        if not more_body:
            self._denied()

    def _denied(self) -> None:
        self.phase = Phase.CLOSED
        self._record(self.status)
        self.conn.finish()

    # -- running the app ---------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app, turning its failures into a 500 or a 1011 close."""
        try:
            await app(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._fail()
            raise
        except BaseException as exc:
            if not (isinstance(exc, ClientDisconnected) and self.closed is not None):
                error_log.error(
                    "Exception in ASGI application (WebSocket %s)", self.scope["path"], exc_info=exc
                )
            self._fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if self.phase is Phase.CONNECTING or self.phase is Phase.DENYING:
                error_log.error(
                    "ASGI application returned without answering the WebSocket handshake (%s)",
                    self.scope["path"],
                )
                self._fail()
            elif self.phase is Phase.OPEN:
                # The app is done with an open connection: close it normally.
                assert self.session is not None
                self.phase = Phase.CLOSED
                self._write(self.session.close(CLOSE_NORMAL))

    def _fail(self) -> None:
        phase = self.phase
        self.phase = Phase.CLOSED
        if phase is Phase.CONNECTING and self.closed is None:
            response = http11.error_response(500, "Internal Server Error")
            self._write(response)
            self._record(500)
            self.conn.finish()
        elif phase is Phase.DENYING:
            self._record(self.status)
            self.conn.abort()
        elif phase is Phase.OPEN and self.session is not None:
            self._write(self.session.close(CLOSE_INTERNAL_ERROR))
        elif phase is Phase.CONNECTING:
            self.conn.abort()

    def _record(self, status: int) -> None:
        """Count the handshake like a request and write its access-log line."""
        duration = time.perf_counter() - self.start_time
        if self.metrics is not None:
            self.metrics.observe("GET", status, duration, self.bytes_sent)
        if not self.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        log_request(self.scope, status, self.bytes_sent, duration, method="GET")
