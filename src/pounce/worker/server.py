"""A worker: one event loop serving the app on already-open listeners.

Start-up order: import the app, run lifespan startup, start accepting.  Shutdown
order: stop accepting, let in-flight requests finish (bounded by
``shutdown.timeout``), close idle keep-alive connections, lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from pounce.asgi.lifespan import Lifespan
from pounce.config import Config
from pounce.errors import PounceError
from pounce.logs import reopen_log_files
from pounce.metrics import Collector
from pounce.net.listeners import Listener
from pounce.net.tls import build_context, listener_uses_tls
from pounce.protocols.http11 import Request
from pounce.protocols.link import BootFailed, Bye, Ready
from pounce.types import ASGIApp
from pounce.worker.accept import Acceptor
from pounce.worker.connection import HTTPConnection
from pounce.worker.h2hooks import h2_available, install_http2
from pounce.worker.health import special_routes
from pounce.worker.link import SupervisorLink

if TYPE_CHECKING:
    from pounce.worker.websocket import WebSocketUpgrades

log = logging.getLogger("pounce.error")


@dataclass(slots=True)
class ProtocolHooks:
    """Where other protocols take a connection over from HTTP/1.1.

    ``on_connect(conn)``: right after accept (TLS ALPN chose ``h2``).
    ``on_first_bytes(conn, data) -> bool``: before the first request is parsed
    (the HTTP/2 prior-knowledge preface); True when it took the connection.
    ``on_upgrade(conn, request, scope) -> bool``: a request with an ``Upgrade``
    header (WebSocket, h2c); True when it took the connection.
    Each calls ``conn.switch_protocol(...)`` to take over.
    """

    on_connect: Callable[[HTTPConnection], None] | None = None
    on_first_bytes: Callable[[HTTPConnection, bytes], bool] | None = None
    on_upgrade: Callable[[HTTPConnection, Request, dict[str, Any]], bool] | None = None


class Connection(Protocol):
    """What the worker needs of any connection (HTTP/1.1, HTTP/2, WebSocket)."""

    def shutdown(self, idle_grace: float = 0.0) -> None: ...
    def abort(self) -> None: ...


class Flushable(Protocol):
    """A connection that holds output back until :meth:`flush` (see :meth:`ServerState.cork`)."""

    def flush(self) -> None: ...


class Startable(Protocol):
    """A connection with an app to start (see :meth:`ServerState.defer`)."""

    def start_app(self) -> None: ...


class ServerState:
    """What every connection of a worker shares."""

    def __init__(self, config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.root_path = config.server.root_path
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        # While draining, how long a kept-alive idle connection waits for one more request.
        self.drain_grace = 0.0
        self.lifespan_state: dict[str, Any] = {}
        self.metrics = Collector()
        self.special_routes: dict[str, ASGIApp] = {}
        self.hooks = ProtocolHooks()
        self._date_second = 0
        self._date = b""
        self._defaults = b""
        self._corked: list[Flushable] = []
        self._launches: list[Startable] = []
        self._round_scheduled = False

    def defer(self, conn: Startable) -> None:
        """Have ``conn.start_app()`` called once the loop is done with this round of events.

        Apps start after the loop has handled every read of the round (then their
        responses go out, see :meth:`cork`), in one callback: not one Task and one
        loop callback per request, and each phase runs for many requests in a row.
        """
        self._launches.append(conn)
        if not self._round_scheduled:
            self._round_scheduled = True
            self.loop.call_soon(self._end_of_round)

    def cork(self, conn: Flushable) -> None:
        """Have ``conn.flush()`` called once the loop is done with this round of events.

        Responses written while handling one round go out together after it: the
        client's next requests then arrive together too, and the loop handles more
        events per round.
        """
        self._corked.append(conn)
        if not self._round_scheduled:
            self._round_scheduled = True
            self.loop.call_soon(self._end_of_round)

    def _end_of_round(self) -> None:
        try:
            # (apps started here may start more: pipelined requests, answered in turn)
            while self._launches:
                launches = self._launches
                self._launches = []
                for conn in launches:
                    try:
                        conn.start_app()
                    except Exception:
                        log.exception("starting an app failed")
            corked = self._corked
            if corked:
                self._corked = []
                for corked_conn in corked:
                    try:
                        corked_conn.flush()
                    except Exception:
                        log.exception("writing a response failed")
        finally:
            self._round_scheduled = False
            if self._launches or self._corked:  # (only after KeyboardInterrupt and the like)
                self._round_scheduled = True
                self.loop.call_soon(self._end_of_round)

    def date_header(self) -> bytes:
        """The ``Date`` value, formatted at most once a second (RFC 9110 §6.6.1)."""
        now = int(time.time())
        if now != self._date_second:
            self._new_date(now)
        return self._date

    def default_lines(self, lines: list[bytes] | None = None) -> bytes:
        """The ``Date`` and ``Server`` header lines of an HTTP/1.1 response.

        With ``lines`` (the app's own header lines), only those the app did not send.
        """
        now = int(time.time())
        if now != self._date_second:
            self._new_date(now)
        if lines is None:
            return self._defaults
        names = {line.partition(b":")[0].lower() for line in lines}
        out = b"" if b"date" in names else b"date: " + self._date + b"\r\n"
        return out if b"server" in names else out + b"server: pounce\r\n"

    def _new_date(self, now: int) -> None:
        self._date_second = now
        self._date = formatdate(now, usegmt=True).encode("ascii")
        self._defaults = b"date: " + self._date + b"\r\nserver: pounce\r\n"

    def snapshot(self) -> dict[str, Any]:
        """Metrics counters plus the gauges read now."""
        snap = self.metrics.snapshot()
        snap["in_flight"] = len(self.tasks)
        snap["connections"] = len(self.connections)
        return snap


class Worker:
    """Serves ``app`` on ``listeners`` until :meth:`request_shutdown` is called."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        listeners: Sequence[Listener],
        link_factory: Callable[[ServerState, Callable[[float | None], None]], SupervisorLink]
        | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.listeners = listeners
        self.link_factory = link_factory
        self.link: SupervisorLink | None = None
        self._idle_grace = 0.0
        self._stop: asyncio.Event | None = None
        self._servers: list[Acceptor] = []
        self._interrupts = 0
        self.state: ServerState | None = None
        self._websockets: WebSocketUpgrades | None = None

    def request_shutdown(self, idle_grace: float | None = None) -> None:
        """Drain and stop.  Idle keep-alive connections get ``idle_grace`` seconds for
        one more request (answered with ``Connection: close``); default 0 (close now)."""
        self._idle_grace = 0.0 if idle_grace is None else idle_grace
        if self._stop is not None:
            self._stop.set()

    async def serve(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        state = self.state = ServerState(self.config, self.app, loop)
        if self.link_factory is not None:
            self.link = self.link_factory(state, self.request_shutdown)
            await self.link.start()
            state.special_routes = special_routes(self.config, state, self.link)
        if self.config.websocket.enabled:
            try:
                from pounce.worker.websocket import WebSocketUpgrades
            except ImportError as exc:  # wsproto comes with the pounce[ws] extra
                log.warning(
                    "WebSocket support needs pounce[ws] (%s): upgrades go to the app as "
                    "HTTP requests; set websocket.enabled = false to silence this",
                    exc,
                )
            else:
                self._websockets = WebSocketUpgrades(state)
                state.hooks.on_upgrade = self._websockets.on_upgrade
        install_http2(state)  # after WebSocket: it wraps on_upgrade, dispatching on the token
        lifespan = Lifespan(self.app)
        state.lifespan_state = lifespan.state
        try:
            await lifespan.startup()
        except PounceError as exc:
            if self.link is not None:
                await self.link.close(BootFailed(str(exc), exc.exit_code))
            raise
        if install_signals:
            self._install_signals(loop)
        for listener in self.listeners:
            self._servers.append(await self._start_server(loop, state, listener))
        log.debug("worker %d accepting on %d listener(s)", os.getpid(), len(self.listeners))
        if self.link is not None:
            self.link.send(Ready(os.getpid()))
        await self._stop.wait()
        log.debug("worker %d draining", os.getpid())
        await self._drain(state)
        await lifespan.shutdown()
        if self.link is not None:
            await self.link.close(Bye(state.snapshot()))
        log.debug("worker %d stopped", os.getpid())

    async def _start_server(
        self, loop: asyncio.AbstractEventLoop, state: ServerState, listener: Listener
    ) -> Acceptor:
        def factory() -> HTTPConnection:
            return HTTPConnection(state, listener)

        backlog = listener.config.backlog or self.config.server.backlog
        sock = listener.sock
        # Built here, in each generation's worker: a reload serves replaced cert files.
        ctx = None
        if listener_uses_tls(self.config, listener.config):
            ctx = build_context(self.config, h2_available=h2_available())
        # Pounce's own accept loop on every event loop (asyncio's floods the log when out
        # of fds, libuv's resets the extra clients silently; see worker/accept.py).  With
        # several workers on each listening socket, each takes one connection per
        # wake-up, so that a burst of connections is spread over them.
        sock.listen(backlog)
        acceptor = Acceptor(
            loop,
            sock,
            factory,
            ctx,
            backlog,
            state.metrics,
            state.connections,
            per_wakeup=1 if self.config.server.workers > 1 else 0,
        )
        acceptor.start()
        return acceptor

    async def _drain(self, state: ServerState) -> None:
        state.draining = True
        state.drain_grace = self._idle_grace
        for server in self._servers:
            # Stop accepting.  The supervisor keeps its copy of each socket open, so
            # connections still queued are accepted by the next generation.
            server.close()
        for conn in list(state.connections):
            conn.shutdown(state.drain_grace)  # WebSockets: close 1001, or 1012 on a handover
        deadline = time.monotonic() + self.config.shutdown.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not state.connections and not state.tasks:
                # A connection accepted just before close() reaches connection_made a
                # few loop iterations later: look once more before leaving, or it
                # would be reset when this process exits.
                await asyncio.sleep(0.05)
                if not state.connections and not state.tasks:
                    break
                continue
            pending = list(state.tasks)
            if pending:
                await asyncio.wait(pending, timeout=min(remaining, 0.1))
            else:
                await asyncio.sleep(min(remaining, 0.01))
        if state.tasks or state.connections:
            log.warning(
                "shutdown.timeout (%.1fs) reached: cancelling %d request(s), "
                "closing %d connection(s)",
                self.config.shutdown.timeout,
                len(state.tasks),
                len(state.connections),
            )
            for task in list(state.tasks):
                task.cancel()
            for conn in list(state.connections):
                conn.abort()
            if state.tasks:
                await asyncio.wait(list(state.tasks), timeout=1.0)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self._on_term)
        loop.add_signal_handler(signal.SIGQUIT, _exit_now)
        if self.link is None:
            loop.add_signal_handler(signal.SIGINT, self._on_int)
        else:
            # Signals sent to the whole process group (Ctrl-C, a terminal hang-up) are
            # the supervisor's to act on; USR1 reopens this process's log files.
            for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(signum, signal.SIG_IGN)
            loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)

    def _on_term(self) -> None:
        self.request_shutdown()

    def _on_int(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            _exit_now()
        self.request_shutdown()


def _exit_now() -> None:
    log.warning("stopping at once")
    logging.shutdown()
    os._exit(1)


def run_worker(
    config: Config,
    listeners: Sequence[Listener],
    load_app: Callable[[], ASGIApp],
    *,
    install_signals: bool = True,
) -> None:
    """Import the app and serve it on this thread's own event loop until shutdown."""
    app = load_app()
    worker = Worker(config, app, listeners)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker.serve(install_signals=install_signals))
