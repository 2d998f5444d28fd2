"""A WebSocket over one HTTP/2 stream (RFC 8441, extended CONNECT): a transport for
the bridge.

The client opens the stream with ``:method CONNECT`` and ``:protocol websocket``;
the app gets the ``websocket`` scope (``http_version`` ``"2"``) from the same
:class:`~pounce.asgi.websocket.WebSocketCycle` as over HTTP/1.1.  Accepting
answers ``:status 200``, and the WebSocket frames then travel in the stream's
DATA frames, both ways under HTTP/2 flow control: the window re-opens only while
the app keeps up.  The end of the closing handshake ends the stream
(END_STREAM); a reset stream is an abnormal close (1006).

Like :class:`~pounce.asgi.h2stream.H2Stream` this talks to its connection only
through :class:`~pounce.asgi.h2stream.StreamSink`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pounce.asgi.h2stream import CONNECTION_HEADERS, StreamSink
from pounce.asgi.websocket import (
    CLOSE_TIMEOUT,
    Headers,
    Phase,
    WebSocketCycle,
    websocket_scope,
)
from pounce.metrics import Collector
from pounce.protocols.http2 import CANCEL
from pounce.protocols.websocket import offers
from pounce.types import ASGIApp, Scope

#: Headers of the extended CONNECT handshake that are Pounce's to write.
_HANDSHAKE_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-extensions", b"content-length"}
)


def h2_websocket_scope(base: Scope, headers: list[tuple[bytes, bytes]]) -> tuple[Scope, list[str]]:
    """The ``websocket`` scope for an extended CONNECT stream, and the
    ``sec-websocket-extensions`` offers; ``base`` is the stream's ``http`` scope."""
    subprotocols, extension_offers = offers(headers)
    return websocket_scope(base, subprotocols), extension_offers


class H2WebSocketStream:
    """One WebSocket in an HTTP/2 stream: the stream the connection drives, and the
    :class:`~pounce.asgi.websocket.WebSocketTransport` of its cycle."""

    method = "CONNECT"
    accept_status = 200

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
        ping_interval: float = 0.0,
        ping_timeout: float = 0.0,
        id_header: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.sink = sink
        self.stream_id = stream_id
        self.cycle = WebSocketCycle(
            self,
            scope,
            extension_offers,
            max_message_size=max_message_size,
            per_message_deflate=per_message_deflate,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            access_log=access_log,
            metrics=metrics,
            id_header=id_header,
        )
        self.bytes_sent = 0
        self.body_complete = False  # the client sent END_STREAM
        self.disconnected = False  # reset, or the connection went away
        self._unacked = 0  # flow-controlled bytes held back while the app is behind
        self._paused = False
        self._out = bytearray()
        self._ended = False  # our END_STREAM is queued (or sent)
        self._end_sent = False
        self._hung_up = False
        self._lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def scope(self) -> Scope:
        return self.cycle.scope

    # -- driven by the connection ---------------------------------------------------

    def feed_body(self, data: bytes, flow_length: int) -> bool:
        """DATA from the client: WebSocket frames.  Never over a body limit."""
        cycle = self.cycle
        cycle.data_received(data)
        if self._paused or cycle.phase is Phase.CONNECTING:
            self._unacked += flow_length  # acknowledged when the app catches up
        else:
            self.sink.consumed(self.stream_id, flow_length)
        return True

    def end_body(self) -> None:
        """The client ended its side: without a closing handshake that is 1006."""
        self.body_complete = True
        self.cycle.input_ended()
        self._changed()

    def disconnect(self) -> None:
        """The client reset the stream or the connection went away."""
        self.disconnected = True
        self.cycle.connection_lost()
        self._changed()

    def close(self, code: int, reason: str = "") -> None:
        """Server-side close (drain): the app sees a disconnect."""
        self.cycle.close(code, reason)

    async def run(self, app: ASGIApp) -> None:
        """Run the cycle; then wait for the closing handshake and let the stream go."""
        try:
            await self.cycle.run(app)
        except asyncio.CancelledError:
            self._let_go()
            raise
        await self._finish()

    async def _finish(self) -> None:
        """Wait (bounded) for the closing handshake and both END_STREAMs, then let go."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT
        while self.cycle.session is not None and not self.disconnected:
            if self._ended and (self.body_complete or self._hung_up) and not self._flushes:
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
        self._let_go()

    def _let_go(self) -> None:
        for task in list(self._flushes):
            task.cancel()
        # What the app will never read still counts in the connection's window.
        self._acknowledge()
        self.sink.stream_done(self.stream_id)  # resets the stream if the client is not done

    def _changed(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- WebSocketTransport: the handshake's answer -------------------------------------

    def send_accept(
        self, subprotocol: str | None, extensions: bytes | None, headers: Headers
    ) -> None:
        out: Headers = [(b":status", b"200")]
        if subprotocol is not None:
            out.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        if extensions is not None:
            out.append((b"sec-websocket-extensions", extensions))
        out += self._headers(headers, skip=_HANDSHAKE_HEADERS)
        self.sink.send_headers(self.stream_id, out, False)

    async def send_response(
        self, status: int, headers: Headers, body: bytes, *, more_body: bool
    ) -> None:
        end = not body and not more_body
        self.sink.send_headers(
            self.stream_id, [(b":status", b"%d" % status), *self._headers(headers)], end
        )
        if end:
            self._ended = self._end_sent = True
        else:
            await self.send_body(body, more_body=more_body)

    async def send_body(self, body: bytes, *, more_body: bool) -> None:
        self.bytes_sent += len(body)
        if not more_body:
            self._ended = self._end_sent = True
        if not await self.sink.send_data(self.stream_id, body, not more_body):
            self.disconnect()

    def _headers(self, headers: Headers, *, skip: frozenset[bytes] = frozenset()) -> Headers:
        out: Headers = []
        for name, value in headers:
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

    # -- WebSocketTransport: frames, in order, under flow control ---------------------------

    def write(self, data: bytes) -> None:
        if data and not self._ended and not self.disconnected:
            self.bytes_sent += len(data)
            self._out += data
            self._schedule_flush()

    def end(self) -> None:
        """Queue END_STREAM after what is already queued."""
        if not self._ended and not self.disconnected:
            self._ended = True
            self._schedule_flush()

    def hang_up(self) -> None:
        self._hung_up = True
        self.end()
        self._changed()

    def abort(self) -> None:
        self.sink.reset_stream(self.stream_id, CANCEL)

    def accepted(self) -> None:
        if not self._paused:
            self._acknowledge()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self._acknowledge()

    def _acknowledge(self) -> None:
        unacked, self._unacked = self._unacked, 0
        if unacked:
            self.sink.consumed(self.stream_id, unacked)

    def _schedule_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        self._changed()

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

    async def drain(self) -> None:
        """Wait until everything queued went out (the client's windows allowed it)."""
        while self._out or self._flushes:
            if self.disconnected:
                return
            await asyncio.gather(*self._flushes)
