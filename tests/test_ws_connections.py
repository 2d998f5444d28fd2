"""Open WebSockets are connections of their worker: counted in the
``http_connections_active`` gauge while open (over HTTP/1.1 the upgraded connection,
over HTTP/2 the connection carrying the stream), and no longer once closed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from websockets.sync.client import connect
from wsproto.events import CloseConnection, TextMessage

from helpers.daemon import sample, scrape
from helpers.server import Server, free_port, wait_for
from helpers.ws import h2c

pytestmark = pytest.mark.slow

APP = "apps.ws_echo:app"


def test_open_websockets_count_in_the_connections_gauge(serve: Callable[..., Server]) -> None:
    admin = free_port()
    server = serve(APP, "--admin-port", str(admin))

    def active() -> float:
        # The admin listener is the supervisor's: the scrape itself is no worker connection.
        return sample(scrape(admin), "http_connections_active")

    assert wait_for(lambda: active() == 0), active()
    with connect(f"ws://{server.host}:{server.port}/echo", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        assert active() == 1
        client = h2c(server)
        with client.sock:
            h2ws = client.open("/echo", scheme="http")
            h2ws.send(TextMessage(data="over h2"))
            assert h2ws.message() == "over h2"
            assert active() == 2
            h2ws.send(CloseConnection(code=1000))
            assert isinstance(h2ws.next(), CloseConnection)
        assert wait_for(lambda: active() == 1), active()
        ws.send("still open")
        assert ws.recv(timeout=10) == "still open"
    assert wait_for(lambda: active() == 0), active()
