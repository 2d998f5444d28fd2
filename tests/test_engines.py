"""Every combination of HTTP/1.1 engine and event loop serves the same bytes the same way.

The other suites run on the defaults (the fast parser, uvloop when installed);
POUNCE_TEST_HTTP_PARSER / POUNCE_TEST_LOOP rerun them on another engine.  This
module checks the core behaviours on all four combinations in every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from helpers.server import Server, http_exchange, start_server

pytestmark = pytest.mark.slow

COMBOS = [(p, lo) for p in ("fast", "h11") for lo in ("asyncio", "uvloop")]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{p}-{lo}" for p, lo in COMBOS])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    parser, loop = request.param
    srv = start_server("examples.hello:app", "--http-parser", parser, "--loop", loop)
    yield srv
    assert srv.stop() == 0


def responses(data: bytes) -> list[bytes]:
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


def test_banner_names_the_engine(server: Server) -> None:
    assert "loop" in server.output and "parser" in server.output


def test_keep_alive_and_pipelining_in_order(server: Server) -> None:
    data = http_exchange(
        server,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    got = responses(data)
    assert len(got) == 3
    assert got[0].endswith(b"Hello, world!\n")
    assert got[1].endswith(b'{"message": "Hello, world!"}')
    assert b"content-length: 14" in got[2].lower() and got[2].endswith(b"\r\n\r\n")


def test_chunked_upload_and_large_body(server: Server) -> None:
    body = os.urandom(700_000)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:300_000], body[300_000:]))
    data = http_exchange(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunked
        + b"0\r\n\r\n",
    )
    head, _, got = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert got == body


def test_expect_continue(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"hello")


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    ],
)
def test_malformed_is_400_and_closed(server: Server, bad: bytes) -> None:
    data = http_exchange(server, bad)
    assert data.startswith(b"HTTP/1.1 400"), data
    assert http_exchange(
        server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).startswith(b"HTTP/1.1 200")


def test_unknown_loop_name_is_rejected() -> None:
    from helpers.server import run_pounce

    result = run_pounce("serve", "examples.hello:app", "--loop", "tokio")
    assert result.returncode == 2
    assert "tokio" in result.stderr
