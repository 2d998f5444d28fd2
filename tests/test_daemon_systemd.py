"""systemd integration: socket activation by name through the real
``systemd-socket-activate``, and the sd_notify messages (READY, RELOADING with
MONOTONIC_USEC, STOPPING, STATUS, WATCHDOG) caught on a datagram socket."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time

import pytest

from helpers.daemon import Daemon, Daemons, NotifySocket, get, with_control
from helpers.procs import environ_of
from helpers.server import ROOT, TESTS, both, child_env, free_port, pounce_cmd, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
APP_LINE = 'app = "apps.daemon_app:app"\n'


def activate(
    daemons: Daemons,
    listens: list[tuple[str, int]],
    toml_text: str,
    *,
    setenv: dict[str, str] | None = None,
) -> Daemon:
    """``systemd-socket-activate -l ... --fdname=... -E ... python -m pounce serve -c CFG``.

    ``listens`` are (fd name, port) pairs, in the order the fds are passed.
    """
    d = daemons.tmpdir()
    sock = d / "ctl.sock"
    cfg = d / "pounce.toml"
    cfg.write_text(with_control(toml_text, sock))
    argv = [ACTIVATE]
    for _, port in listens:
        argv += ["-l", f"127.0.0.1:{port}"]
    argv.append("--fdname=" + ":".join(name for name, _ in listens))
    env = {
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "120",
        **(setenv or {}),
    }
    for key, value in env.items():
        argv += ["-E", f"{key}={value}"]
    argv += pounce_cmd("serve", "-c", str(cfg))
    daemon = daemons.spawn(argv, port=listens[0][1], ctl_socket=sock, full_env=child_env())
    assert daemon.wait_output("Listening on"), daemon.output
    assert wait_for(lambda: daemon.output.count("Listening on") == len(listens), 10)
    return daemon


def serve_toml(*names: str, workers: int = 2) -> str:
    text = APP_LINE + f"\n[server]\nworkers = {workers}\n"
    for name in names:
        text += f'\n[[listen]]\nname = "{name}"\n'
    return text


def test_socket_activation_by_name(daemons: Daemons) -> None:
    port = free_port()
    notify = NotifySocket(daemons.tmpdir())
    try:
        d = activate(
            daemons,
            [("http", port)],
            serve_toml("http"),
            setenv={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"},
        )
        # The first connection starts the daemon; it is served on the inherited socket.
        reply = get(port, "/", timeout=30)
        assert reply.status == 200, reply
        status = d.wait_workers(2)
        assert len(status["listeners"]) == 1, status
        assert d.proc.poll() is None
        # WATCHDOG_USEC set, WATCHDOG_PID unset: the supervisor pings the watchdog.
        assert wait_for(lambda: notify.count("WATCHDOG", "1") >= 3, 15), notify.raw()
        # Workers inherit none of LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*.
        for worker in status["workers"]:
            env = environ_of(worker["pid"])
            assert "PYTHONPATH" in env, env
            leaked = sorted(
                k for k in env if k == "NOTIFY_SOCKET" or k.startswith(("LISTEN_", "WATCHDOG_"))
            )
            assert leaked == [], leaked
        d.signal(signal.SIGTERM)
        assert d.wait_exit(20) == 0, d.output
    finally:
        notify.close()


@pytest.mark.parametrize("order", ["named-first", "named-second"])
def test_activated_sockets_are_matched_by_name_not_position(daemons: Daemons, order: str) -> None:
    http_port, other_port = free_port(), free_port()
    listens = [("http", http_port), ("other", other_port)]
    if order == "named-second":
        listens.reverse()
    d = activate(daemons, listens, serve_toml("http"))
    reply = get(http_port, "/", timeout=30)
    assert reply.status == 200, (reply, d.output)
    status = d.wait_workers(2)
    assert len(status["listeners"]) == 1, status
    for _ in range(10):
        assert get(http_port, "/").status == 200


def test_named_listener_without_a_socket_or_address_is_an_error(daemons: Daemons) -> None:
    # No socket activation at all.
    d, _ = daemons.config(serve_toml("api-nosuch-3391"), port=free_port())
    code = d.wait_exit(30)
    assert code is not None and code != 0, d.output
    assert "api-nosuch-3391" in d.output, d.output
    # Activated, but under another name.
    port = free_port()
    d2 = activate(daemons, [("http", port)], serve_toml("api-other-3392"))
    with contextlib.suppress(OSError):
        get(port, "/", timeout=5)  # starts the daemon, which must refuse to run
    code = d2.wait_exit(30)
    assert code is not None and code != 0, d2.output
    assert "api-other-3392" in d2.output, d2.output


def _events(messages: list[dict[str, str]]) -> list[str]:
    """The state changes in order: READY, RELOADING, STOPPING (STATUS and WATCHDOG aside)."""
    out = []
    for m in messages:
        for key in ("RELOADING", "READY", "STOPPING"):
            if m.get(key) == "1":
                out.append(key)
    return out


def test_sd_notify_sequence_across_start_reload_and_stop(daemons: Daemons) -> None:
    notify = NotifySocket(daemons.tmpdir())
    try:
        d = daemons.fd(
            "apps.daemon_app:app", workers=2, env={"NOTIFY_SOCKET": str(notify.path)}, wait=False
        )
        assert wait_for(lambda: notify.count("READY", "1") == 1, 30), (notify.raw(), d.output)
        # READY=1 only once the first generation is ready.
        status = d.status()
        assert status["generation"] == 1
        assert len(status["workers"]) == 2, status
        assert all(w["state"] == "ready" for w in status["workers"]), status
        assert _events(notify.snapshot()) == ["READY"], notify.raw()

        before = time.monotonic_ns() // 1000
        result = d.ctl("reload")
        after = time.monotonic_ns() // 1000
        assert result.returncode == 0, both(result) + d.output
        assert wait_for(lambda: notify.count("READY", "1") == 2, 15), notify.raw()
        reloading = [m for m in notify.snapshot() if m.get("RELOADING") == "1"]
        assert len(reloading) == 1, notify.raw()
        # RELOADING=1 and MONOTONIC_USEC in the same datagram, on CLOCK_MONOTONIC.
        assert "MONOTONIC_USEC" in reloading[0], notify.raw()
        usec = int(reloading[0]["MONOTONIC_USEC"])
        assert before <= usec <= after, (before, usec, after)

        d.signal(signal.SIGTERM)
        assert d.wait_exit(20) == 0, d.output
        assert wait_for(lambda: notify.count("STOPPING", "1") == 1, 5), notify.raw()
        messages = notify.snapshot()
        assert _events(messages) == ["READY", "RELOADING", "READY", "STOPPING"], notify.raw()
        statuses = [m["STATUS"] for m in messages if "STATUS" in m]
        assert any(re.fullmatch(r"gen 1: 2/2 workers ready", s) for s in statuses), statuses
        assert any(re.fullmatch(r"gen 2: 2/2 workers ready", s) for s in statuses), statuses
        # A STATUS line describing the ready generation comes no later than its READY=1.
        first_ready = next(i for i, m in enumerate(messages) if m.get("READY") == "1")
        assert any(
            m.get("STATUS") == "gen 1: 2/2 workers ready" for m in messages[: first_ready + 1]
        ), notify.raw()
    finally:
        notify.close()


def test_watchdog_pings_when_watchdog_pid_is_the_supervisor(daemons: Daemons) -> None:
    notify = NotifySocket(daemons.tmpdir())
    port = free_port()
    sock = daemons.tmpdir() / "ctl.sock"
    try:
        # WATCHDOG_PID must be the supervisor's own pid: the shell exports its pid, then
        # execs the daemon, which keeps that pid.
        argv = [
            "/bin/sh",
            "-c",
            'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"',
            "sh",
            sys.executable,
            "-m",
            "pounce",
            "serve",
            "apps.daemon_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--control-socket",
            str(sock),
        ]
        d = daemons.spawn(
            argv,
            port=port,
            ctl_socket=sock,
            env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"},
        )
        assert wait_for(lambda: notify.count("READY", "1") == 1, 30), (notify.raw(), d.output)
        assert environ_of(d.pid).get("WATCHDOG_PID") == str(d.pid)
        assert wait_for(lambda: notify.count("WATCHDOG", "1") >= 3, 15), notify.raw()
        status = d.wait_workers(1)
        env = environ_of(status["workers"][0]["pid"])
        assert not [k for k in env if k.startswith("WATCHDOG_") or k == "NOTIFY_SOCKET"], env
        assert get(port, "/").status == 200
    finally:
        notify.close()
