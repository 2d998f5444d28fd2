"""Bounds on what a client or an app can hold: a stalled request body
(``http.request_timeout``), a client that reads nothing (``http.write_timeout``), an app
that runs on after its client left (``http.disconnect_grace``), a response longer than
its Content-Length, and running out of file descriptors (the accept pause).

Real ``pounce serve`` processes on 127.0.0.1, raw sockets; every wait is bounded and
waits on an event (a response, a close, a log line, a metric), never on a sleep.
"""

from __future__ import annotations

import resource
import socket
import sys
import threading
import time

import pytest

from helpers.asgi import Launcher, read_until_close, split_response
from helpers.daemon import sample, scrape
from helpers.server import Server, free_port, pounce_cmd, wait_for
from helpers.wire import Wire, assert_serving, request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ECHO = "apps.http_echo:app"
BEHAVE = "apps.asgi_behave:app"


def wire_to(server: Server) -> Wire:
    return Wire.open(server.host, server.port)


def behave_serving(server: Server) -> None:
    """A fresh request to the asgi_behave app gets its 200 ``ok``."""
    with wire_to(server) as wire:
        wire.send(request("GET", "/"))
        response = wire.read_response()
    assert (response.status, response.body) == (200, b"ok"), response.raw


# -- http.request_timeout -------------------------------------------------------------------


def test_stalled_request_body_gets_408_and_close(launch: Launcher) -> None:
    """Content-Length 10, 2 bytes sent, then nothing: 408 and the connection closed."""
    server = launch.fd(ECHO, "--workers", "1", "--request-timeout", "0.5")
    with wire_to(server) as wire:
        wire.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 408"), response.raw
        assert "close" in response.connection_tokens()
        assert wire.wait_closed()
    assert server.wait_output("http.request_timeout"), server.output
    assert_serving(server)


def test_stalled_chunked_body_gets_408(launch: Launcher) -> None:
    server = launch.fd(ECHO, "--workers", "1", "--request-timeout", "0.5")
    with wire_to(server) as wire:
        wire.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        response = wire.read_response()
        assert response.status_line.startswith("HTTP/1.1 408"), response.raw
        assert wire.wait_closed()


def test_request_timeout_counts_from_the_last_body_bytes(launch: Launcher) -> None:
    """A body that keeps coming is not stalled, however long it takes in all."""
    server = launch.fd(ECHO, "--workers", "1", "--request-timeout", "3")
    body = b"0123456789" * 2
    with wire_to(server) as wire:
        wire.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        started = time.monotonic()
        for i in range(len(body)):
            wire.send(body[i : i + 1])
            time.sleep(0.25)  # pacing the client, well inside request_timeout
        assert time.monotonic() - started > 3  # the whole body took longer than the timeout
        response = wire.read_response()
        assert (response.status, response.body) == (200, body)


def test_request_timeout_does_not_run_while_the_app_is_slow_to_read(launch: Launcher) -> None:
    """Reading paused because the app has not taken the body yet: the client is not
    stalling, so no 408, however long the app takes."""
    server = launch.fd(ECHO, "--workers", "1", "--request-timeout", "0.5")
    key = "slow-reader"
    body = b"b" * (2 * 1024 * 1024)  # well over what the server buffers for the app
    with wire_to(server) as wire:
        head = b"POST /gate?key=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
            key.encode(),
            len(body),
        )
        sender = threading.Thread(target=wire.send, args=(head + body,), daemon=True)
        sender.start()

        def gate_state() -> bytes:
            with wire_to(server) as control:
                control.send(request("GET", f"/gate-state?key={key}"))
                return control.read_response().body

        assert wait_for(lambda: gate_state() == b"waiting", timeout=10)
        # several request timeouts pass while the app does not read
        assert not wire.wait_closed(timeout=2), "the server gave up on a client it paused"
        with wire_to(server) as control:
            control.send(request("GET", f"/open?key={key}"))
            assert control.read_response().body == b"opened"
        sender.join(30)
        response = wire.read_response(timeout=30)
        assert (response.status, len(response.body)) == (200, len(body))


