"""One HTTP request/response cycle as ASGI: ``receive()`` and ``send()`` for the app.

The cycle knows ASGI messages and HTTP/1.1 framing, never sockets: it talks to
its connection through the small :class:`Sink` interface.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from pounce.asgi.accesslog import access_log, log_request
from pounce.metrics import Collector
from pounce.protocols import http11
from pounce.types import ASGIApp, Message, Scope

error_log = logging.getLogger("pounce.error")

_NO_BODY_STATUS = frozenset({204, 304})
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
# Pause reading the socket when this much request body waits for the app.
BODY_HIGH_WATER = 256 * 1024


class Sink(Protocol):
    """What a cycle needs from its connection."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def response_done(self, keep_alive: bool) -> None: ...
    def abort(self) -> None: ...
    def resume_reading(self) -> None: ...
    @property
    def request_body_pending(self) -> bool: ...
    def date_header(self) -> bytes: ...


class ASGIProtocolError(RuntimeError):
    """The app sent a message out of order or malformed."""


class HTTPCycle:
    """The ASGI side of one request."""

    __slots__ = (
        "_body",
        "_body_complete",
        "_chunked",
        "_continue_sent",
        "_expected_length",
        "_headers",
        "_sent",
        "_sent_last_body",
        "_status",
        "_waiter",
        "access_log",
        "bytes_sent",
        "conn",
        "disconnected",
        "expect_continue",
        "head_written",
        "is_head",
        "keep_alive",
        "metrics",
        "recorded",
        "response_complete",
        "response_started",
        "scope",
        "start_time",
    )

    def __init__(
        self,
        conn: Sink,
        scope: Scope,
        *,
        keep_alive: bool,
        expect_continue: bool,
        access_log: bool,
        metrics: Collector | None = None,
    ) -> None:
        self.conn = conn
        self.metrics = metrics
        self.recorded = False
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.access_log = access_log
        self.is_head = scope["method"] == "HEAD"
        self.start_time = time.perf_counter()
        self._body = bytearray()
        self._body_complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._continue_sent = False
        self._sent_last_body = False
        self.disconnected = False
        self.response_started = False
        self.head_written = False
        self.response_complete = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self._expected_length: int | None = None
        self._sent = 0
        self.bytes_sent = 0

    # -- fed by the connection -------------------------------------------------

    @property
    def body_complete(self) -> bool:
        return self._body_complete

    @property
    def buffered(self) -> int:
        return len(self._body)

    def feed_body(self, data: bytes) -> None:
        self._body += data
        self._wake()

    def end_body(self) -> None:
        self._body_complete = True
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI --------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if self._body_complete and not self._body and self._sent_last_body:
            await self._wait()
            return {"type": "http.disconnect"}
        if not self._body and not self._body_complete:
            if self.expect_continue and not self._continue_sent and not self.response_started:
                self._continue_sent = True
                self.conn.write(http11.CONTINUE)
            await self._wait()
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
        body = bytes(self._body)
        self._body.clear()
        self.conn.resume_reading()
        more = not self._body_complete
        if not more:
            self._sent_last_body = True
        return {"type": "http.request", "body": body, "more_body": more}

    async def _wait(self) -> None:
        """Wait until the connection has something new for this cycle."""
        while True:
            if self.disconnected or self.response_complete:
                return
            if self._body or (self._body_complete and not self._sent_last_body):
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise ASGIProtocolError("http.response.start sent twice")
            self._start(message)
        elif kind == "http.response.body":
            if not self.response_started:
                raise ASGIProtocolError("http.response.body sent before http.response.start")
            if self.response_complete:
                if self.disconnected:
                    return
                raise ASGIProtocolError("http.response.body sent after the response completed")
            if self.disconnected:
                return
            body = message.get("body", b"")
            more_body = bool(message.get("more_body", False))
            self._body_message(bytes(body), more_body)
            if more_body:
                await self.conn.drain()
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def _start(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ASGIProtocolError(f"invalid status {status!r}")
        headers = _as_header_list(message.get("headers", ()))
        problem = http11.check_response_headers(headers)
        if problem is not None:
            raise ASGIProtocolError(problem)
        self.response_started = True
        self._status = status
        self._headers = headers

    def _body_message(self, body: bytes, more_body: bool) -> None:
        out = b""
        if not self.head_written:
            out = self._head(body, more_body)
        if body and not self.is_head and self._status not in _NO_BODY_STATUS:
            self._sent += len(body)
            if self._expected_length is not None and self._sent > self._expected_length:
                self._fail_framing("the app sent more bytes than its Content-Length")
                return
            out += http11.chunk(body) if self._chunked else body
        if not more_body:
            if self._chunked:
                out += http11.LAST_CHUNK
            self.response_complete = True
        if out:
            self.conn.write(out)
            self.bytes_sent += len(out)
        if not more_body:
            self._wake()
            self._finish()

    def _head(self, body: bytes, more_body: bool) -> bytes:
        """Decide the framing and return the head bytes (RFC 9112 §6)."""
        status = self._status
        lines = [http11.status_line(status)]
        add = lines.append
        has_date = has_server = False
        length: int | None = None
        for name, value in self._headers:
            lname = name.lower()
            if lname in _FRAMING:
                if lname == b"content-length":
                    if not value.strip().isdigit():
                        raise ASGIProtocolError(f"invalid Content-Length {value!r}")
                    length = int(value)
                elif lname == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
                continue  # framing and connection headers are ours to write
            if lname == b"date":
                has_date = True
            elif lname == b"server":
                has_server = True
            add(name + b": " + value + b"\r\n")
        if length is not None:
            self._expected_length = None if self.is_head else length
            add(b"content-length: %d\r\n" % length)
        elif status < 200 or status in _NO_BODY_STATUS or self.is_head:
            pass
        elif not more_body:
            add(b"content-length: %d\r\n" % len(body))
            self._expected_length = len(body)
        elif self.scope["http_version"] == "1.1":
            add(b"transfer-encoding: chunked\r\n")
            self._chunked = True
        else:
            self.keep_alive = False  # a close-delimited body
        if self.conn.request_body_pending:
            # The app answered before reading the whole request body: rather than read
            # and discard an unknown amount, close after this response.
            self.keep_alive = False
        if not has_date:
            add(b"date: " + self.conn.date_header() + b"\r\n")
        if not has_server:
            add(b"server: pounce\r\n")
        if not self.keep_alive:
            add(b"connection: close\r\n\r\n")
        elif self.scope["http_version"] == "1.0":
            add(b"connection: keep-alive\r\n\r\n")
        else:
            add(b"\r\n")
        self.head_written = True
        return b"".join(lines)

    def _fail_framing(self, why: str) -> None:
        self._record(self._status)
        error_log.error(
            "%s %s: %s; closing the connection", self.scope["method"], self.scope["path"], why
        )
        self.response_complete = True
        self.keep_alive = False
        self.conn.abort()

    def _finish(self) -> None:
        if self._expected_length is not None and self._sent < self._expected_length:
            self._fail_framing("the app sent fewer bytes than its Content-Length")
            return
        self._record(self._status)
        self.conn.response_done(self.keep_alive)

    # -- running the app ---------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app, turning its failures into a 500 or a closed connection."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.response_complete:
                self._fail(None)
            raise
        except BaseException as exc:
            error_log.error(
                "Exception in ASGI application (%s %s)",
                self.scope["method"],
                self.scope["path"],
                exc_info=exc,
            )
            if not self.response_complete:
                self._fail(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.response_complete:
                error_log.error(
                    "ASGI application returned without completing the response (%s %s)",
                    self.scope["method"],
                    self.scope["path"],
                )
                self._fail(None)

    def _fail(self, exc: BaseException | None) -> None:
        self.response_complete = True
        self.keep_alive = False
        self._wake()
        if self.disconnected:
            return
        if self.head_written:
            self._record(self._status)
            self.conn.abort()
            return
        response = http11.error_response(500, "Internal Server Error")
        self.conn.write(response)
        self.bytes_sent += len(response)
        self._record(500)
        self.conn.response_done(False)

    def _record(self, status: int) -> None:
        """Count the finished request and write its access-log line (once)."""
        if self.recorded:
            return
        self.recorded = True
        duration = time.perf_counter() - self.start_time
        if self.metrics is not None:
            self.metrics.observe(self.scope["method"], status, duration, self.bytes_sent)
        if not self.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        log_request(self.scope, status, self.bytes_sent, duration)


def _as_header_list(raw: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for item in raw:
        if type(item) is tuple and len(item) == 2:  # the common case, checked cheaply
            name, value = item
            if type(name) is bytes and type(value) is bytes:
                headers.append(item)
                continue
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ASGIProtocolError(f"invalid header {item!r}") from None
        if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
            raise ASGIProtocolError(f"header names and values must be bytes, got {item!r}")
        headers.append((bytes(name), bytes(value)))
    return headers
