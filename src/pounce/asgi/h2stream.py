"""One HTTP/2 stream as an ASGI ``http`` request (RFC 9113 §8).

Like :class:`~pounce.asgi.http.HTTPCycle` it knows ASGI messages, never sockets:
it talks to its connection through :class:`StreamSink`.  The error rules are the
HTTP/1.1 ones: an app that fails before its head is written gets a 500, after
that the stream is reset (RST_STREAM INTERNAL_ERROR), never the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from pounce.asgi.accesslog import access_log, log_request
from pounce.asgi.http import ASGIProtocolError
from pounce.metrics import Collector
from pounce.types import ASGIApp, Message, Scope

error_log = logging.getLogger("pounce.error")

#: Connection-specific header fields, forbidden in HTTP/2 (RFC 9113 §8.2.2).
CONNECTION_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: RST_STREAM codes (RFC 9113 §7).
NO_ERROR = 0x0
INTERNAL_ERROR = 0x2
CANCEL = 0x8
_NO_BODY_STATUS = frozenset({204, 304})


class StreamSink(Protocol):
    """What a stream needs from its HTTP/2 connection."""

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None: ...
    async def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> bool: ...
    def reset_stream(self, stream_id: int, code: int) -> None: ...
    def consumed(self, stream_id: int, nbytes: int) -> None: ...
    def stream_done(self, stream_id: int) -> None: ...
    def date_header(self) -> bytes: ...


class H2Stream:
    """The ASGI side of one HTTP/2 request stream."""

    def __init__(
        self,
        sink: StreamSink,
        stream_id: int,
        scope: Scope,
        *,
        access_log: bool,
        metrics: Collector | None,
        max_body_size: int = 0,
    ) -> None:
        self.sink = sink
        self.stream_id = stream_id
        self.scope = scope
        self.access_log = access_log
        self.metrics = metrics
        self.max_body_size = max_body_size
        self.is_head = scope["method"] == "HEAD"
        self.start_time = time.perf_counter()
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._received = 0
        self.body_complete = False
        self.disconnected = False
        self.response_started = False
        self.head_written = False
        self.response_complete = False
        self._trailers_pending = False
        self._body_done = False
        self._sent_last_body = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._waiter: asyncio.Future[None] | None = None
        self.bytes_sent = 0
        self.recorded = False

    # -- fed by the connection -------------------------------------------------

    def feed_body(self, data: bytes, flow_length: int) -> bool:
        """Queue request body; False when it goes over ``max_body_size``."""
        self._received += len(data)
        if self.max_body_size and self._received > self.max_body_size:
            return False
        self._chunks.append((data, flow_length))
        self._wake()
        return True

    def end_body(self) -> None:
        self.body_complete = True
        self._wake()

    def disconnect(self) -> None:
        """The client reset the stream or the connection went away."""
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI --------------------------------------------------------------------

    async def receive(self) -> Message:
        if self._sent_last_body:
            # After the whole body: wait for the response to finish, then disconnect.
            await self._wait(lambda: self.response_complete or self.disconnected)
            return {"type": "http.disconnect"}
        await self._wait(lambda: bool(self._chunks) or self.body_complete or self.disconnected)
        if self.disconnected:
            return {"type": "http.disconnect"}
        body = b"".join(chunk for chunk, _ in self._chunks)
        # Opening the windows only as the app reads is what bounds the buffering.
        self.sink.consumed(self.stream_id, sum(n for _, n in self._chunks))
        self._chunks.clear()
        more = not self.body_complete
        self._sent_last_body = not more
        return {"type": "http.request", "body": body, "more_body": more}

    async def _wait(self, ready: Callable[[], bool]) -> None:
        while not ready():
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
            if self.disconnected:
                return
            if self.response_complete or self._body_done:
                raise ASGIProtocolError("http.response.body sent after the response completed")
            await self._body(bytes(message.get("body", b"")), bool(message.get("more_body")))
        elif kind == "http.response.trailers":
            if self.disconnected:
                return
            await self._trailers(message)
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def _start(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ASGIProtocolError(f"invalid status {status!r}")
        headers: list[tuple[bytes, bytes]] = []
        for item in message.get("headers", ()):
            try:
                name, value = item
            except (TypeError, ValueError):
                raise ASGIProtocolError(f"invalid header {item!r}") from None
            if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
                raise ASGIProtocolError(f"header names and values must be bytes, got {item!r}")
            lname = bytes(name).lower()
            if lname in CONNECTION_HEADERS or lname.startswith(b":"):
                continue  # connection-specific: dropped (RFC 9113 §8.2.2)
            headers.append((lname, bytes(value)))
        self.response_started = True
        self._status = status
        self._headers = headers
        self._trailers_pending = bool(message.get("trailers", False))

    def _head(self, body: bytes, more_body: bool) -> list[tuple[bytes, bytes]]:
        names = {name for name, _ in self._headers}
        headers = [(b":status", b"%d" % self._status), *self._headers]
        if (
            b"content-length" not in names
            and not more_body
            and not self._trailers_pending
            and not self.is_head
            and self._status not in _NO_BODY_STATUS
        ):
            headers.append((b"content-length", b"%d" % len(body)))
        if b"date" not in names:
            headers.append((b"date", self.sink.date_header()))
        if b"server" not in names:
            headers.append((b"server", b"pounce"))
        return headers

    async def _body(self, body: bytes, more_body: bool) -> None:
        no_body = self.is_head or self._status in _NO_BODY_STATUS
        end = not more_body and not self._trailers_pending
        if not self.head_written:
            self.head_written = True
            head = self._head(body, more_body)
            self.sink.send_headers(self.stream_id, head, end and (no_body or not body))
            if end and (no_body or not body):
                self._body_done = True
                self._complete()
                return
        if no_body:
            body = b""
        if body or end:
            self.bytes_sent += len(body)
            if not await self.sink.send_data(self.stream_id, body, end):
                self.disconnect()
                return
        if not more_body:
            self._body_done = True  # only http.response.trailers may follow
            if end:
                self._complete()

    async def _trailers(self, message: Message) -> None:
        if not self._trailers_pending or not self._body_done:
            raise ASGIProtocolError("http.response.trailers without trailers=True in start")
        trailers = [
            (bytes(name).lower(), bytes(value))
            for name, value in message.get("headers", ())
            if bytes(name).lower() not in CONNECTION_HEADERS
        ]
        if message.get("more_trailers", False):
            raise ASGIProtocolError("more_trailers is not supported")
        self._trailers_pending = False
        self.sink.send_headers(self.stream_id, trailers, True)
        self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        self._wake()
        self._record(self._status)
        self.sink.stream_done(self.stream_id)

    # -- running the app ---------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app; a failure becomes a 500 before the head, a reset after."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.response_complete:
                self._fail_cancelled()
            raise
        except BaseException as exc:
            error_log.error(
                "Exception in ASGI application (%s %s)",
                self.scope["method"],
                self.scope["path"],
                exc_info=exc,
            )
            if not self.response_complete:
                await self._fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.response_complete:
                if not self.disconnected:
                    error_log.error(
                        "ASGI application returned without completing the response (%s %s)",
                        self.scope["method"],
                        self.scope["path"],
                    )
                await self._fail()

    def _fail_cancelled(self) -> None:
        """Cancelled (shutdown timeout): reset the stream, never wait."""
        self.response_complete = True
        self._record(self._status or 500)
        self.sink.reset_stream(self.stream_id, CANCEL)
        self.sink.stream_done(self.stream_id)

    async def _fail(self) -> None:
        self.response_complete = True
        self._wake()
        if self.disconnected:
            self._record(self._status or 499)
            self.sink.stream_done(self.stream_id)
            return
        if self.head_written:
            self._record(self._status)
            self.sink.reset_stream(self.stream_id, INTERNAL_ERROR)
            self.sink.stream_done(self.stream_id)
            return
        self.head_written = True
        body = b"Internal Server Error"
        self._status = 500
        self._headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self._trailers_pending = False
        self.sink.send_headers(self.stream_id, self._head(body, False), False)
        self.bytes_sent += len(body)
        self._record(500)
        await self.sink.send_data(self.stream_id, body, True)
        self.sink.stream_done(self.stream_id)

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
