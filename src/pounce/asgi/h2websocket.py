"""A WebSocket over one HTTP/2 stream (RFC 8441, extended CONNECT) as ASGI.

The client opens the stream with ``:method CONNECT`` and ``:protocol websocket``;
the app gets the ``websocket`` scope (``http_version`` ``"2"``).  Accepting answers
``:status 200``, and the WebSocket frames (RFC 6455, via wsproto's frame layer in
:class:`~pounce.protocols.websocket.Session`) then travel in the stream's DATA
frames, both ways under HTTP/2 flow control.  The end of the closing handshake
ends the stream (END_STREAM); a reset stream is an abnormal close (1006).

Like :class:`~pounce.asgi.h2stream.H2Stream` this talks to its connection only
through :class:`~pounce.asgi.h2stream.StreamSink`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from pounce.asgi.accesslog import access_log, log_request
from pounce.asgi.h2stream import CANCEL, CONNECTION_HEADERS, StreamSink
from pounce.asgi.http import ASGIProtocolError, _as_header_list
from pounce.asgi.websocket import QUEUE_HIGH_WATER, ClientDisconnected, Phase
from pounce.metrics import Collector
from pounce.protocols.websocket import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    Closed,
    Message,
    Session,
)
from pounce.types import ASGIApp, Scope

error_log = logging.getLogger("pounce.error")

#: How long the closing handshake (and the client's END_STREAM after ours) may take.
CLOSE_TIMEOUT = 5.0
#: Headers of the extended CONNECT handshake that are Pounce's to write.
_HANDSHAKE_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-extensions", b"content-length"}
)


def h2_websocket_scope(
    base: Scope, headers: list[tuple[bytes, bytes]], *, secure: bool
) -> tuple[Scope, list[str]]:
    """The ``websocket`` scope for an extended CONNECT stream, and the
    ``sec-websocket-extensions`` offers; ``base`` is the stream's ``http`` scope."""
    subprotocols: list[str] = []
    offers: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
        elif name == b"sec-websocket-extensions":
            offers += [e.strip() for e in value.decode("latin-1").split(",") if e.strip()]
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if "tls" in base["extensions"]:
        extensions["tls"] = base["extensions"]["tls"]
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "2",
        "scheme": "wss" if secure else "ws",
        "path": base["path"],
        "raw_path": base["raw_path"],
        "query_string": base["query_string"],
        "root_path": base["root_path"],
        "headers": base["headers"],
        "client": base["client"],
        "server": base["server"],
        "subprotocols": subprotocols,
        "state": base["state"],
        "extensions": extensions,
    }
    return scope, offers


