"""Graceful shutdown on SIGTERM / SIGINT, the second SIGINT, and the shutdown timeout."""

from __future__ import annotations

import contextlib
import signal
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers.asgi import (
    Launcher,
    read_response,
    read_until_close,
    split_response,
    tcp_answers,
    wait_exit,
)
from helpers.procs import alive, process_tree
from helpers.server import Server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def start_slow(server: Server, release: Path, ident: str, limit: float = 60) -> socket.socket:
    """Open a connection with a request the app holds until ``release`` exists."""
    s = server.connect()
    s.sendall(
        f"GET /slow?id={ident}&limit={limit}&release={quote(str(release), safe='')} HTTP/1.1\r\n"
        "Host: x\r\n\r\n".encode()
    )
    assert server.wait_output(f"SLOW-STARTED-{ident}"), server.output
    return s


def stopped_accepting(server: Server) -> bool:
    return not tcp_answers(server.host, server.port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown(launch: Launcher, tmp_path: Path, sig: signal.Signals) -> None:
    server = launch.fd(
        "apps.asgi_behave:app", "--shutdown-timeout", "20", "--keep-alive-timeout", "60"
    )
    release = tmp_path / "release"
    # An idle keep-alive connection, after one complete request.
    idle = server.connect()
    slow = None
    try:
        idle.sendall(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_response(idle)
        assert status == 200
        # A slow request in flight.
        slow = start_slow(server, release, "g")
        pids = process_tree(server.proc.pid)
        server.signal(sig)
        # Idle keep-alive connections are closed while the slow one is still running.
        data, closed = read_until_close(idle, timeout=15)
        assert closed and data == b"", (data, server.output)
        # New connections are no longer served.
        assert wait_for(lambda: stopped_accepting(server), 15), server.output
        assert server.proc.poll() is None, "exited before the in-flight request finished"
        # Lifespan shutdown only runs after the in-flight request is done.
        assert "BEHAVE-SHUTDOWN" not in server.output
        release.write_text("go")
        data, _ = read_until_close(slow, timeout=15)
        status, _, body = split_response(data)
        assert status == 200, data
        assert body == b"slow-done-" + b"s" * 1000
    finally:
        idle.close()
        if slow is not None:
            slow.close()
    assert wait_exit(server, 15) == 0, server.output
    assert "BEHAVE-SHUTDOWN" in server.output
    assert wait_for(lambda: not any(alive(p) for p in pids), 10), pids


def test_graceful_shutdown_with_two_workers(launch: Launcher, tmp_path: Path) -> None:
    server = launch.fd("apps.asgi_behave:app", "--workers", "2", "--shutdown-timeout", "20")
    release = tmp_path / "release"
    slow = start_slow(server, release, "w2")
    pids = process_tree(server.proc.pid)
    try:
        server.signal(signal.SIGTERM)
        assert wait_for(lambda: stopped_accepting(server), 15), server.output
        assert server.proc.poll() is None
        release.write_text("go")
        data, _ = read_until_close(slow, timeout=15)
        status, _, body = split_response(data)
        assert status == 200, data
        assert body.startswith(b"slow-done-")
    finally:
        slow.close()
    assert wait_exit(server, 15) == 0, server.output
    assert server.output.count("BEHAVE-SHUTDOWN") >= 1
    assert wait_for(lambda: not any(alive(p) for p in pids), 10), pids


def test_second_sigint_exits_at_once(launch: Launcher, tmp_path: Path) -> None:
    server = launch.fd("apps.asgi_behave:app", "--shutdown-timeout", "60")
    release = tmp_path / "never"
    slow = start_slow(server, release, "s2", limit=60)
    try:
        pids = process_tree(server.proc.pid)
        server.signal(signal.SIGINT)
        assert wait_for(lambda: stopped_accepting(server), 15), server.output
        assert server.proc.poll() is None
        server.signal(signal.SIGINT)
        code = wait_exit(server, 10)
        assert code is not None, "second SIGINT did not end the server"
        # No worker is left behind serving the abandoned request.
        assert wait_for(lambda: not any(alive(p) for p in pids), 10), pids
        data, _ = read_until_close(slow, timeout=10)
        assert b"slow-done" not in data
    finally:
        slow.close()


def test_request_longer_than_shutdown_timeout_is_cut(launch: Launcher, tmp_path: Path) -> None:
    server = launch.fd("apps.asgi_behave:app", "--shutdown-timeout", "1")
    release = tmp_path / "never"
    slow = start_slow(server, release, "cut", limit=60)
    try:
        pids = process_tree(server.proc.pid)
        server.signal(signal.SIGTERM)
        code = wait_exit(server, 20)
        assert code is not None, f"server still running long after the timeout:\n{server.output}"
        data, closed = read_until_close(slow, timeout=10)
        assert closed
        assert b"slow-done" not in data
        assert wait_for(lambda: not any(alive(p) for p in pids), 10), pids
    finally:
        slow.close()


def test_idle_server_sigterm_exits_zero_quickly(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--shutdown-timeout", "30")
    assert server.wait_output("BEHAVE-STARTUP"), server.output
    with contextlib.closing(server.connect()) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200")
    server.signal(signal.SIGTERM)
    # Nothing is in flight, so the server must not sit out the 30 s shutdown timeout.
    assert wait_exit(server, 15) == 0, server.output
    assert "BEHAVE-SHUTDOWN" in server.output
