"""The control socket and ``pounce ctl``: permissions, the status document, exit
codes, drain / resume, stop, scale and workers."""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from apps.daemon_support import (
    Daemon,
    Daemons,
    alive,
    both,
    ctl_cmd,
    daemons,
    free_port,
    get,
    popen_ctl,
    run_as_nobody_python,
    run_ctl,
    status_of,
)
from conftest import ROOT, child_env, pounce_cmd, wait_for

pytestmark = pytest.mark.timeout(90)

__all__ = ["daemons"]

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


def no_answer(port: int, wait: float = 1.0) -> bool:
    """A new connection gets no HTTP answer (refused, reset, closed or silent for ``wait``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return not s.recv(16).startswith(b"HTTP/")
    except OSError:
        return True


def refused_as_nobody(d: Daemon) -> None:
    python, env = run_as_nobody_python()
    nobody = pwd.getpwnam("nobody")
    result = subprocess.run(
        [*python, "-m", "pounce", "ctl", "--socket", str(d.ctl_socket), "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        timeout=30,
    )
    text = (result.stdout + result.stderr).lower()
    assert "no module named" not in text, both(result)
    assert result.returncode != 0, both(result)
    assert "permission denied" in text or "not allowed" in text or "refused" in text, both(result)
    assert '"generation"' not in text, both(result)
    assert d.proc.poll() is None, d.output


def test_control_socket_is_private_and_refuses_other_users(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=1)
    mode = stat.S_IMODE(os.stat(d.ctl_socket).st_mode)
    assert mode == 0o600, oct(mode)
    # Let user nobody reach the socket file; the socket itself must still refuse.
    os.chmod(d.ctl_socket.parent, 0o711)
    refused_as_nobody(d)
    # Even if the file mode were opened up, the peer uid check refuses other users.
    os.chmod(d.ctl_socket, 0o666)
    refused_as_nobody(d)
    # Root (the daemon's own uid here) still gets an answer.
    assert d.ctl("status").returncode == 0


def test_status_json_document(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--max-restarts", "7", workers=2)
    result = d.ctl("status", "--json")
    assert result.returncode == 0, both(result)
    status = json.loads(result.stdout)
    for key in ("state", "generation", "workers", "listeners", "crash_budget"):
        assert key in status, status
    assert status["state"] == "running"
    assert status["generation"] == 1
    assert len(status["workers"]) == 2
    for worker in status["workers"]:
        assert isinstance(worker["pid"], int) and alive(worker["pid"])
        assert worker["generation"] == 1 and worker["state"] == "ready"
    assert isinstance(status["listeners"], list) and len(status["listeners"]) == 1
    budget = status["crash_budget"]
    assert budget["used"] == 0 and budget["left"] == 7, budget
    # The human form names the same things.
    text = d.ctl("status")
    assert text.returncode == 0, both(text)
    for worker in status["workers"]:
        assert str(worker["pid"]) in text.stdout, text.stdout


def test_exit_codes(daemons: Daemons) -> None:
    missing = daemons.tmpdir() / "nobody-home.sock"
    for command in (["status"], ["reload"], ["stop"]):
        result = run_ctl(missing, *command)
        assert result.returncode == 3, both(result)
        assert result.stderr.strip(), both(result)
    # A socket file nobody listens on is "not running" as well.
    stale = daemons.tmpdir() / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    assert run_ctl(stale, "status").returncode == 3

    appdir = daemons.tmpdir()
    cfg = appdir / "pounce.toml"
    cfg.write_text("[server]\nworkers = 1\n")
    d = daemons.fd(APP, "-c", str(cfg), workers=1)
    assert d.ctl("status").returncode == 0
    cfg.write_text("[server]\nworkers = 0\n")
    failed = d.ctl("reload")
    assert failed.returncode == 1, both(failed)


def test_drain_keeps_serving_for_the_delay_and_resume_undoes_it(daemons: Daemons) -> None:
    admin = free_port()
    d = daemons.fd(APP, "--drain-delay", "60", "--admin-port", str(admin), workers=2)
    assert wait_for(lambda: status_of(admin, "/health/ready") == 200, 10), d.output
    result = d.ctl("drain")
    assert result.returncode == 0, both(result) + d.output
    # Not ready at once, still live; and still serving during drain_delay.
    for port in (admin, d.port):
        assert get(port, "/health/ready").status == 503
        assert get(port, "/health/live").status == 200
        get(port, "/health/ready").json()
    for _ in range(10):
        assert get(d.port, "/").status == 200
    assert d.status()["state"] == "draining"

    result = d.ctl("resume")
    assert result.returncode == 0, both(result) + d.output
    for port in (admin, d.port):
        assert get(port, "/health/ready").status == 200
    assert get(d.port, "/").status == 200
    assert d.status()["state"] == "running"


def test_drain_wait_returns_once_in_flight_requests_are_done(daemons: Daemons) -> None:
    admin = free_port()
    d = daemons.fd(
        APP,
        "--drain-delay",
        "0.3",
        "--admin-port",
        str(admin),
        "--shutdown-timeout",
        "60",
        workers=2,
    )
    release = daemons.tmpdir() / "release"
    slow = start_slow(d, release, "d")
    drain = popen_ctl(d.ctl_socket, "drain", "--wait")
    try:
        assert wait_for(lambda: status_of(admin, "/health/ready") == 503, 10), d.output
        assert get(admin, "/health/live").status == 200
        # After the delay no new connection is served ...
        assert wait_for(lambda: no_answer(d.port), 15), d.output
        # ... while the request in flight still runs and drain --wait waits for it.
        assert drain.poll() is None, drain.communicate()[0]
        release.write_text("go")
        data = read_all(slow)
        assert data.startswith(b"HTTP/1.1 200"), data
        assert drain.wait(30) == 0, drain.communicate()[0]
    finally:
        slow.close()
        if drain.poll() is None:
            drain.kill()
        out = drain.communicate()[0]
    assert "drained" in out, out
    assert d.status()["state"] == "drained"
    assert get(admin, "/health/ready").status == 503
    assert get(admin, "/health/live").status == 200
    assert d.proc.poll() is None
    result = d.ctl("stop")
    assert result.returncode == 0, both(result)
    assert d.wait_exit(20) == 0, d.output


def test_stop_is_graceful(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--shutdown-timeout", "60", workers=2)
    pids = d.worker_pids()
    release = daemons.tmpdir() / "release"
    slow = start_slow(d, release, "s")
    try:
        result = d.ctl("stop", "--no-wait")
        assert result.returncode == 0, both(result)
        assert result.stdout == "stopping (gracefully)\n", both(result)
        assert wait_for(lambda: no_answer(d.port), 15), d.output
        assert d.proc.poll() is None, "stopped before the request in flight finished"
        release.write_text("go")
        data = read_all(slow)
    finally:
        slow.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    assert d.wait_exit(20) == 0, d.output
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)
    assert not d.ctl_socket.exists() or run_ctl(d.ctl_socket, "status").returncode == 3


def test_stop_returns_once_the_daemon_has_exited(daemons: Daemons) -> None:
    # A request in flight that never finishes keeps the daemon up for shutdown.timeout.
    d = daemons.fd(APP, "--shutdown-timeout", "1", workers=1)
    slow = start_slow(d, daemons.tmpdir() / "never", "w")
    try:
        result = d.ctl("stop")
        gone = d.proc.poll() is not None  # right away: ctl stop waited for the exit
    finally:
        slow.close()
    assert result.returncode == 0, both(result) + d.output
    assert result.stdout.startswith("stopped (gracefully) in "), both(result)
    assert gone, f"ctl stop returned while the daemon still ran\n{both(result)}"


def test_stop_gives_up_waiting_after_the_timeout(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--shutdown-timeout", "60", workers=1)
    release = daemons.tmpdir() / "release"
    slow = start_slow(d, release, "t")
    try:
        result = d.ctl("stop", "--timeout", "0.5")
        assert result.returncode == 1, both(result)
        assert result.stderr == (
            f"pounce ctl: error: the daemon (pid {d.pid}) has not exited within 0.5s\n"
        ), both(result)
        assert d.proc.poll() is None
        release.write_text("go")
        assert read_all(slow).startswith(b"HTTP/1.1 200")
    finally:
        slow.close()
    assert d.wait_exit(20) == 0, d.output


def test_status_paths_are_absolute(daemons: Daemons) -> None:
    where = daemons.tmpdir()
    (where / "pounce.toml").write_text("[server]\nworkers = 1\n")
    d = daemons.fd(APP, "-c", "pounce.toml", "--uds", "app.sock", workers=1, cwd=where)
    status = d.status()
    assert status["config"] == str(where / "pounce.toml"), status
    assert f"unix:{where / 'app.sock'}" in status["listeners"], status
    text = d.ctl("status").stdout
    assert f"config: {where / 'pounce.toml'}" in text.splitlines(), text
    assert f"listener: unix:{where / 'app.sock'}" in text.splitlines(), text


def test_stop_now_does_not_wait(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--shutdown-timeout", "60", workers=2)
    pids = d.worker_pids()
    slow = start_slow(d, daemons.tmpdir() / "never", "n")
    try:
        result = d.ctl("stop", "--now")
        assert result.returncode == 0, both(result)
        assert d.wait_exit(20) is not None, d.output
    finally:
        slow.close()
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)


def test_scale_and_workers(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=2)
    result = d.ctl("scale", "3")
    assert result.returncode == 0, both(result) + d.output
    status = d.wait_workers(3)
    assert status["generation"] == 1
    listed = d.ctl("workers", "--json")
    assert listed.returncode == 0, both(listed)
    workers = json.loads(listed.stdout)["workers"]
    assert sorted(w["pid"] for w in workers) == sorted(w["pid"] for w in status["workers"])
    plain = d.ctl("workers")
    assert plain.returncode == 0, both(plain)
    for w in workers:
        assert str(w["pid"]) in plain.stdout, plain.stdout

    result = d.ctl("scale", "1")
    assert result.returncode == 0, both(result) + d.output
    status = d.wait_workers(1)
    assert status["crash_budget"]["used"] == 0
    for _ in range(5):
        assert get(d.port, "/").status == 200
    # A bad count is refused by ctl itself.
    bad = subprocess.run(
        ctl_cmd(d.ctl_socket, "scale", "0"),
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=child_env(),
    )
    assert bad.returncode != 0
    assert len(d.status()["workers"]) == 1


def test_config_file_tables_and_ctl_by_config(daemons: Daemons) -> None:
    port, admin = free_port(), free_port()
    base = (
        f'app = "{APP}"\n\n'
        "[server]\nworkers = {workers}\n\n"
        f'[[listen]]\nhost = "127.0.0.1"\nport = {port}\n\n'
        "[workers]\nmax_restarts = 9\nrestart_window = 30\n\n"
        "[reload]\ntimeout = 20\n\n"
        "[shutdown]\ntimeout = 10\n\n"
        f'[admin]\nhost = "127.0.0.1"\nport = {admin}\n\n'
        '[health]\nlive_path = "/cfg/live"\nready_path = "/cfg/ready"\n\n'
        '[metrics]\npath = "/cfg/metrics"\n'
    )
    d, cfg = daemons.config(base.format(workers=2), port=port)
    assert wait_for(lambda: d.ctl_socket.exists(), 20), d.output
    d.wait_workers(2, generation=1)
    by_config = subprocess.run(
        ctl_cmd_config(cfg, "status", "--json"),
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=child_env(),
    )
    assert by_config.returncode == 0, both(by_config)
    status = json.loads(by_config.stdout)
    assert status["crash_budget"]["left"] == 9, status["crash_budget"]
    for p in (port, admin):
        assert get(p, "/cfg/live").status == 200
        assert get(p, "/cfg/ready").status == 200
        assert "pounce_generation" in get(p, "/cfg/metrics").text
    # The reload re-reads the file: one more worker.
    control = cfg.read_text().split("[control]", 1)[1]
    cfg.write_text(base.format(workers=3) + "\n[control]" + control)
    result = subprocess.run(
        ctl_cmd_config(cfg, "reload"),
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=child_env(),
        timeout=60,
    )
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(3, generation=2)


def ctl_cmd_config(cfg: Path, *args: str) -> list[str]:
    return pounce_cmd("ctl", "-c", str(cfg), *args)
