"""The control socket and ``pounce ctl``: permissions, the status document, exit
codes, drain / resume, stop, scale and workers."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers.daemon import (
    Daemon,
    Daemons,
    ctl_cmd,
    get,
    other_user,
    popen_ctl,
    run_as_nobody_python,
    run_ctl,
    status_of,
)
from helpers.procs import alive, children_of
from helpers.server import ROOT, both, child_env, free_port, pounce_cmd, wait_for
from pounce.control.protocol import encode_request, encode_result

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
    d = daemons.fd(
        APP, "--drain-delay", "60", "--admin-port", str(admin), "--health-public", workers=2
    )
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
        '[health]\nlive_path = "/cfg/live"\nready_path = "/cfg/ready"\npublic = true\n\n'
        '[metrics]\npath = "/cfg/metrics"\npublic = true\n'
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


def test_scale_beyond_workers_max_is_refused_before_anything_changes(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--workers-max", "3", workers=1)
    before = d.status()
    # The count of issue 12: it used to drive the supervisor to MemoryError.
    huge = d.ctl("scale", "1000000000000")
    assert huge.returncode != 0, both(huge)
    assert "workers.max is 3" in huge.stdout + huge.stderr, both(huge)
    after = d.status()
    assert after["target_workers"] == 1, after
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    # Up to the bound is fine; one past it with SIGTTIN is refused and logged.
    ok = d.ctl("scale", "3")
    assert ok.returncode == 0, both(ok) + d.output
    d.wait_workers(3)
    assert (
        "until the next reload, which returns to server.workers = 1 unless the config "
        "changes it" in ok.stdout
    ), both(ok)
    d.signal(signal.SIGTTIN)
    assert d.wait_output("cannot scale to 4 workers: workers.max is 3"), d.output
    assert d.status()["target_workers"] == 3
    # As it said: the reload returns to the configured count.
    reload = d.ctl("reload")
    assert reload.returncode == 0, both(reload) + d.output
    d.wait_workers(1, generation=2)
    # The signal loop survived the refusal: SIGTERM still stops the daemon.
    d.signal(signal.SIGTERM)
    assert d.wait_exit(30) == 0, d.output


def test_server_workers_above_workers_max_fails_at_start() -> None:
    result = subprocess.run(
        pounce_cmd("serve", APP, "--workers", "5", "--workers-max", "4"),
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=child_env(),
        timeout=60,
    )
    assert result.returncode != 0, both(result)
    assert "server.workers: must be at most workers.max (4), got 5" in result.stderr, both(result)


def test_control_commands_are_logged_with_the_callers_pid_and_uid(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--log-level", "info", workers=1)

    def ctl_pid(*args: str) -> int:
        proc = popen_ctl(d.ctl_socket, *args)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + d.output
        return proc.pid

    uid = os.geteuid()
    for args, logged in [
        (("scale", "2"), "scale workers=2"),
        (("drain",), "drain timeout=None wait=False"),
        (("resume",), "resume"),
        (("reload",), "reload"),
        (("stop",), "stop now=False"),
    ]:
        pid = ctl_pid(*args)
        line = f"control: {logged} by pid {pid} uid {uid}"
        assert d.wait_output(line), f"{line!r} not logged:\n{d.output}"
    assert d.wait_exit(30) == 0, d.output
    # A refused command is logged as failed, with its caller.
    d2 = daemons.fd(APP, "--workers-max", "2", workers=1)
    pid = ctl_pid_of(d2, "scale", "9")
    assert d2.wait_output(
        f"control: scale by pid {pid} uid {uid} failed: cannot scale to 9 workers"
    ), d2.output


def ctl_pid_of(d: Daemon, *args: str) -> int:
    proc = popen_ctl(d.ctl_socket, *args)
    proc.communicate(timeout=60)
    return proc.pid


def test_control_socket_abuse_does_not_exhaust_the_daemon(daemons: Daemons) -> None:
    """1,100 half-sent control frames from a same-uid process, with the supervisor's
    descriptors limited to 256: ctl, health and worker replacement keep working."""
    admin = free_port()
    d = daemons.fd(APP, "--admin-port", str(admin), workers=1)
    victim = d.worker_pids()[0]
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (256, 256))
    own = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(own[0], 4096), max(own[1], 4096)))
    half_frame = encode_request("status")[:2]
    held: list[socket.socket] = []
    try:

        def connect_one() -> bool:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(str(d.ctl_socket))
            except BlockingIOError:  # the backlog is full: try again once it drains
                s.close()
                return False
            held.append(s)
            with contextlib.suppress(OSError):  # a refused connection may be closed already
                s.sendall(half_frame)
            return True

        # (a daemon out of descriptors stops accepting: its backlog stays full)
        for _ in range(1100):
            assert wait_for(connect_one, 30, 0.005), f"{len(held)} connected\n{d.output}"
        # Health is answered, and a killed worker is replaced, during the attack.
        assert status_of(admin, "/health/live") == 200, d.output
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: [p for p in children_of(d.pid) if p != victim and alive(p)], 30), (
            d.output
        )
        # The half-sent frames time out, and ctl answers again.
        status = d.wait_status(
            lambda s: len(s["workers"]) == 1 and s["workers"][0]["pid"] != victim, 30
        )
        assert status["workers"][0]["state"] == "ready", status
        assert status_of(admin, "/health/ready") == 200, d.output
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, own)
    assert "Traceback" not in d.output, d.output[-5000:]
    assert "control socket: refused" in d.output, d.output


FAKE_DAEMON = """
import os, socket, sys
path, reply = sys.argv[1], bytes.fromhex(sys.argv[2])
os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
os.chmod(os.path.dirname(path), 0o755)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
os.chmod(path, 0o777)
listener.listen(16)
print("LISTENING", flush=True)
while True:
    conn, _ = listener.accept()
    conn.settimeout(5)
    try:
        got = conn.recv(65536)
        print("GOT", len(got), flush=True)
        conn.sendall(reply)
    except OSError:
        pass
    conn.close()
