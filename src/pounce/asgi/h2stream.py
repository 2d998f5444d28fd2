"""One HTTP/2 stream as an ASGI ``http`` request (RFC 9113 §8).

Like :class:`~pounce.asgi.http.HTTPCycle` it knows ASGI messages, never sockets:
it talks to its connection through :class:`StreamSink`.  The error rules are the
HTTP/1.1 ones: an app that fails before its head is written gets a 500, after
that the stream is reset (RST_STREAM INTERNAL_ERROR), never the connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from pounce.asgi.exchange import ASGIProtocolError, Exchange, response_status
from pounce.metrics import Collector
from pounce.protocols.http2 import CANCEL, INTERNAL_ERROR
from pounce.types import ASGIApp, Message, Scope

error_log = logging.getLogger("pounce.error")

#: Connection-specific header fields, forbidden in HTTP/2 (RFC 9113 §8.2.2).
CONNECTION_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
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


class H2Stream(Exchange):
    """One HTTP/2 request stream: the :class:`~pounce.asgi.exchange.Exchange` plus
    HEADERS/DATA framing, flow control and trailers."""

    __slots__ = (
        "_body_done",
        "_flow_pending",
        "_headers",
        "_received",
        "_status",
        "_trailers_pending",
        "disconnect_grace",
        "id_header",
        "is_head",
        "max_body_size",
        "sink",
        "stream_id",
    )

    def __init__(
        self,
        sink: StreamSink,
        stream_id: int,
        scope: Scope,
        *,
        access_log: bool,
        metrics: Collector | None,
        max_body_size: int = 0,
        tasks: set[asyncio.Task[None]] | None = None,
        disconnect_grace: float | None = None,
        id_header: tuple[bytes, bytes] | None = None,
    ) -> None:
        Exchange.__init__(self, scope, access_log=access_log, metrics=metrics, tasks=tasks)
        #: With a value (``http.disconnect_grace``), an app still running that long after
        #: its stream was reset or its connection lost is cancelled (Exchange.cancel_after).
        self.disconnect_grace = disconnect_grace
        #: The request ID's response header (name, value), unless the app sends one.
        self.id_header = id_header
        self.sink = sink
        self.stream_id = stream_id
        self.max_body_size = max_body_size
        self.is_head = scope["method"] == "HEAD"
        self._received = 0
        self._flow_pending = 0
        self._trailers_pending = False
        self._body_done = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []

    # -- fed by the connection -------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        if self.disconnect_grace is not None:
            self.task = asyncio.current_task()
        await Exchange.run(self, app)

    def disconnect(self) -> None:
        Exchange.disconnect(self)
        if self.disconnect_grace is not None and not self.response_complete:
            self.cancel_after(self.disconnect_grace)

    def feed_body(self, data: bytes, flow_length: int | None = None) -> bool:  # type: ignore[override]
        """Queue request body; False when it goes over ``max_body_size``.

        ``flow_length`` is what the DATA frame counted against the flow-control
        windows (padding included); the windows reopen only as the app reads.
        """
        self._received += len(data)
        if self.max_body_size and self._received > self.max_body_size:
            return False
        self._flow_pending += len(data) if flow_length is None else flow_length
        Exchange.feed_body(self, data)
        return True

    def _body_taken(self, nbytes: int) -> None:
        # Opening the windows only as the app reads is what bounds the buffering.
        flow, self._flow_pending = self._flow_pending, 0
        self.sink.consumed(self.stream_id, flow)

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
            await self._send_body(bytes(message.get("body", b"")), bool(message.get("more_body")))
        elif kind == "http.response.trailers":
            if self.disconnected:
                return
            await self._trailers(message)
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def _start(self, message: Message) -> None:
        status = response_status(message)
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
        id_header = self.id_header
        if id_header is not None and id_header[0] not in names:
            headers.append(id_header)
        return headers

    async def _send_body(self, body: bytes, more_body: bool) -> None:
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

    # -- failures ------------------------------------------------------------------

    def _cancelled(self) -> None:
        """Cancelled (shutdown timeout, or ``http2.reset_grace`` after the client's
        reset): reset the stream, never wait."""
        self.response_complete = True
        self._record(self._status or (499 if self.disconnected else 500))
        self.sink.reset_stream(self.stream_id, CANCEL)
        self.sink.stream_done(self.stream_id)

    async def _failed(self) -> None:
        """A 500 before the head was written, a reset (INTERNAL_ERROR) after."""
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
