"""Resource limits: header size (431), body size (413), header timeout (408),
keep-alive idle timeout and max requests per connection.

Every wait is bounded (socket timeouts, ``wait_for``); nothing sleeps to wait for an
event and nothing asserts on how long something took.
"""

from __future__ import annotations

import itertools
import select
import time
from collections.abc import Callable, Iterator

import pytest

from helpers.server import Server, start_server, wait_for
from helpers.wire import Wire, assert_serving, chunked, request

pytestmark = pytest.mark.slow

APP = "apps.http_echo:app"
MAX_HEADER = 2048
MAX_BODY = 1000


class _Shared:
    """A server shared by the tests of this module; restarted if a test killed it."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.server: Server | None = None

    def get(self) -> Server:
        if self.server is None or self.server.proc.poll() is not None:
            self.server = start_server(APP, *self.args)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            if self.server.proc.stdout is not None:
                self.server.proc.stdout.close()


@pytest.fixture(scope="module")
def _shared() -> Iterator[_Shared]:
    # A long header timeout so that a 408 can never be mistaken for a size limit.
    shared = _Shared(
        "--workers", "1",
        "--max-header-size", str(MAX_HEADER),
        "--max-body-size", str(MAX_BODY),
        "--header-timeout", "30",
    )  # fmt: skip
    yield shared
    shared.stop()


@pytest.fixture
def server(_shared: _Shared) -> Server:
    return _shared.get()


@pytest.fixture
def launch() -> Iterator[Callable[..., Server]]:
    """Like conftest's ``serve``, but also closes the captured stdout pipe at teardown
    (otherwise its ResourceWarning turns into an error under ``filterwarnings=error``)."""
    started: list[Server] = []

    def _launch(*args: str) -> Server:
        server = start_server(APP, *args)
        started.append(server)
        return server

    yield _launch
    for server in started:
        server.stop()
        if server.proc.stdout is not None:
            server.proc.stdout.close()


def wire_to(server: Server) -> Wire:
    return Wire.open(server.host, server.port)


# -- max_header_size -> 431 ---------------------------------------------------------------


def test_header_section_under_limit_is_served(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(request("GET", "/echo", headers=[("X-Big", "a" * (MAX_HEADER // 2))]))
        response = wire.read_response()
    assert response.status == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("X-Big", "a" * (MAX_HEADER * 2))], id="one-big-header"),
        pytest.param([(f"X-H{i}", "b" * 40) for i in range(MAX_HEADER // 20)], id="many-headers"),
        pytest.param([("X-Huge", "c" * (MAX_HEADER * 8))], id="huge-header"),
    ],
)
def test_header_section_over_limit_gives_431_and_close(
    server: Server, headers: list[tuple[str, str]]
) -> None:
    with wire_to(server) as wire:
        wire.try_send(request("GET", "/echo", headers=headers))
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 431"), response.raw
        assert wire.wait_closed()
    assert_serving(server)


def test_unfinished_header_section_over_limit_gives_431_at_once(server: Server) -> None:
    """The server does not wait for the end of a header section that is already too big."""
    with wire_to(server) as wire:
        wire.try_send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER * 2))
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 431"), response.raw
        assert wire.wait_closed()
    assert_serving(server)


def test_request_line_over_limit_is_refused(server: Server) -> None:
    with wire_to(server) as wire:
        wire.try_send(request("GET", "/echo?" + "q" * (MAX_HEADER * 4)))
        response = wire.read_response()
        assert response.status in (414, 431), response.raw
        assert wire.wait_closed()
    assert_serving(server)


# -- max_body_size -> 413 -----------------------------------------------------------------


def test_body_at_limit_is_served(server: Server) -> None:
    body = b"z" * MAX_BODY
    with wire_to(server) as wire:
        wire.send(request("POST", "/echo", body=body))
        response = wire.read_response()
    assert (response.status, response.body) == (200, body)


@pytest.mark.parametrize(
    ("path", "length"),
    [
        pytest.param("/echo", MAX_BODY + 1, id="one-over"),
        pytest.param("/echo", 10 * 1024**3, id="10GB"),
        pytest.param("/noread", 10 * 1024**3, id="10GB-app-does-not-read"),
    ],
)
def test_declared_body_over_limit_gives_413_without_sending_it(
    server: Server, path: str, length: int
) -> None:
    with wire_to(server) as wire:
        # Only the head is sent: the server must refuse from the Content-Length alone.
        wire.send(
            request("POST", path, headers=[("Content-Length", str(length))], content_length=False)
        )
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 413"), response.raw
        if length > 10 * MAX_BODY:
            assert wire.wait_closed()
    assert_serving(server)


def test_declared_body_over_limit_with_expect_gets_413_not_100(server: Server) -> None:
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST",
                "/echo",
                headers=[("Expect", "100-continue"), ("Content-Length", str(MAX_BODY * 10))],
                content_length=False,
            )
        )
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 413"), response.raw
    assert_serving(server)


def test_chunked_body_under_limit_is_served(server: Server) -> None:
    parts = [b"%03d" % i * 3 for i in range(100)]  # 900 bytes in 100 chunks
    with wire_to(server) as wire:
        wire.send(
            request(
                "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False
            )
            + chunked(*parts)
        )
        response = wire.read_response()
    assert (response.status, response.body) == (200, b"".join(parts))


@pytest.mark.parametrize(
    "body",
    [
        # two chunks whose sum exceeds the limit, and no terminating chunk
        pytest.param(b"%x\r\n%s\r\n" % (600, b"a" * 600) * 2, id="two-chunks"),
        # one chunk declared far beyond the limit, only part of its data sent
        pytest.param(b"100000\r\n" + b"b" * (MAX_BODY + 200), id="one-huge-chunk"),
        # many small chunks
        pytest.param(
            b"".join(b"a\r\n%s\r\n" % (b"c" * 10) for _ in range(MAX_BODY // 10 + 5)),
            id="many-chunks",
        ),
    ],
)
def test_chunked_body_over_limit_gives_413_and_close(server: Server, body: bytes) -> None:
    with wire_to(server) as wire:
        wire.try_send(
            request(
                "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], content_length=False
            )
            + body
        )
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 413"), response.raw
        assert wire.wait_closed()
    assert_serving(server)


# -- header_timeout -> 408 ----------------------------------------------------------------


def test_partial_header_then_silence_gives_408_and_close(launch: Callable[..., Server]) -> None:
    server = launch("--header-timeout", "0.5")
    with wire_to(server) as wire:
        wire.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 408"), response.raw
        assert wire.wait_closed()
    assert_serving(server)


def test_slowloris_trickled_header_gives_408_and_close(launch: Callable[..., Server]) -> None:
    """Bytes keep arriving, but the header section never completes: the header timeout
    counts from the start of the request, not from the last byte."""
    server = launch("--header-timeout", "0.5", "--keep-alive-timeout", "0.5")
    with wire_to(server) as wire:
        wire.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        trickle = itertools.cycle(b"X-Slow: a\r\n")
        deadline = time.monotonic() + 20
        answered = False
        while time.monotonic() < deadline:
            # wait (bounded) for the server to answer; otherwise send one more byte
            readable, _, _ = select.select([wire.sock], [], [], 0.05)
            if readable:
                answered = True
                break
            if not wire.try_send(bytes([next(trickle)])):
                answered = True
                break
        assert answered, "the server kept reading a trickled header section for 20 s"
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 408"), response.raw
        assert wire.wait_closed()
    assert_serving(server)


def test_connection_that_sends_nothing_is_closed(launch: Callable[..., Server]) -> None:
    server = launch("--header-timeout", "0.5", "--keep-alive-timeout", "0.5")
    with wire_to(server) as wire:
        if not wire.wait_closed(timeout=10):
            pytest.fail("a connection that never sent a byte is still open after 10 s")


def test_header_timeout_does_not_hit_complete_requests(launch: Callable[..., Server]) -> None:
    server = launch("--header-timeout", "0.5")
    with wire_to(server) as wire:
        for i in range(3):
            wire.send(request("GET", f"/echo?i={i}"))
            assert wire.read_response().status == 200


def test_header_timeout_applies_to_later_requests_on_a_connection(
    launch: Callable[..., Server],
) -> None:
    server = launch("--header-timeout", "0.5", "--keep-alive-timeout", "30")
    with wire_to(server) as wire:
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().status == 200
        wire.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\n")
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 408"), response.raw
        assert wire.wait_closed()


# -- keep_alive_timeout -------------------------------------------------------------------


def test_idle_keep_alive_connection_is_closed(launch: Callable[..., Server]) -> None:
    server = launch("--keep-alive-timeout", "0.5")
    with wire_to(server) as wire:
        wire.send(request("GET", "/fixed"))
        response = wire.read_response()
        assert response.status == 200
        assert "close" not in response.connection_tokens()
        assert wire.wait_closed(timeout=10), "idle keep-alive connection still open after 10 s"
    assert_serving(server)


def test_keep_alive_timeout_does_not_cut_a_request_in_progress(
    launch: Callable[..., Server],
) -> None:
    """A connection whose request is still being handled is not idle."""
    server = launch("--workers", "1", "--keep-alive-timeout", "0.5")
    key = "slow-app"
    with wire_to(server) as wire:
        wire.send(request("POST", f"/gate?key={key}", body=b"slow"))

        def ask(target: str) -> bytes:
            # a fresh connection each time: an idle one would hit the keep-alive timeout
            with wire_to(server) as control:
                control.send(request("GET", target))
                return control.read_response().body

        assert wait_for(lambda: ask(f"/gate-state?key={key}") == b"waiting", timeout=10)
        # several keep-alive timeouts pass while the app works
        assert not wire.wait_closed(timeout=2), "connection closed while its request was running"
        assert ask(f"/open?key={key}") == b"opened"
        response = wire.read_response()
        assert (response.status, response.body) == (200, b"slow")


# -- max_requests_per_connection ----------------------------------------------------------


def test_max_requests_per_connection(launch: Callable[..., Server]) -> None:
    server = launch("--max-requests-per-connection", "3")
    for _ in range(2):  # the count is per connection: a new connection starts again
        with wire_to(server) as wire:
            for i in range(1, 4):
                wire.send(request("GET", f"/echo?i={i}"))
                response = wire.read_response()
                assert response.status == 200
                assert response.header("x-query") == f"i={i}"
                if i < 3:
                    assert "close" not in response.connection_tokens(), response.raw
            assert "close" in response.connection_tokens(), response.raw
            assert response.close_delimited or wire.wait_closed()


def test_max_requests_per_connection_pipelined(launch: Callable[..., Server]) -> None:
    server = launch("--max-requests-per-connection", "2")
    with wire_to(server) as wire:
        wire.send(b"".join(request("GET", f"/echo?i={i}") for i in range(1, 5)))
        first = wire.read_response()
        second = wire.read_response()
        assert (first.header("x-query"), second.header("x-query")) == ("i=1", "i=2")
        assert "close" not in first.connection_tokens()
        assert "close" in second.connection_tokens(), second.raw
        assert second.close_delimited or wire.wait_closed()