"""


def test_a_socket_directory_taken_by_another_user_is_refused_and_ctl_checks_its_peer(
    daemons: Daemons,
) -> None:
    """Issue 12: another local user pre-creates ``/tmp/pounce-<uid>/`` (the default
    without XDG_RUNTIME_DIR) and answers ``ctl`` there in the daemon's place."""
    assert os.geteuid() == 0, "this test runs processes as two other users"
    intruder = other_user()
    nobody = pwd.getpwnam("nobody")
    directory = Path(f"/tmp/pounce-{nobody.pw_uid}")
    shutil.rmtree(directory, ignore_errors=True)
    python, env = run_as_nobody_python()
    for key in ("XDG_RUNTIME_DIR", "RUNTIME_DIRECTORY"):
        env.pop(key, None)
    fake_reply = encode_result({"state": "stopping", "now": False}).hex()
    fake = subprocess.Popen(
        [*python, "-c", FAKE_DAEMON, str(directory / "pounce.sock"), fake_reply],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
        user=intruder.pw_uid,
        group=intruder.pw_gid,
        extra_groups=[],
    )
    try:
        assert fake.stdout is not None
        assert fake.stdout.readline().strip() == "LISTENING"
        assert directory.stat().st_uid == intruder.pw_uid
        # The daemon, run as nobody with the default socket path, refuses the directory
        # (and serves on without a control socket, as when the default path is taken).
        port = free_port()
        d = daemons.spawn(
            [*python, "-m", "pounce", "serve", APP, "--host", "127.0.0.1", "--port", str(port)],
            port=port,
            ctl_socket=directory / "pounce.sock",
            full_env=env,
            user="nobody",
        )
        assert wait_for(lambda: status_of(port, "/") == 200, 30), d.output
        # ctl, run as nobody, finds the intruder's server at the default path: it checks
        # the server's uid before sending anything, and refuses.
        stop = subprocess.run(
            [*python, "-m", "pounce", "ctl", "stop"],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            extra_groups=[],
            timeout=60,
        )
        assert stop.returncode != 0, both(stop)
        assert f"of uid {intruder.pw_uid}" in stop.stderr, both(stop)
        assert "refusing to talk to it" in stop.stderr, both(stop)
        assert "stopping" not in stop.stdout, both(stop)
        assert d.proc.poll() is None, d.output
        assert status_of(port, "/") == 200
        assert d.wait_output(
            f"the control socket directory {directory} belongs to uid {intruder.pw_uid}", 30
        ), d.output
    finally:
        fake.kill()
        out, _ = fake.communicate(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
    # The intruder's server was reached (and answered nothing it was sent): ctl sent no byte.
    got = [line for line in out.splitlines() if line.startswith("GOT")]
    assert got and all(line == "GOT 0" for line in got), out


def test_out_of_descriptors_the_control_socket_sheds_connections_quietly(
    daemons: Daemons,
) -> None:
    """Below the connection cap, the supervisor runs out of descriptors: its reserve lets
    it accept and close what waits (no accept error storm), and it recovers."""
    d = daemons.fd(APP, workers=1)
    in_use = len(os.listdir(f"/proc/{d.pid}/fd"))
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (in_use + 16, in_use + 16))
    half_frame = encode_request("status")[:2]
    held: list[socket.socket] = []

    def connect_one() -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(str(d.ctl_socket))
        except BlockingIOError:
            s.close()
            return False
        held.append(s)
        with contextlib.suppress(OSError):
            s.sendall(half_frame)
        return True

    try:
        for _ in range(200):
            assert wait_for(connect_one, 30, 0.005), f"{len(held)} connected\n{d.output}"
        assert d.wait_output("out of file descriptors"), d.output
        # The half-sent frames time out, their descriptors come back, ctl answers again.
        d.wait_workers(1, timeout=30)
    finally:
        for s in held:
            s.close()
    assert d.proc.poll() is None, d.output
    assert "Traceback" not in d.output, d.output[-5000:]
