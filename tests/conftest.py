"""Fixtures and hooks only; the harness itself lives in ``tests/helpers``.

Test modules import helpers from ``helpers.*`` (``tests/`` is on ``sys.path``), never
from this file.  The servers the tests start import their apps from ``tests/apps``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from helpers.asgi import Launcher, launcher
from helpers.daemon import Daemons
from helpers.server import Server, start_server
from helpers.tls import Pki, make_pki

# No timing thresholds in tests: hypothesis' per-example deadline (200 ms) fails
# property tests on a loaded 2-core machine for no fault of the code.
settings.register_profile("pounce", deadline=None)
settings.load_profile("pounce")


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Factory fixture: ``serve("apps.echo:app", "--log-level", "debug")``; stopped at teardown."""
    started: list[Server] = []

    def _serve(app: str, *args: str, **kwargs: object) -> Server:
        server = start_server(app, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield _serve
    for server in started:
        server.stop()


@pytest.fixture
def launch() -> Iterator[Launcher]:
    """A ``Launcher`` whose servers (and their workers) are stopped at teardown."""
    with launcher() as launched:
        yield launched


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    """Starts supervisor daemons for one test; stops them and any stray worker at teardown."""
    started = Daemons()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    with make_pki() as made:
        yield made
