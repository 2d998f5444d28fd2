"""What asyncio promises inside a request, end to end, on both loops.

Pounce runs most apps eagerly, stepping them where the request was parsed, as the
connection's runner Task (``pounce.worker.runner``), and holds a round of responses
back until the loop has handled that round of reads.  These tests check that the
app cannot tell: ``asyncio.current_task()`` is a Task that stays the same across
suspensions, ``asyncio.timeout``, ``Task.cancel`` and anyio cancel scopes work on
it, each request has a fresh context even on a kept-alive connection, an app still
working after its response does not hold up the connection's next request, and
responses leave in order.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.asgi import read_response, read_until_close
from helpers.server import Server, start_server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = start_server("apps.tasks_app:app", "--loop", request.param)
    try:
        yield srv
    finally:
        srv.stop()


def get(sock: socket.socket, path: str) -> tuple[int, Any]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    status, _, body = read_response(sock)
    return status, json.loads(body) if body.startswith(b"{") else body


def test_current_task_is_a_task_that_survives_suspension(server: Server) -> None:
    with server.connect() as sock:
        for _ in range(3):  # the first request of a connection, and later ones
            assert get(sock, "/no-suspend") == (200, {"is_task": True})
            status, body = get(sock, "/task")
            assert status == 200
            assert body == {"is_task": True, "same_after_suspend": True, "cancelling": 0}


def test_asyncio_timeout_fires_and_leaves_no_cancellation_behind(server: Server) -> None:
    with server.connect() as sock:
        for _ in range(3):
            assert get(sock, "/timeout-fires") == (200, {"outcome": "timed out", "cancelling": 0})
            assert get(sock, "/timeout-quiet") == (200, {"outcome": "ok", "cancelling": 0})
            assert get(sock, "/no-suspend") == (200, {"is_task": True})


def test_a_task_cancelling_itself_gets_cancelled_error(server: Server) -> None:
    with server.connect() as sock:
        for _ in range(2):
            assert get(sock, "/cancel-self") == (200, {"outcome": "cancelled"})
            # ... and the connection's next request starts clean.
            assert get(sock, "/timeout-quiet") == (200, {"outcome": "ok", "cancelling": 0})


def test_anyio_cancel_scopes(server: Server) -> None:
    with server.connect() as sock:
        for _ in range(2):
            assert get(sock, "/anyio") == (
                200,
                {"moved_on": True, "failed_after": True, "quiet_cancelled": False},
            )


def test_context_variables_do_not_leak_between_requests_of_a_connection(
    server: Server,
) -> None:
    with server.connect() as sock:
        assert get(sock, "/ctx-set") == (200, {"before": "unset"})
        assert get(sock, "/ctx-get") == (200, {"value": "unset"})
        assert get(sock, "/ctx-set") == (200, {"before": "unset"})
    with server.connect() as other:
        assert get(other, "/ctx-get") == (200, {"value": "unset"})


def test_app_working_after_its_response_does_not_hold_up_the_next_request(
    server: Server,
) -> None:
    with server.connect() as sock:
        assert get(sock, "/tail") == (200, {"answered": True})
        # /tail's app is still running (waiting for /release): the next request on the
        # same connection must be answered anyway, or /tail would wait forever.
        assert get(sock, "/release") == (200, {"released": True})
        assert wait_for(lambda: get(sock, "/tail-done") == (200, {"done": True}), 10)
        assert get(sock, "/no-suspend") == (200, {"is_task": True})


def test_error_after_a_suspension_is_a_500_and_the_server_goes_on(server: Server) -> None:
    data, closed = (b"", False)
    with server.connect() as sock:
        sock.sendall(b"GET /error-after-suspend HTTP/1.1\r\nHost: t\r\n\r\n")
        data, closed = read_until_close(sock)
    assert data.startswith(b"HTTP/1.1 500 ")
    assert closed
    with server.connect() as sock:
        assert get(sock, "/no-suspend") == (200, {"is_task": True})
    assert "boom after a suspension" in server.output


def test_pipelined_responses_leave_in_order_before_an_error(server: Server) -> None:
    request = b"GET /no-suspend HTTP/1.1\r\nHost: t\r\n\r\n"
    bad = b"GET /x HTTP/1.1\r\nHost: t\r\nBad Header: y\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(request * 3 + bad)
        data, closed = read_until_close(sock)
    assert closed
    parts = data.split(b"HTTP/1.1 ")[1:]
    assert [p[:3] for p in parts] == [b"200", b"200", b"200", b"400"], data
    assert data.count(b'{"is_task": true}') == 3


def test_response_reaches_a_client_that_half_closed_after_its_request(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /no-suspend HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data, closed = read_until_close(sock)
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b'{"is_task": true}')
    assert closed


def test_a_streamed_chunk_reaches_the_client_while_the_app_waits(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /stream-wait HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.settimeout(10)
        data = b""
        while b"first;" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        # The app is still waiting: only this other connection's request ends the wait.
        with server.connect() as other:
            assert get(other, "/release-second") == (200, {"released": True})
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in data.lower()
    body = data.partition(b"\r\n\r\n")[2]
    assert body == b"6\r\nfirst;\r\n6\r\nsecond\r\n0\r\n\r\n"


def test_a_long_stream_from_an_app_that_never_suspends_arrives_whole(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /stream-many HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data, closed = read_until_close(sock, timeout=30)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body.count(b"400\r\n" + b"z" * 1024 + b"\r\n") == 16 * 1024
    assert body.endswith(b"0\r\n\r\n")
