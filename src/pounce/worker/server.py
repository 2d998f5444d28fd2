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
import socket
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from typing import Any

from pounce.asgi.lifespan import Lifespan
from pounce.config import Config
from pounce.net.listeners import Listener
from pounce.types import ASGIApp
from pounce.worker.connection import HTTPConnection

log = logging.getLogger("pounce.error")


class ServerState:
    """What every connection of a worker shares."""

    def __init__(self, config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.root_path = config.server.root_path
        self.connections: set[HTTPConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.lifespan_state: dict[str, Any] = {}
        self._date_second = 0
        self._date = b""

    def date_header(self) -> bytes:
        """The ``Date`` value, formatted at most once a second (RFC 9110 §6.6.1)."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = formatdate(now, usegmt=True).encode("ascii")
        return self._date


class Worker:
    """Serves ``app`` on ``listeners`` until :meth:`request_shutdown` is called."""

    def __init__(self, config: Config, app: ASGIApp, listeners: Sequence[Listener]) -> None:
        self.config = config
        self.app = app
        self.listeners = listeners
        self._stop: asyncio.Event | None = None
        self._servers: list[asyncio.Server] = []
        self._interrupts = 0
        self.state: ServerState | None = None

    def request_shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def serve(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        state = self.state = ServerState(self.config, self.app, loop)
        lifespan = Lifespan(self.app)
        state.lifespan_state = lifespan.state
        await lifespan.startup()
        if install_signals:
            self._install_signals(loop)
        for listener in self.listeners:
            self._servers.append(await self._start_server(loop, state, listener))
        for listener in self.listeners:
            log.info("Listening on %s", listener.describe())
        log.info("Worker %d ready: accepting connections", os.getpid())
        await self._stop.wait()
        log.info("Shutting down: finishing in-flight requests")
        await self._drain(state)
        await lifespan.shutdown()
        log.info("Worker %d stopped", os.getpid())

    async def _start_server(
        self, loop: asyncio.AbstractEventLoop, state: ServerState, listener: Listener
    ) -> asyncio.Server:
        def factory() -> HTTPConnection:
            return HTTPConnection(state, listener)

        backlog = listener.config.backlog or self.config.server.backlog
        sock = listener.sock
        if sock.family == socket.AF_UNIX:
            return await loop.create_unix_server(factory, sock=sock, backlog=backlog)
        return await loop.create_server(factory, sock=sock, backlog=backlog)

    async def _drain(self, state: ServerState) -> None:
        state.draining = True
        for server in self._servers:
            server.close()  # stop accepting; queued connections are served by no one else
        for conn in list(state.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.config.shutdown.timeout
        while state.connections or state.tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pending = list(state.tasks)
            if pending:
                await asyncio.wait(pending, timeout=min(remaining, 0.1))
            else:
                await asyncio.sleep(min(remaining, 0.01))
            for conn in list(state.connections):
                if conn.cycle is None:
                    conn.shutdown()
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
        loop.add_signal_handler(signal.SIGINT, self._on_int)
        loop.add_signal_handler(signal.SIGQUIT, _exit_now)

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
