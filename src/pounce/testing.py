"""Test an app against the real server: :class:`TestServer` and the ``pounce_server`` fixture.

``TestServer(app)`` serves ``app`` (an object or an import string) on
``127.0.0.1`` and an ephemeral port, on a thread with its own event loop: the same
worker as ``pounce serve`` runs (HTTP/1.1, HTTP/2, WebSocket, lifespan), without the
supervisor::

    from pounce.testing import TestServer

    with TestServer(app) as server:
        httpx.get(server.url + "/")

The pytest fixture is opt-in: add ``pytest_plugins = ["pounce.testing"]`` to a
``conftest.py``, then ``server = pounce_server(app, **settings)`` starts a server that
is stopped when the test ends.  Pounce does not depend on pytest: the fixture is
defined only when pytest has been imported (as it has when it loads this plugin).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from pounce.api import build_config
from pounce.asgi.app import load_app, wrap_middleware
from pounce.config import Config
from pounce.errors import UsageError
from pounce.logs import install_loop_error_handler
from pounce.net.listeners import Listener, open_listeners
from pounce.net.tls import listener_uses_tls
from pounce.types import ASGIApp
from pounce.worker.loops import loop_factory
from pounce.worker.server import Worker

__all__ = ["TestServer"]

_LISTEN_NAMES = ("host", "port", "uds", "fd")


class TestServer:
    """Serves ``app`` in a background thread while in a ``with`` (or ``async with``) block.

    ``settings`` are those of :func:`pounce.run` (``http2=False``, ``log_level=...``),
    over ``config`` when given; the ``POUNCE_*`` environment is not read.  The server
    listens on ``127.0.0.1`` and a free port unless ``host``/``port``/``uds`` say
    otherwise.  Lifespan startup has run when the block is entered (an app whose
    startup fails raises :class:`~pounce.errors.LifespanError` there); leaving it
    drains the requests, runs lifespan shutdown, joins the thread and closes the socket.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(
        self, app: str | ASGIApp, *, config: Config | None = None, **settings: object
    ) -> None:
        if not any(settings.get(name) is not None for name in _LISTEN_NAMES):
            settings = {"host": "127.0.0.1", "port": 0, **settings}
        self.config = build_config(app, config=config, settings=settings, env={})
        self._app = app
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._listeners: list[Listener] = []
        self.host = ""
        self.port = 0
        self.scheme = "http"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:54321`` (``https`` when the listener serves TLS)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:54321`` (``wss`` with TLS)."""
        return "ws" + self.url.removeprefix("http")

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def app(self) -> ASGIApp:
        """The app served (inside its ``server.middleware``)."""
        if self._worker is None:
            raise UsageError("the test server is not started")
        return self._worker.app

    def start(self) -> TestServer:
        """Open the socket, start the thread, wait for lifespan startup; return ``self``."""
        if self._thread is not None:
            raise UsageError("the test server is already started")
        config = self.config
        if isinstance(self._app, str):
            app = load_app(config)
        else:
            app = wrap_middleware(self._app, config.server.middleware)
        self._listeners = open_listeners(config.listen, backlog=config.server.backlog)
        first = self._listeners[0]
        if first.sock.family in (socket.AF_INET, socket.AF_INET6):
            self.host, self.port = first.sock.getsockname()[:2]
        if listener_uses_tls(config, first.config):
            self.scheme = "https"
        worker = self._worker = Worker(config, app, self._listeners)
        changed = threading.Event()  # ready, or the thread ended
        worker.on_ready = changed.set
        new_loop = loop_factory(config.server.loop)
        self._thread = threading.Thread(
            target=self._serve, args=(worker, new_loop, changed), name="pounce-test-server"
        )
        self._thread.daemon = True
        self._thread.start()
        timeout = config.reload.timeout
        if not changed.wait(timeout):
            self.stop()
            raise UsageError(f"the test server did not start within reload.timeout ({timeout}s)")
        if not self.running:
            self._join()
        return self

    def _serve(
        self,
        worker: Worker,
        new_loop: Callable[[], asyncio.AbstractEventLoop],
        changed: threading.Event,
    ) -> None:
        def make_loop() -> asyncio.AbstractEventLoop:
            loop = self._loop = install_loop_error_handler(new_loop())
            return loop

        try:
            with asyncio.Runner(loop_factory=make_loop) as runner:
                runner.run(worker.serve(install_signals=False))
        except BaseException as exc:  # handed to the thread that started or stops it
            self._error = exc
        finally:
            self._close_listeners()
            changed.set()

    def stop(self) -> None:
        """Drain, run lifespan shutdown and join the thread; raise what the server raised."""
        worker, loop, thread = self._worker, self._loop, self._thread
        if worker is None or thread is None:
            return
        if loop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(worker.request_shutdown)
        self._join()

    def _join(self) -> None:
        thread = self._thread
        assert thread is not None
        thread.join(self.config.shutdown.timeout + 10.0)
        self._close_listeners()
        if thread.is_alive():
            raise UsageError("the test server did not stop within shutdown.timeout")
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> TestServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def _server_factory() -> Iterator[Callable[..., TestServer]]:
    started: list[TestServer] = []

    def start(
        app: str | ASGIApp, *, config: Config | None = None, **settings: object
    ) -> TestServer:
        server = TestServer(app, config=config, **settings).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


if "pytest" in sys.modules:  # loaded as a plugin (pytest_plugins = ["pounce.testing"])
    import pytest

    @pytest.fixture
    def pounce_server() -> Iterator[Callable[..., TestServer]]:
        """``pounce_server(app, **settings)``: a started :class:`TestServer`, stopped
        at the end of the test."""
        yield from _server_factory()
