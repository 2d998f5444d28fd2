"""One HTTP/2 connection (RFC 9113): an ``asyncio.Protocol`` around ``h2``'s state machine.

The ``h2`` library is the sans-I/O core (frames, HPACK, stream states, flow
control); this module feeds it bytes, turns its events into
:class:`~pounce.asgi.h2stream.H2Stream` calls and writes what it produces.

Flow control bounds memory both ways: a request body is acknowledged (its
window re-opened) only as the app reads it, and a response body is sent only
as far as the peer's connection and stream windows allow (``send_data``
waits for WINDOW_UPDATE), and as far as the transport's write buffer allows.

A stream over SETTINGS_MAX_CONCURRENT_STREAMS is refused on its own with
RST_STREAM REFUSED_STREAM (RFC 9113 §5.1.2), and a malformed request is reset
with PROTOCOL_ERROR (§8.1.1), where ``h2`` would end the connection: see
:mod:`pounce.protocols.http2`.

Rapid reset (CVE-2023-44487) is bounded three ways.  A stream counts toward
``max_concurrent_streams`` until its app returns, reset or not; a reset stream's
app gets ``http.disconnect`` and is cancelled ``reset_grace`` later; a connection
that causes more resets than ``max_resets_per_second`` / ``max_resets`` gets
GOAWAY ENHANCE_YOUR_CALM and is closed.  Apps are started once the whole read is
handled (a stream reset in the same read never reaches its app), at most
:data:`STARTS_PER_PASS` per pass of the loop, reading paused meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from pounce.asgi.h2stream import H2Stream
from pounce.asgi.proxy import apply_forwarding
from pounce.asgi.scope import connection_template, h2_request, http_scope
from pounce.protocols.h2budget import ResetBudget
from pounce.protocols.http2 import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    ServerH2Connection,
    connection_error_bytes,
    content_length,
    is_extended_connect,
)
from pounce.types import ASGIApp, Scope
from pounce.worker.context import ServerState
from pounce.worker.launch import launch, track

if TYPE_CHECKING:
    from pounce.asgi.h2websocket import H2WebSocketStream

error_log = logging.getLogger("pounce.error")

#: Streams whose apps are started in one pass of the event loop, per connection: a
#: read full of HEADERS frames does not keep the loop from other connections.
STARTS_PER_PASS = 16
#: Bytes of one read handed to h2 at a time (a few hundred small frames).
READ_SLICE = 4096
#: Largest connection-level receive window opened (all streams' bodies together).
MAX_CONNECTION_WINDOW = 16 * 1024 * 1024


class H2Connection(asyncio.Protocol):
    """HTTP/2 over one transport, taken over from an HTTP/1.1 connection."""

    def __init__(
        self,
        state: ServerState,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        scheme: str,
        extensions: dict[str, Any],
        upgrade: tuple[bytes, Scope] | None = None,
        trusted: bool = False,
    ) -> None:
        self.state = state
        self.client = client
        #: Whether the peer is a trusted proxy ([proxy] trusted).
        self.trusted = trusted
        self.server = server
        self.scheme = scheme
        self.extensions = extensions
        self._upgrade = upgrade
        self._scope_base = connection_template(scheme, client, server, state.root_path)
        cfg = state.config.http2
        self.h2 = ServerH2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: cfg.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: cfg.initial_window_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: cfg.max_header_list_size,
                # WebSocket over HTTP/2: extended CONNECT (RFC 8441 §3).
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(_websocket_enabled(state)),
            },
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream | H2WebSocketStream] = {}
        self.closing = False
        self.goaway_sent = False
        self._last_stream_id = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self._window_waiters: dict[int, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        #: Streams whose app runs (until it returns, even after a reset), and those
        #: whose app starts in a coming pass of the loop.
        self._apps: dict[int, asyncio.Task[None]] = {}
        self._pending: dict[int, tuple[H2Stream | H2WebSocketStream, ASGIApp]] = {}
        self._next_pass: asyncio.Handle | None = None
        self._reads_paused = False
        self._resets = ResetBudget(cfg.max_resets_per_second, cfg.max_resets, state.loop.time())

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        if self._upgrade is not None:
            settings, scope = self._upgrade
            self.h2.initiate_upgrade_connection(settings)
        else:
            self.h2.initiate_connection()
        window = min(
            MAX_CONNECTION_WINDOW,
            self.state.config.http2.initial_window_size
            * self.state.config.http2.max_concurrent_streams,
        )
        if window > 65535:
            self.h2.increment_flow_control_window(window - 65535)
        self._flush()
        if self._upgrade is not None:
            # The upgrading HTTP/1.1 request is stream 1, half-closed (RFC 7540 §3.2).
            extensions = {**scope["extensions"], "http.response.trailers": {}}
            scope = dict(scope, http_version="2", extensions=extensions)
            self._start_stream(1, scope, end_stream=True)
            self._upgrade = None
            self._start_pending()
        self._arm_idle(self.state.config.http.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.state.connections.discard(self)
        self._drop_timer()
        self._pending.clear()
        for stream_id, stream in list(self.streams.items()):
            stream.disconnect()
            self._cancel_later(stream_id)
        self._wake_all()
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        # h2 parses a whole read before it returns events: fed a slice at a time, a
        # connection closed for its resets (or errors) stops costing parse time at once.
        for start in range(0, len(data), READ_SLICE):
            try:
                events = self.h2.receive_data(data[start : start + READ_SLICE])
            except h2.exceptions.ProtocolError as exc:
                self._protocol_error(exc)
                return
            for event in events:
                self._handle(event)
                if self.closing:
                    return
        if self._next_pass is None:
            self._start_pending()
        self._flush()
        if self.goaway_sent and not self.streams:
            self._close()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- events -------------------------------------------------------------------

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None and event.headers is not None
            if self.goaway_sent and event.stream_id > self._last_stream_id:
                self.h2.reset_stream(event.stream_id, REFUSED_STREAM)  # after our GOAWAY
                return
            running = len(self._apps) + len(self._pending)
            if running >= self.state.config.http2.max_concurrent_streams:
                # As many apps run as streams may be open, some of them for streams the
                # client reset: a reset frees no room until the app returns (rapid reset).
                self.h2.reset_stream(event.stream_id, REFUSED_STREAM)
                self._spend_reset()
                return
            if is_extended_connect(event.headers):
                self._start_websocket(
                    event.stream_id, event.headers, event.stream_ended is not None
                )
                return
            scope = self._scope(event.headers)
            if scope is None or (
                event.stream_ended is not None and content_length(scope["headers"])
            ):
                # Malformed (RFC 9113 §8.1.1), e.g. content-length > 0 without DATA.
                self.h2.reset_stream(event.stream_id, PROTOCOL_ERROR)
                self._spend_reset()
                return
            self._start_stream(event.stream_id, scope, end_stream=event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self._data(event.stream_id, event.data, event.flow_controlled_length or 0)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.end_body()
        elif isinstance(event, h2.events.StreamReset):
            # The client's RST_STREAM, or ours for its malformed request (protocols/http2).
            stream_id = event.stream_id or 0
            stream = self.streams.pop(stream_id, None)
            if self._pending.pop(stream_id, None) is None and stream is not None:
                stream.disconnect()  # only this stream: its app gets http.disconnect
                self._cancel_later(stream_id)
            self._wake(stream_id)
            self._spend_reset()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                self._wake(event.stream_id)
            else:
                self._wake_all()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._wake_all()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_sent = True
            self._pending.clear()
            for stream in list(self.streams.values()):
                stream.disconnect()
            self._flush()
            self._close()

    def _data(self, stream_id: int, data: bytes, flow_length: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            # A stream already answered: keep the connection window open.
            self.h2.acknowledge_received_data(flow_length, stream_id)
            return
        if not stream.feed_body(data, flow_length):
            # Over http.max_body_size: this stream only.
            self.h2.acknowledge_received_data(flow_length, stream_id)
            self.streams.pop(stream_id, None)
            self._pending.pop(stream_id, None)  # its app not started yet: never is
            stream.disconnect()
            self.h2.reset_stream(stream_id, CANCEL)

    def _start_stream(self, stream_id: int, scope: Scope, *, end_stream: bool) -> None:
        state = self.state
        special = state.special_routes.get(scope["path"]) if state.special_routes else None
        http = state.config.http
        stream = H2Stream(
            self,
            stream_id,
            scope,
            access_log=state.config.logging.access_log and special is None,
            metrics=state.metrics if special is None else None,
            max_body_size=http.max_body_size,
            id_header=self._id_header(scope),
        )
        self.streams[stream_id] = stream
        self._drop_timer()
        if end_stream:
            stream.end_body()
        app: ASGIApp = special or state.app
        length = content_length(scope["headers"])
        if http.max_body_size and length is not None and length > http.max_body_size:
            app = _payload_too_large
        self._pending[stream_id] = (stream, app)

    def _start_websocket(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        """An extended CONNECT (RFC 8441): a WebSocket in this stream, or an error answer."""
        pseudo = {name: value for name, value in headers if name[:1] == b":"}
        version = [value.strip() for name, value in headers if name == b"sec-websocket-version"]
        scope = self._scope(headers)
        if (
            not _websocket_enabled(self.state)
            or pseudo.get(b":protocol", b"").lower() != b"websocket"
            or scope is None
        ):
            self._answer(stream_id, 501 if scope is not None else 400, [])
            return
        if version != [b"13"]:
            self._answer(stream_id, 426, [(b"sec-websocket-version", b"13")])
            return
        if self.state.special_routes and scope["path"] in self.state.special_routes:
            self._answer(stream_id, 400, [])  # health and metrics paths are HTTP only
            return
        from pounce.asgi.h2websocket import H2WebSocketStream, h2_websocket_scope

        ws_scope, offers = h2_websocket_scope(scope, scope["headers"])
        config = self.state.config.websocket
        stream = H2WebSocketStream(
            self,
            stream_id,
            ws_scope,
            offers,
            max_message_size=config.max_message_size,
            per_message_deflate=config.per_message_deflate,
            access_log=self.state.config.logging.access_log,
            metrics=self.state.metrics,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            id_header=self._id_header(scope),
        )
        self.streams[stream_id] = stream
        self._drop_timer()
        if end_stream:
            stream.end_body()
        if self.state.draining:
            stream.close(*_drain_close(self.state))
        self._pending[stream_id] = (stream, self.state.app)

    # -- running apps, rapid reset ---------------------------------------------------

    def _start_pending(self) -> None:
        """Start the apps of new streams, :data:`STARTS_PER_PASS` at a time."""
        self._next_pass = None
        pending = self._pending
        if not pending and not self._reads_paused:
            return
        for _ in range(min(len(pending), STARTS_PER_PASS)):
            stream_id = next(iter(pending))
            stream, app = pending.pop(stream_id)
            task = launch(self._run(stream, app), self.state.loop)
            if task is not None:  # (done already: _run has left _apps)
                track(task, self.state.tasks)
                self._apps[stream_id] = task
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if pending:
            # The rest in the next pass, other connections' work first; no reads meanwhile.
            self._next_pass = self.state.loop.call_soon(self._start_pending)
            if not self._reads_paused:
                self._reads_paused = True
                transport.pause_reading()
        elif self._reads_paused:
            self._reads_paused = False
            transport.resume_reading()

    async def _run(self, stream: H2Stream | H2WebSocketStream, app: ASGIApp) -> None:
        try:
            await stream.run(app)
        finally:
            self._apps.pop(stream.stream_id, None)

    def _cancel_later(self, stream_id: int) -> None:
        """A reset stream's app: ``http.disconnect`` now, cancelled ``reset_grace`` later."""
        task = self._apps.get(stream_id)
        if task is None:
            return
        grace = self.state.config.http2.reset_grace
        if grace > 0:
            self.state.loop.call_later(grace, _cancel, task)
        else:
            task.cancel()

    def _spend_reset(self) -> None:
        """Count a reset the client caused; over the budget: GOAWAY ENHANCE_YOUR_CALM."""
        if self._resets.spend(self.state.loop.time()) or self.closing:
            return
        error_log.warning(
            "HTTP/2 client %s caused %d stream resets, over http2.max_resets_per_second"
            " or http2.max_resets: GOAWAY ENHANCE_YOUR_CALM",
            self.client,
            self._resets.spent,
        )
        self.h2.close_connection(error_code=ENHANCE_YOUR_CALM)
        self._flush()
        self.goaway_sent = True
        self._close()

    def _answer(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """A complete header-only response to a stream that gets no app."""
        head = [(b":status", b"%d" % status), *headers, (b"date", self.state.date_header())]
        self.h2.send_headers(stream_id, head, end_stream=True)

    def _stream_extensions(self, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        """A stream's scope extensions: the connection's, trailers, and its request ID."""
        extensions = {**self.extensions, "http.response.trailers": {}}
        ids = self.state.request_ids
        if ids is not None:
            extensions["request_id"] = ids.take(headers, self.trusted)
        return extensions

    def _id_header(self, scope: Scope) -> tuple[bytes, bytes] | None:
        """The response header of the request ID in ``scope`` (asgi/requestid.py)."""
        ids = self.state.request_ids
        return None if ids is None else ids.pair(scope)

    def _scope(self, headers: list[tuple[bytes, bytes]]) -> Scope | None:
        """The stream's ``http`` scope (asgi/scope.py); None without :method or :path."""
        request = h2_request(headers)
        if request is None:
            return None
        method, target, plain = request
        scope = http_scope(
            self._scope_base,
            "2",
            method,
            target,
            plain,
            self.state.lifespan_state,
            self._stream_extensions(plain),
        )
        if self.trusted and self.state.trusted_peers is not None:
            apply_forwarding(scope, self.state.trusted_peers)  # a proxy's headers (asgi/proxy.py)
        return scope

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> None:
        """A connection error: GOAWAY (see protocols/http2.connection_error_bytes), close."""
        out = connection_error_bytes(self.h2.data_to_send(), exc)
        error_log.info("HTTP/2 protocol error from %s: %s", self.client, exc)
        self.closing = True
        for stream in list(self.streams.values()):
            stream.disconnect()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
            self.transport.close()

    # -- StreamSink -------------------------------------------------------------------

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        if self.closing or stream_id not in self.streams:
            return
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self._flush()

    async def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> bool:
        view = memoryview(data)
        while True:
            if self.closing or stream_id not in self.streams:
                return False
            if not view:
                if end_stream:
                    self.h2.end_stream(stream_id)
                    self._flush()
                return True
            try:
                window = self.h2.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                return False
            size = min(window, self.h2.max_outbound_frame_size, len(view))
            if size <= 0:
                await self._wait_window(stream_id)
                continue
            chunk, view = view[:size], view[size:]
            self.h2.send_data(stream_id, bytes(chunk), end_stream=end_stream and not view)
            self._flush()
            if not self._writable.is_set():
                await self._writable.wait()
            if not view:
                return True

    def reset_stream(self, stream_id: int, code: int) -> None:
        if not self.closing and stream_id in self.streams:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.reset_stream(stream_id, code)
            self._flush()

    def consumed(self, stream_id: int, nbytes: int) -> None:
        if nbytes and not self.closing:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.acknowledge_received_data(nbytes, stream_id)
            self._flush()

    def stream_done(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream.body_complete and not self.closing:
            # Answered before the whole request body: stop it (RFC 9113 §8.1).
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.reset_stream(stream_id, NO_ERROR)
            self._flush()
        if not self.streams:
            if self.goaway_sent:
                self._close()
            else:
                self._arm_idle(self.state.config.http.keep_alive_timeout)

    def date_header(self) -> bytes:
        return self.state.date_header()

    # -- flow control waits -------------------------------------------------------------

    async def _wait_window(self, stream_id: int) -> None:
        waiter = self._window_waiters.get(stream_id)
        if waiter is None or waiter.done():
            waiter = self._window_waiters[stream_id] = self.state.loop.create_future()
        await waiter

    def _wake(self, stream_id: int) -> None:
        waiter = self._window_waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_all(self) -> None:
        for stream_id in list(self._window_waiters):
            self._wake(stream_id)

    # -- writing, timers, shutdown ----------------------------------------------------

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self.closing = True
        self._pending.clear()
        self._drop_timer()
        self._wake_all()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _arm_idle(self, delay: float) -> None:
        self._drop_timer()
        self._timer = self.state.loop.call_later(delay, self._idle)

    def _drop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        if not self.streams:
            self.shutdown()

    def shutdown(self, idle_grace: float = 0.0) -> None:
        """GOAWAY (NO_ERROR) now; streams in flight finish, then the connection closes."""
        if self.closing:
            return
        for stream in list(self.streams.values()):
            if not isinstance(stream, H2Stream):
                stream.close(*_drain_close(self.state))  # WebSockets: 1001, or 1012
        if not self.goaway_sent:
            # Written around h2: its close_connection() would also stop the streams
            # in flight, which a graceful GOAWAY lets finish (RFC 9113 §6.8).
            self._flush()
            self.goaway_sent = True
            self._last_stream_id = self.h2.highest_inbound_stream_id
            frame = GoAwayFrame(0, last_stream_id=self._last_stream_id, error_code=NO_ERROR)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame.serialize())
        if not self.streams:
            self._close()

    def abort(self) -> None:
        self.closing = True
        self._drop_timer()
        if self.transport is not None:
            self.transport.abort()


def _cancel(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()


def _websocket_enabled(state: ServerState) -> bool:
    """WebSocket over HTTP/2 needs ``websocket.enabled`` and wsproto (``pounce[ws]``)."""
    return state.config.websocket.enabled and importlib.util.find_spec("wsproto") is not None


def _drain_close(state: ServerState) -> tuple[int, str]:
    """The close code on drain: 1012 when another generation takes over, else 1001."""
    if state.drain_grace > 0:
        return 1012, "server restarting"
    return 1001, "server shutting down"


async def _payload_too_large(scope: Scope, receive: Any, send: Any) -> None:
    body = b"Payload Too Large"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
