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
from collections.abc import Callable, Sequence

from pounce.asgi import edge
from pounce.asgi.lifespan import Lifespan
from pounce.config import Config
from pounce.errors import PounceError
from pounce.logs import reopen_log_files
from pounce.net.listeners import Listener
from pounce.net.tls import build_context, listener_uses_tls
from pounce.protocols.link import BootFailed, Bye, Ready
from pounce.types import ASGIApp
from pounce.worker import h2hooks
from pounce.worker.accept import Acceptor
from pounce.worker.connection import HTTPConnection
from pounce.worker.context import (
    CountedConnections,
    ProtocolHooks,
    ServerState,
    WatchedConnections,
)
from pounce.worker.health import special_routes
from pounce.worker.link import SupervisorLink
from pounce.worker.shared import WorkerSlot

__all__ = ["ServerState", "Worker"]

log = logging.getLogger("pounce.error")


class Worker:
    """Serves ``app`` on ``listeners`` until :meth:`request_shutdown` is called."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        listeners: Sequence[Listener],
        link_factory: Callable[[ServerState, Callable[[float | None], None]], SupervisorLink]
        | None = None,
        slot: WorkerSlot | None = None,
    ) -> None:
        self.config = config
        #: This worker's seat at the supervisor's shared counters ([limits]), if any.
        self.slot = slot
        self.app = app
        self.listeners = listeners
        self.link_factory = link_factory
        self.link: SupervisorLink | None = None
        self._idle_grace = 0.0
        self._stop: asyncio.Event | None = None
        self._servers: list[Acceptor] = []
        self._interrupts = 0
        self.state: ServerState | None = None
        #: Called (on the loop) once every listener accepts: pounce.testing waits on it.
        self.on_ready: Callable[[], None] | None = None

    def request_shutdown(self, idle_grace: float | None = None) -> None:
        """Drain and stop.  Idle keep-alive connections get ``idle_grace`` seconds for
        one more request (answered with ``Connection: close``); default 0 (close now)."""
        self._idle_grace = 0.0 if idle_grace is None else idle_grace
        if self._stop is not None:
            self._stop.set()

    async def serve(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        state = self.state = ServerState(self.config, self.app, loop, self.slot)
        if self.link_factory is not None:
            self.link = self.link_factory(state, self.request_shutdown)
            await self.link.start()
            state.special_routes = special_routes(self.config, state, self.link)
        state.hooks = self._protocol_hooks(state)
        # Limits, Server-Timing, slow-request log: only when configured (else the app
        # itself, at no cost).  Lifespan below gets the app unwrapped.  request_limit:
        # the daemon-wide max_concurrent_requests counter, when the supervisor shares one.
        state.app = edge.wrap(state.app, self.config, state.metrics, state.request_limit)
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
        if self.on_ready is not None:
            self.on_ready()
        await self._stop.wait()
        log.debug("worker %d draining", os.getpid())
        await self._drain(state)
        await lifespan.shutdown()
        if self.link is not None:
            await self.link.close(Bye(state.snapshot()))
        log.debug("worker %d stopped", os.getpid())

    def _protocol_hooks(self, state: ServerState) -> ProtocolHooks:
        """The table of protocols that take an HTTP/1.1 connection over."""
        hooks = ProtocolHooks()
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
                hooks.upgrades[b"websocket"] = WebSocketUpgrades(state).on_upgrade
        if self.config.http2.enabled and h2hooks.h2_available():
            hooks.on_connect = h2hooks.on_connect
            if self.config.http2.h2c:
                hooks.on_first_bytes = h2hooks.on_first_bytes
                hooks.upgrades[b"h2c"] = h2hooks.on_h2c_upgrade
        return hooks

    async def _start_server(
        self, loop: asyncio.AbstractEventLoop, state: ServerState, listener: Listener
    ) -> Acceptor:
        def factory() -> HTTPConnection:
            return HTTPConnection(state, listener)

        backlog = self.config.backlog_for(listener.config)
        sock = listener.sock
        # Built here, in each generation's worker: a reload serves replaced cert files.
        ctx = None
        if listener_uses_tls(self.config, listener.config):
            ctx = build_context(self.config, h2_available=h2hooks.h2_available())
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
        empty = asyncio.Event()  # set when the last connection goes
        if isinstance(state.connections, CountedConnections):
            state.connections.on_empty = empty.set
        else:
            state.connections = WatchedConnections(state.connections, empty.set)
        for conn in list(state.connections):
            conn.shutdown(state.drain_grace)  # WebSockets: close 1001, or 1012 on a handover
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(loop.time() + self.config.shutdown.timeout):
                await self._until_empty(state, empty)
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

    async def _until_empty(self, state: ServerState, empty: asyncio.Event) -> None:
        """Return when no connection is open and no request runs (woken by events).

        Requests start only on open connections, and no connection is accepted any
        more once those accepted before the close are set up.
        """
        for server in self._servers:
            await server.settled()
        while True:
            if state.connections:
                empty.clear()
                await empty.wait()
                continue
            running = [task for task in state.tasks if not task.done()]
            if not running:
                return
            await asyncio.wait(running)  # (an app may run on after its client left)

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