class H2WebSocketStream:
    """The ASGI side of one WebSocket carried by an HTTP/2 stream."""

    def __init__(
        self,
        sink: StreamSink,
        stream_id: int,
        scope: Scope,
        extension_offers: list[str],
        *,
        max_message_size: int,
        per_message_deflate: bool,
        access_log: bool,
        metrics: Collector | None,
    ) -> None:
        self.sink = sink
        self.stream_id = stream_id
        self.scope = scope
        self.extension_offers = extension_offers
        self.max_message_size = max_message_size
        self.per_message_deflate = per_message_deflate
        self.access_log = access_log
        self.metrics = metrics
        self.phase = Phase.CONNECTING
        self.session: Session | None = None
        self.closed: Closed | None = None
        self.body_complete = False  # the client sent END_STREAM
        self.disconnected = False  # reset, or the connection went away
        self.start_time = time.perf_counter()
        self.bytes_sent = 0
        self.status = 0
        self.recorded = False
        self._connect_sent = False
        self._pending: list[tuple[bytes, int]] = []  # DATA before the app accepted
        self._queue: deque[Message] = deque()
        self._unacked = 0  # flow-controlled bytes held back while the queue is full
        self._out = bytearray()
        self._ended = False  # our END_STREAM is queued
        self._lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._close_on_accept: tuple[int, str] | None = None
        self._deny_started = False
        self._deny_headers: list[tuple[bytes, bytes]] = []
        self._end_sent = False

    # -- fed by the connection (the StreamSink's events) -------------------------

    def feed_body(self, data: bytes, flow_length: int) -> bool:
        """DATA from the client: WebSocket frames.  Never over a body limit."""
        if self.session is None:
            if self.phase is Phase.CONNECTING:
                self._pending.append((data, flow_length))  # wait for the app's answer
            else:
                self.sink.consumed(self.stream_id, flow_length)
            return True
        self._feed(data, flow_length)
        return True

    def _feed(self, data: bytes, flow_length: int) -> None:
        assert self.session is not None
        events, out = self.session.receive(data)
        self._write(out)
        for event in events:
            if isinstance(event, Message):
                self._queue.append(event)
            else:
                self._set_closed(event)
        if self.session.done:
            self._end()
        # Flow control: the window re-opens only while the app keeps up.
        if len(self._queue) >= QUEUE_HIGH_WATER:
            self._unacked += flow_length
        else:
            self.sink.consumed(self.stream_id, flow_length)
        self._wake()

    def end_body(self) -> None:
        """The client ended its side: without a closing handshake that is 1006."""
        self.body_complete = True
        if self.session is not None and not self.session.done:
            self.session.receive(None)
        self._set_closed(Closed(CLOSE_ABNORMAL))
        if self.session is not None:
            self.phase = Phase.CLOSED
            self._end()
        self._wake()

    def disconnect(self) -> None:
        """The client reset the stream or the connection went away."""
        self.disconnected = True
        if self.session is not None and not self.session.done:
            self.session.receive(None)
        self._set_closed(Closed(CLOSE_ABNORMAL))
        self.phase = Phase.CLOSED
        self._wake()

    def close(self, code: int, reason: str = "") -> None:
        """Server-side close (drain): the app sees a disconnect."""
        if self.phase is Phase.CONNECTING:
            self._close_on_accept = (code, reason)
            return
        if self.session is not None and self.phase is Phase.OPEN:
            self.phase = Phase.CLOSED
            self._write(self.session.close(code, reason))
            self._set_closed(Closed(code, reason, by_peer=False))
        self._wake()

    def _set_closed(self, event: Closed) -> None:
        if self.closed is None:
            self.closed = event
        if event.by_peer and self.phase is Phase.OPEN:
            self.phase = Phase.CLOSED

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # -- writing: in order, under flow control -------------------------------------

    def _write(self, data: bytes) -> None:
        if data and not self._ended and not self.disconnected:
            self.bytes_sent += len(data)
            self._out += data
            self._schedule_flush()

    def _end(self) -> None:
        """Queue END_STREAM after what is already queued."""
        if not self._ended and not self.disconnected:
            self._ended = True
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        async with self._lock:
            while self._out and not self.disconnected:
                data = bytes(self._out)
                self._out.clear()
                end = self._ended and not self._out
                self._end_sent = end
                if not await self.sink.send_data(self.stream_id, data, end):
                    self.disconnect()
                    return
            if self._ended and not self._end_sent and not self.disconnected:
                self._end_sent = True
                await self.sink.send_data(self.stream_id, b"", True)

    async def _drain(self) -> None:
        """Wait until everything queued went out (the client's windows allowed it)."""
        while self._out or self._flushes:
            if self.disconnected:
                return
            await asyncio.gather(*self._flushes)

    # -- ASGI --------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self._queue:
                message = self._queue.popleft()
                if self._unacked and len(self._queue) < QUEUE_HIGH_WATER // 2:
                    unacked, self._unacked = self._unacked, 0
                    self.sink.consumed(self.stream_id, unacked)
                if isinstance(message.data, str):
                    return {"type": "websocket.receive", "text": message.data}
                return {"type": "websocket.receive", "bytes": message.data}
            if self.closed is not None:
                return {
                    "type": "websocket.disconnect",
                    "code": self.closed.code,
                    "reason": self.closed.reason,
                }
            await self._wait()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        phase = self.phase
        if phase is Phase.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._start_denial({"status": 403, "headers": []})
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
                self._write(self.session.send(payload))
                await self._drain()
            elif kind == "websocket.close":
                code = int(message.get("code") or CLOSE_NORMAL)
                reason = message.get("reason") or ""
                self.phase = Phase.CLOSED
                self._write(self.session.close(code, reason))
                self._set_closed(Closed(code, reason, by_peer=False))
                self._wake()
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
        out: list[tuple[bytes, bytes]] = [(b":status", b"200")]
        if subprotocol is not None:
            out.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        extensions: list[Extension] = []
        if self.per_message_deflate and self.extension_offers:
            offered: list[Extension] = [PerMessageDeflate()]
            agreed = server_extensions_handshake(self.extension_offers, offered)
            if agreed is not None:
                out.append((b"sec-websocket-extensions", agreed))
                extensions = [e for e in offered if e.enabled()]
        out += self._app_headers(message, skip=_HANDSHAKE_HEADERS)
        self.session = Session(extensions, self.max_message_size)
        self.phase = Phase.OPEN
        self.status = 200
        self.sink.send_headers(self.stream_id, out, False)
        self._record(200)
        pending, self._pending = self._pending, []
        for data, flow_length in pending:
            self._feed(data, flow_length)
        if self.body_complete and self.phase is Phase.OPEN:
            self.end_body()  # the client ended its side before we answered
        if self._close_on_accept is not None:
            self.close(*self._close_on_accept)  # the worker began draining meanwhile

    def _app_headers(
        self, message: dict[str, Any], *, skip: frozenset[bytes] = frozenset()
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for name, value in _as_header_list(message.get("headers", ())):
            lname = name.lower()
            if lname in CONNECTION_HEADERS or lname.startswith(b":") or lname in skip:
                continue  # connection-specific: dropped (RFC 9113 §8.2.2)
            out.append((lname, value))
        names = {name for name, _ in out}
        if b"date" not in names:
            out.append((b"date", self.sink.date_header()))
        if b"server" not in names:
            out.append((b"server", b"pounce"))
        return out

    def _start_denial(self, message: dict[str, Any]) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status <= 999 or status < 200:
            raise ASGIProtocolError(f"invalid denial status {status!r}")
        headers = self._app_headers(message)
        self.phase = Phase.DENYING
        self.status = status
        self._deny_headers = [(b":status", b"%d" % status), *headers]

    async def _deny_body(self, body: bytes, *, more_body: bool) -> None:
        if not self._deny_started:
            self._deny_started = True
            end = not body and not more_body
            self.sink.send_headers(self.stream_id, self._deny_headers, end)
            if end:
                self._denied()
                return
        self.bytes_sent += len(body)
        sent = await self.sink.send_data(self.stream_id, body, not more_body)
        if not sent:
            self.disconnect()
        if not more_body:
            self._denied()

    def _denied(self) -> None:
        self.phase = Phase.CLOSED
        self._record(self.status)

    # -- running the app ---------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app; then finish the closing handshake and end the stream."""
        try:
            await app(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            for task in list(self._flushes):
                task.cancel()
            self._record(self.status or 500)
            self.sink.reset_stream(self.stream_id, CANCEL)
            self.sink.stream_done(self.stream_id)
            raise
        except BaseException as exc:
            if not (isinstance(exc, ClientDisconnected) and self.closed is not None):
                error_log.error(
                    "Exception in ASGI application (WebSocket %s)", self.scope["path"], exc_info=exc
                )
            await self._fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if self.phase is Phase.CONNECTING or self.phase is Phase.DENYING:
                if not self.disconnected:
                    error_log.error(
                        "ASGI application returned without answering the WebSocket handshake (%s)",
                        self.scope["path"],
                    )
                await self._fail()
            elif self.phase is Phase.OPEN:
                assert self.session is not None
                self.phase = Phase.CLOSED
                self._write(self.session.close(CLOSE_NORMAL))
        await self._finish()

    async def _fail(self) -> None:
        phase = self.phase
        self.phase = Phase.CLOSED
        if self.disconnected:
            self._record(self.status or 499)
        elif phase is Phase.CONNECTING:
            body = b"Internal Server Error"
            self.status = 500
            headers = self._app_headers(
                {"headers": [(b"content-type", b"text/plain; charset=utf-8")]}
            )
            self.sink.send_headers(self.stream_id, [(b":status", b"500"), *headers], False)
            self.bytes_sent += len(body)
            self._record(500)
            await self.sink.send_data(self.stream_id, body, True)
        elif phase is Phase.DENYING:
            self._record(self.status)
            self.sink.reset_stream(self.stream_id, CANCEL)
        elif self.session is not None:
            self._write(self.session.close(CLOSE_INTERNAL_ERROR))

    async def _finish(self) -> None:
        """Wait (bounded) for the closing handshake and both END_STREAMs, then let go."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT
        while self.session is not None and not self.disconnected:
            if self._ended and self.body_complete and not self._flushes:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiters: list[asyncio.Future[Any]] = [*self._flushes]
            self._waiter = loop.create_future()
            waiters.append(self._waiter)
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._waiter = None
        for task in list(self._flushes):
            task.cancel()
        self.sink.stream_done(self.stream_id)  # resets the stream if the client is not done

    def _record(self, status: int) -> None:
        """Count the handshake like a request, and its access-log line (once)."""
        if self.recorded:
            return
        self.recorded = True
        duration = time.perf_counter() - self.start_time
        if self.metrics is not None:
            self.metrics.observe("CONNECT", status, duration, self.bytes_sent)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            log_request(self.scope, status, self.bytes_sent, duration, method="CONNECT")
