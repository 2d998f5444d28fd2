"""No client ever hangs on the public port: during a drain the listeners serve until
``shutdown.drain_delay`` ends, then new connections are refused at once; during a stop
likewise, while in-flight requests finish.  Readiness answers 503 as soon as
``pounce ctl drain`` returns, wherever it is served."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers.daemon import Daemon, Daemons, get, popen_ctl
from helpers.server import both, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


APP = "apps.daemon_app:app"
HANG = 10.0  # a client still waiting this long for any outcome is hanging


def outcome(port: int) -> str:
    """What a new connection gets: "answered", "refused", "reset", "closed" or "hung"."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(16)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "hung"
    return "answered" if data.startswith(b"HTTP/1.1 200") else "closed" if not data else "other"


def curl_code(port: int) -> int:
    """curl's exit status for a GET: 0 answered, 7 refused, 52 empty, 56 reset, 28 timed out."""
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "--max-time", str(HANG), f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=HANG + 20,
    )
    return result.returncode


def start_slow(d: Daemon, release: Path) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", d.port), timeout=60)
    s.sendall(
        f"GET /slow?id=drain&limit=60&release={quote(str(release), safe='')} HTTP/1.1\r\n"
        "Host: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert d.wait_output("SLOW-STARTED-drain"), d.output
    return s


def read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


class Clients:
    """Threads opening fresh connections in a loop, recording each outcome."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.outcomes: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outcomes.append(outcome(self.port))

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(HANG + 5)


def assert_refused_at_once(port: int) -> None:
    # (a worker told to stop may take one more connection before it stops accepting)
    assert wait_for(lambda: outcome(port) != "answered", 15)
    for _ in range(5):
        assert outcome(port) in ("refused", "reset", "closed")
    assert curl_code(port) in (7, 52, 56)


@pytest.mark.parametrize(("delay", "mode"), [("0", "process"), ("0.5", "process"), ("0", "thread")])
def test_after_a_drain_new_connections_are_refused_never_left_hanging(
    daemons: Daemons, delay: str, mode: str
) -> None:
    admin = free_port()
    d = daemons.fd(
        APP,
        "--drain-delay",
        delay,
        "--worker-mode",
        mode,
        "--admin-port",
        str(admin),
        "--health-public",
        workers=2,
    )
    with Clients(d.port) as clients:
        assert wait_for(lambda: "answered" in clients.outcomes, 10)
        drain = popen_ctl(d.ctl_socket, "drain", "--wait")
        try:
            assert drain.wait(60) == 0, drain.communicate()[0] + d.output
        finally:
            if drain.poll() is None:
                drain.kill()
            drain.communicate()
        assert d.status()["state"] == "drained"
        seen = len(clients.outcomes)
        assert wait_for(lambda: len(clients.outcomes) >= seen + 20, 30), clients.outcomes
    assert "hung" not in clients.outcomes, clients.outcomes
    assert set(clients.outcomes) <= {"answered", "refused", "reset", "closed"}, clients.outcomes
    assert_refused_at_once(d.port)
    assert get(admin, "/health/ready").status == 503
    # Resume: the listener serves again.
    result = d.ctl("resume")
    assert result.returncode == 0, both(result) + d.output
    assert wait_for(lambda: outcome(d.port) == "answered", 20), d.output
    assert get(d.port, "/health/ready").status == 200


def test_readiness_answers_503_as_soon_as_drain_returns(daemons: Daemons) -> None:
    admin = free_port()
    d = daemons.fd(
        APP, "--drain-delay", "60", "--admin-port", str(admin), "--health-public", workers=2
    )
    # Kept-alive connections to each worker, opened before the drain.
    conns = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=HANG)
        conns.append(s)
    try:
        result = d.ctl("drain")
        assert result.returncode == 0, both(result) + d.output
        for s in conns:
            s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 503"), d.output
        assert get(admin, "/health/ready").status == 503
        assert get(d.port, "/health/ready").status == 503
        assert outcome(d.port) == "answered"  # still serving during drain_delay
    finally:
        for s in conns:
            s.close()


def test_during_a_stop_new_connections_are_refused_while_requests_finish(
    daemons: Daemons,
) -> None:
    d = daemons.fd(APP, "--shutdown-timeout", "60", workers=2)
    release = daemons.tmpdir() / "release"
    slow = start_slow(d, release)
    try:
        result = d.ctl("stop", "--no-wait")  # the slow request holds the exit
        assert result.returncode == 0, both(result)
        assert wait_for(lambda: "no worker accepts" in d.output, 15), d.output
        # The worker with the slow request is still draining; no new client hangs.
        assert d.proc.poll() is None
        assert_refused_at_once(d.port)
        release.write_text("go")
        assert read_all(slow).startswith(b"HTTP/1.1 200"), d.output
    finally:
        slow.close()
    assert d.wait_exit(30) == 0, d.output
