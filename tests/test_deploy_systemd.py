"""The systemd units in systemd/: verified by systemd's own tools, and run the way
systemd runs them.

``systemd-analyze verify`` and ``systemd-analyze security`` check the unit files as
shipped (only the ExecStart binary is pointed at this venv's ``pounce``).  Then
``systemd-socket-activate`` opens the sockets the socket units describe, under their
FileDescriptorName=, and starts ``pounce serve`` with the example systemd/pounce.toml
(moved to temporary paths and free ports), with a stand-in NOTIFY_SOCKET and
WATCHDOG_USEC: every socket answers, READY=1 and WATCHDOG=1 arrive, the unit's
ExecReload= reloads, and the unit's KillSignal= stops it cleanly.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest

from helpers.daemon import NotifySocket
from helpers.deploy import (
    SYSTEMD_DIR,
    Proc,
    Unit,
    get,
    read_toml,
    read_unit,
    run,
    short_tmpdir,
    status,
    tool,
    write_toml,
)
from helpers.server import ROOT, both, free_port, pounce_cmd, wait_for

pytestmark = pytest.mark.timeout(90)

SERVICE = SYSTEMD_DIR / "pounce.service"
CONFIG = SYSTEMD_DIR / "pounce.toml"
INSTALLED_BINARY = "/usr/bin/pounce"
INSTALLED_CONFIG = "/etc/pounce/pounce.toml"


def socket_units() -> list[Unit]:
    """The socket units pounce.service takes its sockets from, in Sockets= order."""
    names = read_unit(SERVICE).words("Service", "Sockets")
    return [read_unit(SYSTEMD_DIR / name) for name in names]


def seconds(text: str) -> float:
    """A systemd time span ("40s", "1min 30s", "2m", "500ms") in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit or "s"]
    return total


def copy_units(dest: Path) -> list[Path]:
    """The shipped units in ``dest``, with ExecStart=/ExecReload= on this venv's pounce."""
    pounce = tool("pounce", venv=True)
    copied = []
    for path in sorted(SYSTEMD_DIR.glob("*.service")) + sorted(SYSTEMD_DIR.glob("*.socket")):
        target = dest / path.name
        target.write_text(path.read_text().replace(INSTALLED_BINARY, pounce))
        copied.append(target)
    return copied


# -- the unit files, checked by systemd --------------------------------------------------------


def test_every_socket_unit_is_wired_to_the_service() -> None:
    shipped = sorted(p.name for p in SYSTEMD_DIR.glob("*.socket"))
    assert sorted(u.path.name for u in socket_units()) == shipped
    service = read_unit(SERVICE)
    for unit in socket_units():
        assert unit.get("Socket", "Service") == "pounce.service", unit.path
        assert unit.get("Socket", "Accept") in (None, "no"), unit.path
        assert unit.path.name in service.words("Unit", "Requires"), unit.path
        assert unit.path.name in service.words("Unit", "After"), unit.path


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = copy_units(tmp_path)
    result = run(
        [tool("systemd-analyze"), "verify", "--man=no", "--generators=no", *map(str, units)],
        cwd=tmp_path,
    )
    # verify reports unknown keys, bad values and missing units as warnings on stderr
    # while still exiting 0: any output at all is a finding.
    assert result.returncode == 0, both(result)
    assert result.stderr.strip() == "", both(result)
    assert result.stdout.strip() == "", both(result)