def test_app_already_responding_to_a_stalled_body_gets_disconnect(launch: Launcher) -> None:
    """The app streamed its response head and waits for the body: it gets
    http.disconnect and the connection is closed."""
    server = launch.fd(BEHAVE, "--workers", "1", "--request-timeout", "0.5")
    with wire_to(server) as wire:
        wire.send(b"POST /echo-stream-first HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        data, closed = read_until_close(wire.sock, timeout=20)
        assert closed, data
        assert data.startswith(b"HTTP/1.1 200"), data
    assert server.wait_output("ECHO-STREAM-FIRST http.disconnect"), server.output


# -- http.write_timeout ---------------------------------------------------------------------


def test_client_that_reads_nothing_is_dropped(launch: Launcher, tmp_path: object) -> None:
    server = launch.fd(BEHAVE, "--workers", "1", "--write-timeout", "0.5")
    progress = f"{tmp_path}/progress"
    total = 64 * 1024 * 1024
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    with sock:
        sock.connect((server.host, server.port))
        sock.sendall(request("GET", f"/flood?total={total}&progress={progress}"))
        # The client reads nothing: once the server's buffers are full, it drops the client.
        assert server.wait_output("http.write_timeout", timeout=30), server.output
        data, closed = read_until_close(sock, timeout=20)
        assert closed
        assert len(data) < total
    behave_serving(server)


# -- http.disconnect_grace ------------------------------------------------------------------


def test_never_responding_app_is_cancelled_after_its_client_left(launch: Launcher) -> None:
    admin = free_port()
    server = launch.fd(
        BEHAVE, "--workers", "1", "--disconnect-grace", "0.2", "--admin-port", str(admin)
    )
    n = 20
    clients = [wire_to(server) for _ in range(n)]
    for wire in clients:
        wire.send(request("GET", "/hang"))
    assert wait_for(lambda: server.output.count("HANG-STARTED") == n, 20), server.output
    assert wait_for(lambda: sample(scrape(admin), "http_requests_in_flight") == n, 20)
    for wire in clients:
        wire.close()
    # The apps got http.disconnect (they ignore it), then were cancelled after the grace.
    assert wait_for(lambda: server.output.count("HANG-CANCELLED") == n, 20), server.output
    samples = scrape(admin)
    assert sample(samples, "http_requests_in_flight") == 0
    assert sample(samples, "pounce_apps_cancelled_total") == n
    assert "after its client went away" in server.output
    behave_serving(server)


# -- a response longer than its Content-Length ----------------------------------------------


def test_response_longer_than_its_content_length_sends_the_head_then_closes(
    launch: Launcher,
) -> None:
    server = launch.fd(BEHAVE, "--workers", "1", "--access-log")
    with server.connect() as sock:
        sock.sendall(request("GET", "/too-long"))
        data, closed = read_until_close(sock, timeout=20)
    assert closed
    status, headers, body = split_response(data)
    assert status == 200, data
    assert headers.get("content-length") == "5"
    assert len(body) < 5  # the client sees an incomplete response, never a wrong one
    assert wait_for(lambda: '"GET /too-long HTTP/1.1" 200' in server.output, 10), server.output
    line = next(x for x in server.output.splitlines() if '"GET /too-long HTTP/1.1"' in x)
    logged_bytes = int(line.split('" 200 ')[1].split()[0])
    assert logged_bytes == len(data) - len(body)  # the head that went out
    # (the error line may reach the output after the access line)
    assert wait_for(lambda: "more bytes than its Content-Length" in server.output, 10)
    assert server.output.count("more bytes than its Content-Length") == 1, server.output
    assert "Traceback" not in server.output


# -- fd exhaustion: the accept pause -------------------------------------------------------


def _limited_cmd(nofile: int, *args: str) -> list[str]:
    """``pounce ARGS`` with RLIMIT_NOFILE set to ``nofile`` (inherited by its workers)."""
    code = (
        "import os, resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
        "os.execv(sys.executable, sys.argv[1:])\n"
    )
    return [sys.executable, "-c", code, *pounce_cmd(*args)]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_fds_pauses_accepting_logs_once_per_pause_and_recovers(
    launch: Launcher, loop: str
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients_n = 200
    if soft < clients_n + 100:
        pytest.fail(f"the test process needs {clients_n + 100} fds, has {soft}")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    admin = free_port()
    args = ("serve", ECHO, "--fd", str(listener.fileno()), "--workers", "1",
            "--loop", loop, "--admin-port", str(admin))  # fmt: skip
    server = launch.spawn(
        cmd=_limited_cmd(100, *args), host="127.0.0.1", port=port, pass_fds=(listener.fileno(),)
    )
    listener.close()
    server.wait_ready()
    clients: list[socket.socket] = []
    try:
        for _ in range(clients_n):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert server.wait_output("accepting paused", timeout=30), server.output
        assert wait_for(lambda: sample(scrape(admin), "pounce_accept_pauses_total") >= 1, 20)
        # One line per pause window, not one per failed accept().
        lines = server.output.count("accepting paused")
        assert 1 <= lines <= 200, lines
        assert "out of system resource" not in server.output
        assert "Traceback" not in server.output
        # Free the fds: the clients still queued are served, none was reset.
        for sock in clients[:100]:
            sock.close()
        for sock in clients[100:]:
            sock.sendall(request("GET", "/fixed", headers=[("Connection", "close")]))
        for sock in clients[100:]:
            data, _ = read_until_close(sock, timeout=30)
            assert data.startswith(b"HTTP/1.1 200"), data
    finally:
        for sock in clients:
            sock.close()
    assert_serving(server)
