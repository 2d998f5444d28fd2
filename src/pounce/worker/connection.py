"""One HTTP/1.1 connection: an ``asyncio.Protocol`` feeding the sans-I/O parser.

Owns the socket-facing concerns (timeouts, flow control, pipelining order) and
hands each request to an :class:`~pounce.asgi.http.HTTPCycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from pounce.asgi.http import BODY_HIGH_WATER, DefaultLines, HTTPCycle
from pounce.asgi.proxy import apply_forwarding
from pounce.asgi.scope import connection_template, http_scope
from pounce.config import HttpParser
from pounce.errors import ProtocolError
from pounce.net.tls import tls_extension
from pounce.protocols import http11
from pounce.protocols.h11engine import H11RequestParser
from pounce.types import ASGIApp
from pounce.worker.context import ServerState
from pounce.worker.launch import launch
from pounce.worker.refusal import refuse
from pounce.worker.runner import AVAILABLE as runner_available
from pounce.worker.runner import ConnectionRunner

error_log = logging.getLogger("pounce.error")

# Stop reading when this many bytes of later (pipelined) requests are waiting.
PIPELINE_HIGH_WATER = 64 * 1024
# Queued writes up to this size in all are joined into one transport write.
_JOIN_LIMIT = 64 * 1024


class HTTPConnection(asyncio.Protocol):
    """HTTP/1.1 over one transport."""

    def __init__(self, state: ServerState, listener: Any) -> None:
        self.state = state
        self.listener = listener
        http = state.config.http
        engine = H11RequestParser if http.parser is HttpParser.H11 else http11.RequestParser
        self.parser: http11.RequestParser | H11RequestParser = engine(
            max_header_size=http.max_header_size, max_body_size=http.max_body_size
        )
        self.transport: asyncio.Transport | None = None
        self.cycle: HTTPCycle | None = None
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        # The ASGI TLS extension of a TLS connection, else None.
        self.tls: dict[str, Any] | None = None
        # Whether the peer is a trusted proxy ([proxy] trusted), decided once per connection.
        self.trusted = False
        self.requests = 0
        self.closing = False
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0  # when _timer fires (TimerHandle.when() is a Python call)
        self._deadline: float | None = None
        self._timer_is_header = False
        self._timer_is_body = False  # the deadline is request_timeout's (a body to come)
        self._write_timer: asyncio.TimerHandle | None = None
        self._processing = False
        self._unlaunched: ASGIApp | None = None
        self._runner: ConnectionRunner | None = None
        self._launching: HTTPCycle | None = None
        self._defer = state.defer
        # Output held back until the end of this round of the loop's events.
        self._out: list[bytes] = []
        self._queued = 0  # bytes in _out
        self._cork = state.cork
        # Read per request: copied here once.
        self.loop = state.loop
        self.date_header: Callable[[], bytes] = state.date_header
        self.default_lines: DefaultLines = state.default_lines
        self._scheme = "http"
        self._scope_base: dict[str, Any] = {}
        self._access_log = state.config.logging.access_log
        self._request_ids = state.request_ids  # None: [request_id] is off
        #: The request ID's header field, ``b"x-request-id: "`` (read by HTTPCycle).
        self.id_field = b"" if state.request_ids is None else state.request_ids.field
        self._max_requests = http.max_requests_per_connection
        self._header_timeout = http.header_timeout
        self._keep_alive_timeout = http.keep_alive_timeout
        self._request_timeout = http.request_timeout
        self._write_timeout = http.write_timeout
        self._disconnect_grace = http.disconnect_grace

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave alike)
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server, self.client = _addresses(transport)
        peers = self.state.trusted_peers
        if peers is not None:
            self.trusted = peers.trusts(self.client)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls = tls_extension(ssl_object)
            self._scheme = "https"
        limit = self.state.connection_limit  # [limits] max_connections, None when off
        # (taken just before the set holds it: nothing in between can fail and leak it)
        if limit is not None and not limit.try_acquire():
            refuse(self.state, transport)  # 503 or GOAWAY, then closed; not counted
            return
        self._scope_base = connection_template(
            self._scheme, self.client, self.server, self.state.root_path
        )
        self.state.connections.add(self)
        self._set_timer(self.state.config.http.header_timeout, header=True)
        hooks = self.state.hooks
        if hooks.on_connect is not None:
            hooks.on_connect(self)  # e.g. ALPN chose h2: it calls switch_protocol

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self._runner is not None:
            self._runner.close()
        self._out.clear()
        self._queued = 0
        self._drop_timer()
        self.closing = True
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnect()
            cycle.cancel_after(self._disconnect_grace)
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if self.cycle is None and not self.closing:
            if self.requests == 0:
                hooks = self.state.hooks
                if hooks.on_first_bytes is not None and hooks.on_first_bytes(self, data):
                    return  # another protocol took the connection (and these bytes)
            try:
                request = parser.feed_head(data)
            except ProtocolError as exc:
                self._reject(exc)
                return
            if request is not None:
                # The keep-alive fast path: one whole request head in one read.
                self._start_cycle(request)
                cycle = self.cycle
                if cycle is not None and not (request.chunked or request.content_length):
                    cycle.body_complete = True
                    self._launch(cycle)
                    # (the read is all the parser holds: only a large one can hold that much)
                    if (
                        len(data) > PIPELINE_HIGH_WATER
                        and self.cycle is not None
                        and parser.buffered > PIPELINE_HIGH_WATER
                    ):
                        self._pause_reading()
                    return
        else:
            parser.feed(data)
        self._process()
        cycle = self.cycle
        if cycle is None:
            if not self._timer_is_header and parser.buffered:
                # Part of a request head after an idle keep-alive wait: from now on the
                # whole head must arrive within header_timeout (slowloris).  (A head that
                # arrives in one read never needs this timer.)
                self._set_timer(self._header_timeout, header=True)
        elif not cycle.body_complete:
            # Body bytes are still to come: each read moves the request_timeout
            # deadline (none while reading is paused for the app to catch up).
            if self._reading_paused:
                self._cancel_timer()
            else:
                self._set_timer(self._request_timeout, header=False, body=True)
        elif self._timer_is_body:
            self._cancel_timer()

    def eof_received(self) -> bool | None:
        self.flush()  # the transport closes when this returns: queued responses first
        if self.cycle is not None:
            self.cycle.disconnect()
        return None

    def pause_writing(self) -> None:
        self._writable.clear()
        if self._write_timer is None:
            # The client must read some of the full send buffer within write_timeout.
            self._write_timer = self.loop.call_later(self._write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        self._writable.set()
        timer = self._write_timer
        if timer is not None:
            timer.cancel()
            self._write_timer = None

    # -- parsing ----------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            return  # an app that finished inside _start_cycle: the loop below goes on
        self._processing = True
        try:
            self._process_events()
        finally:
            self._processing = False

    def _process_events(self) -> None:
        parser = self.parser
        next_event = parser.next_event
        while not self.closing:
            cycle = self.cycle
            if cycle is not None and cycle.body_complete:
                if self._unlaunched is not None:
                    self._launch(cycle)
                if self.cycle is None:
                    continue  # answered at once: go on with a pipelined request
                if parser.buffered > PIPELINE_HIGH_WATER:
                    self._pause_reading()
                return
            try:
                event = next_event()
            except ProtocolError as exc:
                self._reject(exc)
                return
            kind = type(event)
            if kind is http11.Request:
                self._start_cycle(event)  # type: ignore[arg-type]
            elif event is http11.END_OF_MESSAGE:
                assert cycle is not None
                cycle.end_body()
            elif kind is http11.Data:
                assert cycle is not None
                cycle.feed_body(event.data)  # type: ignore[union-attr]
                if cycle.buffered > BODY_HIGH_WATER:
                    self._pause_reading()
                    if self._unlaunched is not None:
                        self._launch(cycle)
                    return
            else:  # NEED_DATA or PAUSED
                if cycle is not None and self._unlaunched is not None:
                    self._launch(cycle)
                return

    def _launch(self, cycle: HTTPCycle) -> None:
        """Have the app of a new cycle started at the end of this round of reads.

        Called once the body bytes already here are in the cycle.  The worker starts
        every app of the round from one callback (:meth:`ServerState.defer`), after the
        loop has handled all the round's reads: see :meth:`start_app`.
        """
        self._launching = cycle
        self._defer(self)

    def start_app(self) -> None:
        """Start the app of the cycle :meth:`_launch` deferred.

        The app is stepped right here, as the connection's runner Task
        (:mod:`pounce.worker.runner`): most responses complete without creating a
        Task, and ``asyncio.current_task()`` is a real Task throughout.  If the runner
        is busy with the previous request's app, the app gets a Task of its own.
        """
        cycle = self._launching
        app = self._unlaunched
        self._launching = None
        self._unlaunched = None
        if cycle is None or app is None:
            return
        runner = self._runner
        if (runner is None or runner.closed) and _RUNNER and not self.closing:
            runner = self._runner = ConnectionRunner(self.loop)
        task = launch(cycle.run(app), self.loop, runner)
        if task is None:
            return
        cycle.task = task
        self.state.tasks.add(task)  # the cycle removes it when the app is done

    def _start_cycle(self, request: http11.Request) -> None:
        self._deadline = None  # the request is here: no header or idle timeout now
        self._timer_is_header = False
        state = self.state
        self.requests += 1
        keep_alive = request.keep_alive and not state.draining
        limit = self._max_requests
        if limit and self.requests >= limit:
            keep_alive = False
        # The scope (asgi/scope.py), from the connection's template.
        extensions: dict[str, Any] = {} if self.tls is None else {"tls": self.tls}
        ids = self._request_ids
        if ids is None:
            request_id = b""
        elif self.trusted:
            request_id = ids.assign(request.headers, True, extensions)
        else:  # RequestIds.assign for an untrusted peer, said inline: once per request
            rid = ids.bits(128).to_bytes(16).hex()
            extensions["request_id"] = rid
            request_id = rid.encode()
        scope = http_scope(
            self._scope_base,
            request.http_version,
            request.method,
            request.target,
            request.headers,
            state.lifespan_state,
            extensions,
        )
        if self.trusted and state.trusted_peers is not None:
            apply_forwarding(scope, state.trusted_peers)  # a proxy's headers (asgi/proxy.py)
        path = scope["path"]
        if request.upgrade and state.hooks.upgrade(self, request, scope):
            return  # e.g. WebSocket: the handler owns the transport now
        # Health and metrics paths are answered before the app, outside the access log.
        special = state.special_routes.get(path) if state.special_routes else None
        if special is None:
            # (positional arguments: this runs once per request)
            self.cycle = HTTPCycle(
                self,
                scope,
                keep_alive,
                request.expect_continue,
                self._access_log,
                state.metrics,
                state.tasks,
                request_id,
            )
            self._unlaunched = state.app
        else:
            self.cycle = HTTPCycle(
                self,
                scope,
                keep_alive,
                request.expect_continue,
                False,
                None,
                state.tasks,
                request_id,
            )
            self._unlaunched = special

    def _reject(self, exc: ProtocolError) -> None:
        """Answer a malformed request with its status and close (RFC 9112 §11.2)."""
        error_log.info("invalid HTTP request from %s: %s", _peer(self.client), exc)
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnect()
            if cycle.head_written:
                self.abort()
                return
            cycle.response_complete = True
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.write(http11.error_response(exc.status, exc.message))
            self.close_transport()

    # -- handing the transport to another protocol (WebSocket, HTTP/2) ---------------

    def switch_protocol(self, protocol: asyncio.BaseProtocol, data: bytes = b"") -> None:
        """Give the transport to ``protocol``, with ``data`` already read from it.

        This connection stops tracking it (no timers, not in the worker's
        connection set): the new protocol registers itself where it needs to.
        """
        self._drop_timer()
        self.closing = True
        if self._runner is not None:
            self._runner.close()
        self.flush()  # responses before the switch go first
        transport = self.transport
        assert transport is not None
        transport.set_protocol(protocol)
        try:
            protocol.connection_made(transport)
        finally:
            # Only once the new protocol is in the set: the transport stays counted
            # throughout ([limits] max_connections, see CountedConnections).
            self.state.connections.discard(self)
        if data and isinstance(protocol, asyncio.Protocol):
            protocol.data_received(data)

    def take_buffered(self) -> bytes:
        """Bytes received after the current request head (for an upgrade)."""
        return self.parser.take_buffered()

    # -- Sink interface for HTTPCycle -------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data``: it is written when this round of the loop's events is done."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            out = self._out
            if not out:
                self._cork(self)
            out.append(data)
            self._queued += len(data)

    def flush(self) -> None:
        """Write the queued output to the transport now."""
        out = self._out
        if not out:
            return
        queued = self._queued
        self._queued = 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if len(out) == 1:
                transport.write(out[0])
            elif queued <= _JOIN_LIMIT:
                transport.write(b"".join(out))
            else:  # e.g. a head, then a large body: not copied into one buffer
                for data in out:
                    transport.write(data)
        out.clear()

    def close_transport(self) -> None:
        """Close after the queued output (the transport sends what it holds, then FIN)."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    async def drain(self) -> None:
        if self._queued >= _JOIN_LIMIT:
            self.flush()  # the transport's buffer is what flow control looks at
        if not self._writable.is_set():
            await self._writable.wait()

    @property
    def request_body_pending(self) -> bool:
        return self.parser.in_body

    def abort(self) -> None:
        """Reset the connection, after what was written so far (as far as it goes at once)."""
        self.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def resume_reading(self) -> None:
        """The app took the buffered body: read on, starting with bytes already parsed-in."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
            # Events may be waiting in bytes already received (or the body's end).
            self.state.loop.call_soon(self._process)
            cycle = self.cycle
            if cycle is not None and not cycle.body_complete:
                self._set_timer(self._request_timeout, header=False, body=True)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def response_done(self, keep_alive: bool) -> None:
        """The cycle finished its response: close, or go on to the next request.

        ``keep_alive`` is what the response head promised.  A promised keep-alive is
        kept even while draining: closing now would race the client's next request
        (it would see a reset).  The connection then idles for a short grace, and a
        request arriving in it is answered with ``Connection: close``.
        """
        self.cycle = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not keep_alive or self.closing:
            self.closing = True
            self.close_transport()
            return
        parser = self.parser
        more = parser.start_next_cycle()
        if self._reading_paused:
            self.resume_reading()
        if more:
            self._set_timer(self._header_timeout, header=True)
            self._process()
        elif self.state.draining:
            self._set_timer(self.state.drain_grace, header=False)
        else:
            # _set_timer(keep_alive_timeout), said inline: this runs once per request.
            deadline = self.loop.time() + self._keep_alive_timeout
            self._deadline = deadline
            self._timer_is_header = False
            timer = self._timer
            if timer is None or self._timer_when > deadline:
                self._set_timer(self._keep_alive_timeout, header=False)

    # -- timers and shutdown -------------------------------------------------------

    def _set_timer(self, delay: float, *, header: bool, body: bool = False) -> None:
        """Arm the connection's one timeout: ``delay`` seconds from now.

        Per request this only moves a deadline; the loop's timer is re-armed when it
        fires early, so keep-alive traffic does not churn the timer heap.
        """
        loop = self.state.loop
        deadline = loop.time() + delay
        self._deadline = deadline
        self._timer_is_header = header
        self._timer_is_body = body
        timer = self._timer
        if timer is not None and self._timer_when > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = loop.call_at(deadline, self._timeout)
            self._timer_when = deadline

    def _cancel_timer(self) -> None:
        self._deadline = None
        self._timer_is_header = False
        self._timer_is_body = False

    def _drop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _timeout(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self.state.loop.time() < deadline:
            self._timer = self.state.loop.call_at(deadline, self._timeout)
            self._timer_when = deadline
            return
        self._deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None:
            if self._timer_is_body and not cycle.body_complete:
                self._body_timed_out(cycle)
            return
        self.closing = True
        if self.parser.buffered:
            # A partial request head after header_timeout: RFC 9110 §15.5.9.
            self.write(http11.error_response(408, "Request Timeout"))
        self.close_transport()

    def _body_timed_out(self, cycle: HTTPCycle) -> None:
        """No request body bytes for request_timeout: 408 (or a reset) and close."""
        error_log.info(
            "request body from %s stalled for %.1fs (http.request_timeout): closing",
            _peer(self.client),
            self._request_timeout,
        )
        self._timer_is_body = False
        self.closing = True
        cycle.request_timed_out()
        cycle.cancel_after(self._disconnect_grace)
        if self.transport is not None and not self.transport.is_closing():
            self.close_transport()

    def _write_timed_out(self) -> None:
        """The client read nothing of a full send buffer for write_timeout: drop it."""
        self._write_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        error_log.info(
            "client %s read nothing for %.1fs (http.write_timeout): dropping the connection",
            _peer(self.client),
            self._write_timeout,
        )
        self.abort()

    def shutdown(self, idle_grace: float = 0.0) -> None:
        """Stop after the current response.

        An idle connection is closed after ``idle_grace`` seconds, unless a request
        arrives first (it is answered with ``Connection: close``): closing at once
        races with a client that is sending its next request right now.
        """
        if self.cycle is not None:
            if not self.cycle.head_written:
                self.cycle.keep_alive = False  # its head will say Connection: close
        elif idle_grace > 0 and not self.parser.buffered:
            self._set_timer(idle_grace, header=False)
        else:
            self.closing = True
            if self.transport is not None and not self.transport.is_closing():
                self.close_transport()


_RUNNER = runner_available


def _addresses(
    transport: asyncio.BaseTransport,
) -> tuple[tuple[str, int | None] | None, tuple[str, int] | None]:
    sock = transport.get_extra_info("socket")
    family = sock.family if sock is not None else None
    if family == socket.AF_UNIX:
        path = transport.get_extra_info("sockname")
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        return (str(path or ""), None), None
    server = transport.get_extra_info("sockname")
    client = transport.get_extra_info("peername")
    return (
        (str(server[0]), int(server[1])) if server else None,
        (str(client[0]), int(client[1])) if client else None,
    )


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unix socket"
