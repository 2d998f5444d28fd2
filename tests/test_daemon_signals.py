"""Signals to the supervisor: TERM and INT stop gracefully, QUIT at once, HUP
reloads, TTIN and TTOU add and remove a worker."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers.daemon import Daemon, Daemons, answers, get
from helpers.procs import alive
from helpers.server import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


APP = "apps.daemon_app:app"


def start_slow(d: Daemon, release: Path, ident: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    s.sendall(
        f"GET /slow?id={ident}&limit=60&release={quote(str(release), safe='')} HTTP/1.1\r\n"
        "Host: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert d.wait_output(f"SLOW-STARTED-{ident}"), d.output
    return s


def read_all(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_term_and_int_stop_gracefully(daemons: Daemons, sig: signal.Signals) -> None:
    d = daemons.fd(APP, "--shutdown-timeout", "60", workers=2)
    pids = d.worker_pids()
    release = daemons.tmpdir() / "release"
    slow = start_slow(d, release, "g")
    try:
        d.signal(sig)
        # Stops accepting new connections, but waits for the request in flight.
        assert wait_for(lambda: not answers(d.port, timeout=1), 15), d.output
        assert d.proc.poll() is None, "exited before the request in flight finished"
        release.write_text("go")
        data = read_all(slow)
    finally:
        slow.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b'"slow": "done"' in data, data
    code = d.wait_exit(30)
    if sig == signal.SIGTERM:
        assert code == 0, d.output
    else:
        assert code in (0, 130), d.output
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)
    assert d.output.count("DAEMON-APP-SHUTDOWN") == 2, d.output  # lifespan shutdown ran


def test_quit_stops_at_once(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--shutdown-timeout", "60", workers=2)
    pids = d.worker_pids()
    release = daemons.tmpdir() / "never"
    slow = start_slow(d, release, "q")
    try:
        d.signal(signal.SIGQUIT)
        # It does not wait for the request in flight (which would take 60s).
        code = d.wait_exit(20)
        assert code is not None, d.output
        slow.settimeout(10)
        data = read_all(slow)
        assert not data.startswith(b"HTTP/1.1 200"), data
    finally:
        slow.close()
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)


def test_hup_reloads(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=2)
    old = set(d.worker_pids())
    d.signal(signal.SIGHUP)
    status = d.wait_workers(2, generation=2)
    assert not old & {w["pid"] for w in status["workers"]}
    assert get(d.port, "/").status == 200
    assert d.proc.poll() is None


def test_ttin_and_ttou_add_and_remove_a_worker(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=2)
    d.signal(signal.SIGTTIN)
    status = d.wait_workers(3)
    assert status["generation"] == 1
    d.signal(signal.SIGTTIN)
    d.wait_workers(4)
    d.signal(signal.SIGTTOU)
    d.wait_workers(3)
    # One signal at a time: two of the same kind sent at once may arrive as one.
    d.signal(signal.SIGTTOU)
    d.wait_workers(2)
    d.signal(signal.SIGTTOU)
    status = d.wait_workers(1)
    assert get(d.port, "/").status == 200
    assert status["crash_budget"]["used"] == 0, status  # scaling down is no crash
    assert d.proc.poll() is None
