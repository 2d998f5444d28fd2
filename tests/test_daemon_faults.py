"""Faults of the supervisor itself: a worker that cannot be started, a burst of SIGHUPs.

A spawn failure is made real: the daemon runs on an interpreter reached through a
symlink (``sys.executable``), and the symlink is taken away while it runs, so starting a
worker process fails in the supervisor (as a fork under a pids limit or EMFILE would).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers.daemon import Daemon, Daemons, get, labelled, scrape, wait_started
from helpers.server import child_env, daemon_env, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


APP = "apps.daemon_app:app"
NEVER_RETRIEVED = "exception was never retrieved"


def vanishing_python(where: Path) -> Path:
    """A virtualenv whose interpreter is a symlink we can remove and put back."""
    real_venv = Path(sys.prefix)
    (where / "bin").mkdir(parents=True)
    shutil.copy(real_venv / "pyvenv.cfg", where / "pyvenv.cfg")
    purelib = Path(sysconfig.get_paths()["purelib"])
    target = where / purelib.relative_to(real_venv)
    target.parent.mkdir(parents=True)
    target.symlink_to(purelib)
    python = where / "bin" / "python3"
    python.symlink_to(os.path.realpath(sys.executable))
    return python


def serve_on(daemons: Daemons, python: Path, *args: str, workers: int = 1) -> Daemon:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    ctl = daemons.tmpdir() / "ctl.sock"
    argv = [str(python), "-m", "pounce", "serve", APP, "--fd", str(sock.fileno())]
    argv += ["--workers", str(workers), "--control-socket", str(ctl), *args]
    try:
        d = daemons.spawn(
            argv,
            port=sock.getsockname()[1],
            ctl_socket=ctl,
            full_env=child_env(daemon_env()),
            pass_fds=(sock.fileno(),),
        )
    finally:
        sock.close()
    wait_started(d, workers)
    return d


def test_a_worker_that_cannot_be_started_leaves_no_ghost(daemons: Daemons) -> None:
    python = vanishing_python(daemons.tmpdir() / "venv")
    admin = free_port()
    d = serve_on(daemons, python, "--admin-port", str(admin), "--max-restarts", "100")
    assert get(admin, "/health/ready").status == 200
    [worker] = d.status()["workers"]

    python.rename(python.with_name("gone"))  # from now on every spawn fails
    os.kill(worker["pid"], signal.SIGKILL)
    status = d.wait_status(lambda s: s["restarts"].get("spawn_failure", 0) >= 2)
    # No handle left behind as "booting" with nothing behind it.
    assert [w for w in status["workers"] if w["state"] == "booting"] == [], status
    # Out of rotation, and a supervisor that cannot spawn is not live.
    assert get(admin, "/health/ready").status == 503
    live = get(admin, "/health/live")
    assert live.status == 503 and "cannot start workers" in live.text, live
    failures = labelled(scrape(admin), "pounce_worker_restarts_total", "reason")
    assert failures.get("spawn_failure", 0) >= 2, failures
    assert "spawn failure: FileNotFoundError" in d.output, d.output

    # Once workers can be started again, the supervisor converges by itself.
    python.with_name("gone").rename(python)
    d.wait_status(lambda s: [w["state"] for w in s["workers"]] == ["ready"], timeout=30)
    assert wait_for(lambda: get(admin, "/health/ready").status == 200, 10)
    assert get(admin, "/health/live").status == 200
    assert get(d.port, "/").status == 200

    # A graceful stop has no ghost to wait for.
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=15) == 0, d.output
    assert NEVER_RETRIEVED not in d.output, d.output


def test_readiness_needs_min_ready_workers(daemons: Daemons) -> None:
    python = vanishing_python(daemons.tmpdir() / "venv")
    admin = free_port()
    args = ("--admin-port", str(admin), "--max-restarts", "100")
    d = serve_on(daemons, python, *args, "--min-ready", "2", "--health-public", workers=2)
    assert get(admin, "/health/ready").status == 200
    python.rename(python.with_name("gone"))
    victim = d.status()["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    d.wait_status(lambda s: s["restarts"].get("spawn_failure", 0) >= 1)
    # One worker still serves, but fewer than workers.min_ready are ready.
    assert get(d.port, "/").status == 200
    assert get(admin, "/health/ready").status == 503
    # The surviving worker answers the opted-in public health paths the same way.
    assert wait_for(lambda: get(d.port, "/health/ready").status == 503, 10)
    assert wait_for(lambda: get(d.port, "/health/live").status == 503, 10)
    assert "cannot start workers" in get(d.port, "/health/live").text
    python.with_name("gone").rename(python)
    d.wait_status(lambda s: [w["state"] for w in s["workers"]] == ["ready", "ready"], timeout=30)
    assert wait_for(lambda: get(admin, "/health/ready").status == 200, 10)
    assert wait_for(lambda: get(d.port, "/health/live").status == 200, 10)


def test_sighups_during_a_reload_fold_into_one_following_reload(daemons: Daemons) -> None:
    release = daemons.tmpdir() / "release"
    release.touch()
    env = {"ASGI_TEST_RELEASE": str(release)}
    d = daemons.fd("apps.asgi_lifespan:slow_startup", workers=1, env=env)
    release.unlink()  # the next generation's startup waits until it is back
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: d.output.count("SLOW-STARTUP-WAITING") == 2, 20), d.output
    # While that reload waits, each further SIGHUP is taken at once (the signal loop
    # is not held up by the reload) and folds into the one reload queued behind it.
    for n in range(2, 12):
        d.signal(signal.SIGHUP)
        assert wait_for(lambda n=n: d.output.count("SIGHUP: reloading") == n, 10), d.output
    release.touch()
    status = d.wait_status(
        lambda s: s["reloads"]["success"] >= 2 and s["state"] == "running", timeout=60
    )
    assert status["reloads"] == {"success": 2, "failed": 0}, status
    assert status["generation"] == 3, status
    assert d.output.count("reload done") == 11, d.output  # each signal saw its outcome
    assert NEVER_RETRIEVED not in d.output, d.output
