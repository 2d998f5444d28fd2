"""The supervisor and its workers: any worker count, process and thread workers,
workers never outliving the supervisor, and what workers inherit."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from helpers.daemon import Daemons, NotifySocket, get, port_is_free, sample, scrape
from helpers.procs import alive, environ_of
from helpers.server import both, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


APP = "apps.daemon_app:app"


def test_one_worker_supports_ctl_reload_health_and_metrics(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--health-public", "--metrics-public", workers=1)
    status = d.status()
    assert status["generation"] == 1
    assert len(status["workers"]) == 1
    first_pid = status["workers"][0]["pid"]
    assert isinstance(first_pid, int) and first_pid != d.pid

    reply = get(d.port, "/")
    assert reply.status == 200 and reply.json()["pid"] == first_pid

    for path in ("/health/live", "/health/ready"):
        health = get(d.port, path)
        assert health.status == 200, (path, health)
        health.json()  # a JSON body
    before = scrape(d.port)
    assert sample(before, "pounce_generation") == 1

    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    status = d.wait_workers(1, generation=2)
    new_pid = status["workers"][0]["pid"]
    assert new_pid != first_pid
    assert wait_for(lambda: get(d.port, "/").json()["pid"] == new_pid, 10), d.output
    assert wait_for(lambda: sample(scrape(d.port), "pounce_generation") == 2, 10)
    assert wait_for(lambda: not alive(first_pid), 15), "old worker still running"


def test_thread_workers_serve_and_have_no_pids_of_their_own(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--worker-mode", "thread", workers=2)
    status = d.status()
    workers = status["workers"]
    assert len(workers) == 2
    for worker in workers:
        assert isinstance(worker.get("thread"), str) and worker["thread"], worker
        assert worker.get("pid") in (None, d.pid), worker
        assert worker["generation"] == 1 and worker["state"] == "ready"
    assert len({w["thread"] for w in workers}) == 2
    for _ in range(20):
        reply = get(d.port, "/")
        assert reply.status == 200, reply
        assert reply.json()["pid"] == d.pid  # served inside the supervisor process
    assert not [p for p in _descendants(d.pid) if alive(p)], "thread mode spawned processes"
    # Reload works the same with thread workers.
    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(2, generation=2)
    assert get(d.port, "/").status == 200


def _descendants(pid: int) -> list[int]:
    from helpers.procs import children_of

    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children_of(todo.pop())
        out += kids
        todo += kids
    return out


def test_default_worker_mode_is_processes_on_a_gil_build(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=2)
    status = d.status()
    pids = [w["pid"] for w in status["workers"]]
    assert all(isinstance(p, int) for p in pids), status
    assert len(set(pids)) == 2 and d.pid not in pids
    assert set(pids) <= set(_descendants(d.pid))


def test_workers_exit_when_the_supervisor_is_killed(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=3)
    pids = d.worker_pids()
    assert len(pids) == 3 and all(alive(p) for p in pids)
    assert get(d.port, "/").status == 200
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(10)
    assert wait_for(lambda: not any(alive(p) for p in pids), 15), [p for p in pids if alive(p)]
    assert wait_for(lambda: port_is_free(d.port), 10), "the port is still held after the kill"


def test_workers_do_not_inherit_systemd_variables(daemons: Daemons) -> None:
    notify = NotifySocket(daemons.tmpdir())
    try:
        d = daemons.fd(
            APP,
            workers=2,
            env={
                "NOTIFY_SOCKET": str(notify.path),
                "WATCHDOG_USEC": "30000000",
                "DAEMON_TEST_MARKER": "kept",
            },
        )
        for pid in d.worker_pids():
            env = environ_of(pid)
            assert env.get("DAEMON_TEST_MARKER") == "kept", env  # the rest is inherited
            leaked = sorted(
                k for k in env if k == "NOTIFY_SOCKET" or k.startswith(("LISTEN_", "WATCHDOG_"))
            )
            assert leaked == [], leaked
    finally:
        notify.close()


def _listening_inodes(port: int) -> list[int]:
    """Inodes of the TCP sockets listening on ``port`` (from /proc/net/tcp)."""
    inodes = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], int(fields[9])
        if state == "0A" and int(local.split(":")[1], 16) == port:
            inodes.append(inode)
    return inodes


def _socket_inodes_of(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def test_the_supervisor_opens_the_listening_socket_once_and_keeps_it(daemons: Daemons) -> None:
    port = free_port()
    d, _ = daemons.config(
        f'app = "{APP}"\n\n[server]\nworkers = 2\n\n[[listen]]\nhost = "127.0.0.1"\nport = {port}\n',
        port=port,
    )
    assert wait_for(lambda: d.ctl_socket.exists(), 20), d.output
    d.wait_workers(2, generation=1)
    inodes = _listening_inodes(port)
    assert len(inodes) == 1, inodes  # one socket, not one per worker
    assert inodes[0] in _socket_inodes_of(d.pid)  # held by the supervisor itself
    victim = d.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    d.wait_status(
        lambda s: victim not in {w["pid"] for w in s["workers"]} and len(s["workers"]) == 2
    )
    for generation in (2, 3):
        result = d.ctl("reload")
        assert result.returncode == 0, both(result) + d.output
        d.wait_workers(2, generation=generation)
    assert _listening_inodes(port) == inodes, "the listening socket was replaced"
    assert inodes[0] in _socket_inodes_of(d.pid)
    assert get(port, "/").status == 200
