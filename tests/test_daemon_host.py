"""The supervisor as a host process: it reaps orphaned processes re-parented to it
(PID 1 in a container, or a child subreaper) and raises its open files limit."""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers.daemon import Daemon, Daemons, get, wait_started, with_control
from helpers.server import free_port, pounce_cmd, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


# Runs ARGV with the given process attributes (as a container runtime or a service
# manager would set them up): argv[1] "1" makes it a child subreaper, so orphans of its
# descendants are re-parented to it, as to PID 1; argv[2] a soft RLIMIT_NOFILE (0: keep).
EXEC_WITH = """
import ctypes, os, resource, sys
if sys.argv[1] == "1":
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
if int(sys.argv[2]):
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
os.execv(sys.argv[3], sys.argv[3:])
"""


def serve_with(
    daemons: Daemons, *, workers: int, subreaper: bool = False, nofile: int = 0
) -> Daemon:
    port = free_port()
    d = daemons.tmpdir()
    sock = d / "ctl.sock"
    cfg = d / "pounce.toml"
    toml = (
        f'app = "apps.daemon_app:app"\n\n[server]\nworkers = {workers}\n\n'
        f'[[listen]]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    cfg.write_text(with_control(toml, sock))
    argv = [sys.executable, "-c", EXEC_WITH, "1" if subreaper else "0", str(nofile)]
    daemon = daemons.spawn(
        [*argv, *pounce_cmd("serve", "-c", str(cfg))], port=port, ctl_socket=sock
    )
    wait_started(daemon, workers)
    return daemon


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name: [state, ppid, ...]; None once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def zombie_children(pid: int) -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None and fields[0] == "Z" and int(fields[1]) == pid:
                zombies.append(int(entry.name))
    return zombies


def test_orphaned_grandchildren_of_the_app_are_reaped(daemons: Daemons) -> None:
    d = serve_with(daemons, workers=2, subreaper=True)
    release = daemons.tmpdir() / "release"
    orphans = [
        get(d.port, f"/orphan?release={quote(str(release), safe='')}").json()["orphan"]
        for _ in range(3)
    ]
    for orphan in orphans:
        # Its parent exited: it was re-parented to the supervisor, as to PID 1.
        fields = stat_fields(orphan)
        assert fields is not None and int(fields[1]) == d.pid, (orphan, fields, d.output)
    release.write_text("go")
    # Reaped: not even a zombie is left in /proc.
    assert wait_for(lambda: all(stat_fields(p) is None for p in orphans), 20), (
        [stat_fields(p) for p in orphans],
        d.output,
    )
    assert zombie_children(d.pid) == []
    # Worker exits are still the supervisor's to classify: a killed worker is "signal".
    victim = d.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    status = d.wait_status(
        lambda s: (
            s["restarts"].get("signal") == 1
            and len(s["workers"]) == 2
            and all(w["state"] == "ready" for w in s["workers"])
        )
    )
    assert status["restarts"] == {"signal": 1}, status
    assert "killed by SIGKILL" in d.output, d.output
    assert zombie_children(d.pid) == []


def test_the_open_files_limit_is_raised_to_the_hard_limit(daemons: Daemons) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = int(Path("/proc/sys/fs/nr_open").read_text())
    assert hard > 256, f"the test needs a hard RLIMIT_NOFILE above 256, got {hard}"
    d = serve_with(daemons, workers=1, nofile=256)

    def soft_limit(pid: int) -> int:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise AssertionError(f"no open files limit for {pid}")

    assert soft_limit(d.pid) == hard
    assert soft_limit(d.worker_pids()[0]) == hard  # workers inherit it
    assert d.wait_output(f"open files limit (RLIMIT_NOFILE): raised from 256 to {hard}"), d.output


def test_reaper_leaves_workers_alone_and_reaps_other_zombies_on_second_sight() -> None:
    from pounce.supervisor.host import OrphanReaper

    children = {10, 11, 12}
    exited = {10, 11}
    reaped: list[int] = []

    def reap(pid: int) -> int:
        reaped.append(pid)
        children.discard(pid)
        exited.discard(pid)
        return -9

    reaper = OrphanReaper(
        lambda: [10, None], children=lambda: set(children), exited=exited.__contains__, reap=reap
    )
    assert reaper.sweep() == []  # first sight of 11: it may be a worker just started
    assert reaper.pending == {11}
    assert reaper.sweep() == [(11, -9)]
    assert reaped == [11] and reaper.pending == set() and reaper.reaped == 1
    exited.add(12)
    assert reaper.sweep() == [] and reaper.sweep() == [(12, -9)]
    assert 10 not in reaped  # the worker's exit is left to its own watcher
