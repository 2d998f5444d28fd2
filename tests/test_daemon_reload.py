"""Reload: a new generation with a fresh import, the old one drained, failures
rejected while the old generation keeps serving, listener changes, and zero
failed requests under keep-alive load across 20 reloads in a row."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from helpers.daemon import Daemons, Load, answers, app_env, get, popen_ctl, write_versioned_app
from helpers.procs import alive
from helpers.server import both, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def version_of(port: int) -> str:
    return str(get(port, "/").json()["version"])


def all_versions(port: int, version: str, n: int = 20) -> bool:
    return all(version_of(port) == version for _ in range(n))


def becomes(port: int, version: str) -> bool:
    """After a reload, responses become ``version`` (every one of 20 in a row)."""
    return wait_for(lambda: all_versions(port, version), 10)


def test_reload_imports_the_app_afresh(daemons: Daemons) -> None:
    appdir = daemons.tmpdir()
    write_versioned_app(appdir, "reload_fresh_app", "v1")
    d = daemons.fd("reload_fresh_app:app", workers=2, env=app_env(appdir))
    assert all_versions(d.port, "v1")
    old_pids = set(d.worker_pids())

    write_versioned_app(appdir, "reload_fresh_app", "v2")
    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    status = d.wait_workers(2, generation=2)
    assert not old_pids & {w["pid"] for w in status["workers"]}
    assert becomes(d.port, "v2"), d.output
    assert wait_for(lambda: not any(alive(p) for p in old_pids), 15), "old generation not stopped"

    # SIGHUP does the same.
    write_versioned_app(appdir, "reload_fresh_app", "v3")
    d.signal(signal.SIGHUP)
    d.wait_workers(2, generation=3)
    assert becomes(d.port, "v3"), d.output


def test_invalid_config_is_rejected_and_the_old_generation_keeps_serving(
    daemons: Daemons,
) -> None:
    appdir = daemons.tmpdir()
    write_versioned_app(appdir, "reload_cfg_app", "v1")
    cfg = appdir / "pounce.toml"
    cfg.write_text("[server]\nworkers = 2\n")
    d = daemons.fd("reload_cfg_app:app", "-c", str(cfg), workers=2, env=app_env(appdir))
    pids = set(d.worker_pids())

    write_versioned_app(appdir, "reload_cfg_app", "v2")
    cfg.write_text("[server]\nworkers = 2\nbogus_key_4471 = 1\n\n[http]\nkeep_alive_timeout = -3\n")
    result = d.ctl("reload")
    assert result.returncode == 1, both(result)
    text = result.stdout + result.stderr
    assert "bogus_key_4471" in text, text  # every error is reported, with its key
    assert "keep_alive_timeout" in text, text
    status = d.status()
    assert status["generation"] == 1
    assert {w["pid"] for w in status["workers"]} == pids
    assert all_versions(d.port, "v1")

    # SIGHUP with the bad config changes nothing either.
    d.signal(signal.SIGHUP)
    assert d.wait_output("bogus_key_4471"), d.output  # the errors are logged
    assert d.status()["generation"] == 1
    assert all_versions(d.port, "v1")

    cfg.write_text("[server]\nworkers = 2\n")
    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(2, generation=2)
    assert becomes(d.port, "v2"), d.output


@pytest.mark.parametrize("how", ["import_error", "lifespan_failure", "startup_timeout"])
def test_failed_new_generation_is_stopped_and_the_old_one_keeps_serving(
    daemons: Daemons, how: str
) -> None:
    appdir = daemons.tmpdir()
    module = f"reload_fail_{how}"
    write_versioned_app(appdir, module, "v1")
    timeout = "2" if how == "startup_timeout" else "20"
    d = daemons.fd(f"{module}:app", "--reload-timeout", timeout, workers=2, env=app_env(appdir))
    old_pids = set(d.worker_pids())
    cause = f"daemon-reload-cause-{how}-8812"
    if how == "import_error":
        write_versioned_app(appdir, module, "v2", import_error=cause)
    elif how == "lifespan_failure":
        write_versioned_app(appdir, module, "v2", lifespan_fail=cause)
    else:
        write_versioned_app(appdir, module, "v2", startup_hang=True)

    result = d.ctl("reload")
    assert result.returncode != 0, both(result)
    if how == "startup_timeout":
        assert re.search(r"time", result.stdout + result.stderr, re.I), both(result)
    else:
        assert cause in result.stdout + result.stderr, both(result)
    status = d.status()
    assert status["generation"] == 1, status
    assert {w["pid"] for w in status["workers"]} == old_pids
    assert all(w["state"] == "ready" for w in status["workers"]), status
    assert all_versions(d.port, "v1")
    # The failed generation's workers are gone.
    assert wait_for(lambda: set(d.worker_pids()) == old_pids, 10)

    # The failed generation's number is not reused: logs and metrics never name two
    # different generations 2.
    assert "generation 2 failed" in d.output, d.output
    write_versioned_app(appdir, module, "v3")
    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    assert "generation 3" in result.stdout, both(result)
    d.wait_workers(2, generation=3)
    assert becomes(d.port, "v3"), d.output


def test_request_in_flight_finishes_on_the_old_generation(daemons: Daemons) -> None:
    d = daemons.fd("apps.daemon_app:app", "--shutdown-timeout", "60", workers=2)
    release = daemons.tmpdir() / "release"
    old_pids = set(d.worker_pids())
    slow = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        slow.sendall(
            f"GET /slow?id=r1&limit=60&release={quote(str(release), safe='')} HTTP/1.1\r\n"
            "Host: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert d.wait_output("SLOW-STARTED-r1"), d.output
        reload = popen_ctl(d.ctl_socket, "reload")
        try:
            # The old generation is still draining: its workers may still be listed.
            d.wait_status(
                lambda s: (
                    s["generation"] == 2
                    and sum(
                        1 for w in s["workers"] if w["generation"] == 2 and w["state"] == "ready"
                    )
                    == 2
                )
            )
            assert reload.poll() in (None, 0)
            # New requests go to the new generation while the old one finishes.
            assert wait_for(
                lambda: all(get(d.port, "/").json()["pid"] not in old_pids for _ in range(10)), 10
            ), d.output
            release.write_text("go")
            data = b""
            while chunk := slow.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data
            assert b'"slow": "done"' in data, data
            assert reload.wait(30) == 0, reload.communicate()[0]
        finally:
            if reload.poll() is None:
                reload.kill()
            reload.communicate()
    finally:
        slow.close()
    assert wait_for(lambda: not any(alive(p) for p in old_pids), 15), "old generation not stopped"


def test_listeners_added_and_removed_on_reload(daemons: Daemons) -> None:
    p1, p2 = free_port(), free_port()
    base = 'app = "apps.daemon_app:app"\n\n[server]\nworkers = 2\n'
    one = base + f'\n[[listen]]\nhost = "127.0.0.1"\nport = {p1}\n'
    two = one + f'\n[[listen]]\nhost = "127.0.0.1"\nport = {p2}\n'
    only_second = base + f'\n[[listen]]\nhost = "127.0.0.1"\nport = {p2}\n'
    d, cfg = daemons.config(one, port=p1)
    assert wait_for(lambda: d.ctl_socket.exists(), 20), d.output
    d.wait_workers(2, generation=1)
    assert get(p1, "/").status == 200
    assert not answers(p2)

    cfg.write_text(_keep_control(cfg, two))
    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(2, generation=2)
    assert wait_for(lambda: answers(p2), 10), d.output
    assert get(p2, "/").status == 200
    assert get(p1, "/").status == 200

    cfg.write_text(_keep_control(cfg, only_second))
    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(2, generation=3)
    assert get(p2, "/").status == 200
    assert wait_for(lambda: not answers(p1), 10), "the removed listener still answers"


def _keep_control(cfg: Path, text: str) -> str:
    control = cfg.read_text().split("[control]", 1)[1]
    return f"{text.rstrip()}\n\n[control]{control}"


def test_twenty_reloads_under_keepalive_load_fail_no_request(daemons: Daemons) -> None:
    d = daemons.fd("apps.daemon_app:app", "--shutdown-timeout", "20", workers=2)
    load = Load(d.port, threads=8, keepalive=True).start()
    try:
        assert wait_for(lambda: load.ok > 50, 15), load.summary()
        for n in range(2, 22):
            result = d.ctl("reload")
            assert result.returncode == 0, both(result) + d.output
            d.wait_workers(2, generation=n)
            # Every reload happens while requests are flowing.
            seen = load.ok
            assert wait_for(lambda s=seen: load.ok > s + 10, 15), load.summary()
    finally:
        load.stop()
    assert load.total > 0
    assert load.ok > 0
    assert load.failures == 0, load.summary()
    assert load.errors == 0, load.summary()
    assert d.status()["generation"] == 21


def test_a_failed_reload_shows_the_apps_traceback_then_the_cause(daemons: Daemons) -> None:
    appdir = daemons.tmpdir()
    write_versioned_app(appdir, "reload_trace_app", "v1")
    d = daemons.fd("reload_trace_app:app", workers=1, env=app_env(appdir))
    cause = "reload-trace-cause-4417"
    write_versioned_app(appdir, "reload_trace_app", "v2", import_error=cause)
    result = d.ctl("reload")
    assert result.returncode == 1, both(result)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("pounce ctl: reload failed: generation 2 failed: "), both(result)
    assert result.stderr.count("Traceback (most recent call last):") == 1, both(result)
    trace = [line.strip() for line in lines[1:-1]]
    assert trace[0] == "Traceback (most recent call last):", both(result)
    assert any("reload_trace_app.py" in line and "<module>" in line for line in trace), trace
    assert trace[-1] == f"RuntimeError: {cause}", trace
    assert not any("importlib" in line or "/pounce/" in line for line in trace), trace
    # The one-line summary is last.
    assert lines[-1].strip() == (
        f'boot failure: importing "reload_trace_app" failed: RuntimeError: {cause}'
    ), both(result)