def test_verify_does_catch_a_bad_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelled key is reported."""
    units = copy_units(tmp_path)
    service = next(u for u in units if u.name == "pounce.service")
    service.write_text(service.read_text().replace("KillMode=mixed", "KilMode=mixed"))
    result = run(
        [tool("systemd-analyze"), "verify", "--man=no", "--generators=no", *map(str, units)],
        cwd=tmp_path,
    )
    assert "KilMode" in result.stderr, both(result)


def test_service_hardening_exposure(tmp_path: Path) -> None:
    service = next(u for u in copy_units(tmp_path) if u.name == "pounce.service")
    # --threshold is on a 0-100 scale; the report shows it divided by 10: at most 2.0
    # ("OK"; 10.0 is an unhardened service).
    result = run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20", str(service)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, both(result)
    match = re.search(r"Overall exposure level for pounce.service: (\d+\.\d+)", result.stdout)
    assert match, both(result)
    assert float(match.group(1)) <= 2.0, both(result)


def test_service_settings_fit_the_daemon() -> None:
    service = read_unit(SERVICE)
    config = read_toml(CONFIG)

    # Type=notify with ExecReload= through `pounce ctl reload` (systemd 252 has no
    # notify-reload); both commands read the same config file.
    assert service.get("Service", "Type") == "notify"
    assert service.get("Service", "NotifyAccess") == "main"
    start = service.get("Service", "ExecStart")
    reload = service.get("Service", "ExecReload")
    assert start == f"{INSTALLED_BINARY} serve -c {INSTALLED_CONFIG}"
    assert reload == f"{INSTALLED_BINARY} ctl -c {INSTALLED_CONFIG} reload"

    # Stop: SIGTERM to the supervisor only; the stop timeout outlasts the drain.
    assert service.get("Service", "KillMode") == "mixed"
    assert service.get("Service", "KillSignal") in (None, "SIGTERM")
    stop_timeout = seconds(service.get("Service", "TimeoutStopSec") or "90s")
    assert stop_timeout >= config["shutdown"]["timeout"] + 10

    # Watchdog and restarts.
    assert seconds(service.get("Service", "WatchdogSec") or "0") >= 10
    assert service.get("Service", "Restart") == "on-failure"

    # The control socket lives in the RuntimeDirectory; the Unix listener does not (the
    # runtime directory is emptied when the service stops, the socket unit outlives it).
    runtime = Path("/run") / (service.get("Service", "RuntimeDirectory") or "")
    assert Path(config["control"]["socket"]).parent == runtime
    for unit in socket_units():
        listen = unit.get("Socket", "ListenStream") or ""
        if listen.startswith("/"):
            assert not Path(listen).is_relative_to(runtime), listen

    # Hardening.
    assert service.get("Service", "DynamicUser") == "yes" or service.get("Service", "User")
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "LockPersonality"):
        assert service.get("Service", key) == "yes", key
    assert service.get("Service", "ProtectSystem") == "strict"
    assert service.get("Service", "CapabilityBoundingSet") in ("", "CAP_NET_BIND_SERVICE")
    assert service.words("Service", "RestrictAddressFamilies") == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert "@system-service" in service.words("Service", "SystemCallFilter")


def test_units_document_themselves_and_raise_the_fd_limit() -> None:
    service = read_unit(SERVICE)
    units = [service, *socket_units()]
    for unit in units:
        docs = unit.words("Unit", "Documentation")
        assert docs, unit.path
        for uri in docs:
            assert uri.startswith(("https://", "http://", "file:/", "man:", "info:")), uri
    # Installed where the service's comment says, from the repository's docs/.
    for uri in service.words("Unit", "Documentation"):
        if uri.startswith("file:/usr/share/doc/pounce/"):
            assert (ROOT / "docs" / Path(uri).name).exists(), uri
            assert Path(uri).name in SERVICE.read_text().split("[Unit]")[0], uri

    # One descriptor per connection: far above systemd's default soft limit of 1024,
    # the same figure as soft and hard limit (Pounce raises its soft limit to the hard).
    limit = service.get("Service", "LimitNOFILE")
    assert limit is not None
    soft, _, hard = limit.partition(":")
    assert int(soft) >= 65536 and int(hard or soft) >= int(soft), limit


def test_no_socket_unit_hard_codes_a_group() -> None:
    """Distributions name the proxy's group differently (www-data, nginx): the Unix socket
    unit shows the line commented out, for the operator to set."""
    for unit in socket_units():
        assert unit.get("Socket", "SocketGroup") is None, unit.path
    assert "\n#SocketGroup=www-data\n" in (SYSTEMD_DIR / "pounce-uds.socket").read_text()


def test_socket_names_match_the_config() -> None:
    config = read_toml(CONFIG)
    named = [entry["name"] for entry in config["listen"]]
    fd_names = [unit.get("Socket", "FileDescriptorName") for unit in socket_units()]
    assert sorted(named) == sorted(fd_names)
    # Socket-activated only: no entry has an address of its own to fall back on.
    assert all(set(entry) == {"name"} for entry in config["listen"]), config["listen"]


def test_example_config_passes_pounce_check() -> None:
    result = run(pounce_cmd("check", "-c", str(CONFIG)))
    assert result.returncode == 0, both(result)


# -- running it the way the units do ---------------------------------------------------------


def activation_argv(config: Path, listens: list[tuple[str, str]], env: dict[str, str]) -> list[str]:
    """``systemd-socket-activate -l ADDR ... --fdname=A:B -E K=V ... pounce serve -c CFG``."""
    argv = [tool("systemd-socket-activate")]
    for _, address in listens:
        argv += ["-l", address]
    argv.append("--fdname=" + ":".join(name for name, _ in listens))
    for key, value in env.items():
        argv += ["-E", f"{key}={value}"]
    return argv + pounce_cmd("serve", "-c", str(config))


@pytest.mark.slow
def test_socket_activation_as_the_units_start_it() -> None:
    tmp = short_tmpdir()
    notify = NotifySocket(tmp)
    try:
        _run_socket_activated(tmp, notify)
    finally:
        notify.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _run_socket_activated(tmp: Path, notify: NotifySocket) -> None:
    service = read_unit(SERVICE)
    # The sockets of the socket units, moved to a free port and a temporary path.
    listens: list[tuple[str, str]] = []
    tcp_port, uds_path = 0, ""
    for unit in socket_units():
        name = unit.get("Socket", "FileDescriptorName") or ""
        address = unit.get("Socket", "ListenStream") or ""
        if address.startswith("/"):
            uds_path = str(tmp / Path(address).name)
            listens.append((name, uds_path))
        else:
            assert re.fullmatch(r"(\[::\]:)?\d+", address), address
            tcp_port = free_port()
            listens.append((name, f"127.0.0.1:{tcp_port}"))
    assert tcp_port and uds_path, listens

    # The example config, with its control socket and admin port moved.
    config = read_toml(CONFIG)
    runtime = tmp / "run"
    runtime.mkdir()
    config["control"]["socket"] = str(runtime / "pounce.sock")
    admin_port = free_port()
    config["admin"]["port"] = admin_port
    cfg = write_toml(tmp / "pounce.toml", config)

    # What systemd gives the service (WatchdogSec= shortened to keep the test quick).
    env = {
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "1000000",
        "RUNTIME_DIRECTORY": str(runtime),
    }
    proc = Proc.start(activation_argv(cfg, listens, env))
    try:
        # systemd-socket-activate listens first and starts the service on the first
        # connection, as systemd does for a socket unit.
        assert wait_for(lambda: proc.output.count("Listening on") == len(listens), 10), proc.output

        reply = get(f"http://127.0.0.1:{tcp_port}/", timeout=30)
        assert reply.status_code == 200, (reply, proc.output)
        assert reply.text == "Hello, world!\n"
        reply = get("http://localhost/json", uds=uds_path)
        assert reply.status_code == 200, (reply, proc.output)
        assert reply.json() == {"message": "Hello, world!"}

        admin = f"http://127.0.0.1:{admin_port}"
        assert wait_for(lambda: status(admin + "/health/ready") == 200, 30), proc.output
        assert get(admin + "/health/live").status_code == 200
        metrics = get(admin + "/metrics")
        assert metrics.status_code == 200
        assert "http_requests_total" in metrics.text

        # READY=1 once the generation is up; the watchdog is fed.
        assert wait_for(lambda: notify.count("READY") == 1, 30), notify.snapshot()
        assert wait_for(lambda: notify.count("WATCHDOG") >= 2, 15), notify.snapshot()

        # The listeners are exactly the passed sockets.
        ctl = pounce_cmd("ctl", "-c", str(cfg))
        result = run([*ctl, "status", "--json"])
        assert result.returncode == 0, both(result)
        state = json.loads(result.stdout)
        assert sorted(state["listeners"]) == sorted(
            [f"http://127.0.0.1:{tcp_port}", f"unix:{uds_path}"]
        ), state
        assert len(state["workers"]) == config["server"]["workers"], state

        # ExecReload=, as written in the unit.
        reload_argv = (service.get("Service", "ExecReload") or "").split()
        assert reload_argv[0] == INSTALLED_BINARY
        reload_argv = [str(cfg) if word == INSTALLED_CONFIG else word for word in reload_argv[1:]]
        result = run(pounce_cmd(*reload_argv))
        assert result.returncode == 0, both(result) + proc.output
        assert "reloaded" in result.stdout, both(result)
        assert wait_for(lambda: notify.count("READY") == 2, 15), notify.snapshot()
        reloading = [m for m in notify.snapshot() if m.get("RELOADING") == "1"]
        assert len(reloading) == 1 and "MONOTONIC_USEC" in reloading[0], notify.snapshot()
        assert get(f"http://127.0.0.1:{tcp_port}/").status_code == 200
        assert get("http://localhost/", uds=uds_path).status_code == 200

        # KillSignal= (SIGTERM): a clean exit within TimeoutStopSec=.
        stop_timeout = seconds(service.get("Service", "TimeoutStopSec") or "90s")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(stop_timeout) == 0, proc.output
        assert wait_for(lambda: notify.count("STOPPING") == 1, 5), notify.snapshot()
        # The socket file belongs to the socket unit, not to Pounce: it stays.
        assert Path(uds_path).exists()
    finally:
        proc.stop()
