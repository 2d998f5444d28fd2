"""What an operator's environment does to a real ``pounce serve``: Kubernetes Service
links, POUNCE_HOST/POUNCE_PORT and PORT/WEB_CONCURRENCY next to a config file and
flags, and socket modes written in decimal."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from helpers.asgi import Launcher, scope_of, wait_tcp
from helpers.daemon import Daemons
from helpers.server import both, free_port, run_pounce

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


APP = "apps.asgi_scope:app"
#: A second loopback address: a listener bound to 127.0.0.1 does not answer on it.
OTHER_HOST = "127.0.0.2"

# What the kubelet injects for a Service named "pounce-http" (and "pounce-admin") in the
# namespace, unless the pod sets enableServiceLinks: false.
SERVICE_LINKS = {
    "POUNCE_HTTP_PORT": "tcp://10.96.0.12:80",
    "POUNCE_HTTP_PORT_80_TCP": "tcp://10.96.0.12:80",
    "POUNCE_HTTP_PORT_80_TCP_ADDR": "10.96.0.12",
    "POUNCE_HTTP_SERVICE_HOST": "10.96.0.12",
    "POUNCE_ADMIN_PORT": "tcp://10.96.0.13:9100",
}


def server_address(host: str, port: int) -> list[object]:
    with httpx.Client(timeout=10) as client:
        return list(scope_of(client.get(f"http://{host}:{port}/"))["scope"]["server"])


def test_kubernetes_service_links_warn_once_and_serve(daemons: Daemons) -> None:
    d = daemons.fd(APP, workers=1, env=SERVICE_LINKS)
    assert d.proc.poll() is None, d.output
    result = d.ctl("reload")  # the config is read again: no second warning
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(1, generation=2)
    warnings = [line for line in d.output.splitlines() if line.startswith("pounce: warning:")]
    assert warnings == [
        'pounce: warning: POUNCE_ADMIN_PORT: ignored, "tcp://10.96.0.13:9100" is a Kubernetes '
        "Service link, not a setting (set enableServiceLinks: false in the pod spec)",
        'pounce: warning: POUNCE_HTTP_PORT: unknown variable (ignored), "tcp://10.96.0.12:80" '
        "is a Kubernetes Service link",
        "pounce: warning: POUNCE_HTTP_PORT_80_TCP: unknown variable (ignored), "
        '"tcp://10.96.0.12:80" is a Kubernetes Service link',
        "pounce: warning: POUNCE_HTTP_PORT_80_TCP_ADDR: unknown variable (ignored), "
        "did you mean POUNCE_HTTP_PARSER?",
        "pounce: warning: POUNCE_HTTP_SERVICE_HOST: unknown variable (ignored), "
        "did you mean POUNCE_HTTP_SERVER_TIMING?",
    ]


def test_bad_value_of_a_known_variable_still_stops_the_start() -> None:
    result = run_pounce("serve", APP, env={"POUNCE_HTTP_MAX_BODY_SIZE": "lots", **SERVICE_LINKS})
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'POUNCE_HTTP_MAX_BODY_SIZE: expected an integer, got "lots"' in result.stderr


def test_port_flag_keeps_the_config_files_host(launch: Launcher, tmp_path: Path) -> None:
    port = free_port(OTHER_HOST)
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(f'app = "{APP}"\n[[listen]]\nhost = "{OTHER_HOST}"\nport = 1\n')
    server = launch.spawn("serve", "-c", str(cfg), "--port", str(port))
    wait_tcp(server, OTHER_HOST, port)
    assert server_address(OTHER_HOST, port) == [OTHER_HOST, port]


def test_address_precedence_toml_env_flags(launch: Launcher, tmp_path: Path) -> None:
    # File: 127.0.0.1:<file port>; POUNCE_HOST moves the host, POUNCE_PORT the port;
    # --port beats POUNCE_PORT, and PORT loses to all of them.
    file_port, env_port, flag_port = free_port(), free_port(), free_port(OTHER_HOST)
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(f'app = "{APP}"\n[[listen]]\nhost = "127.0.0.1"\nport = {file_port}\n')
    env = {"POUNCE_HOST": OTHER_HOST, "POUNCE_PORT": str(env_port), "PORT": str(file_port)}
    server = launch.spawn("serve", "-c", str(cfg), "--port", str(flag_port), env=env)
    wait_tcp(server, OTHER_HOST, flag_port)
    assert server_address(OTHER_HOST, flag_port) == [OTHER_HOST, flag_port]


def test_platform_port_and_web_concurrency(launch: Launcher) -> None:
    port = free_port()
    server = launch.spawn("serve", APP, env={"PORT": str(port), "WEB_CONCURRENCY": "2"})
    wait_tcp(server, "127.0.0.1", port)
    assert server_address("127.0.0.1", port) == ["127.0.0.1", port]
    assert server.wait_output("generation 1 ready: 2 worker(s)"), server.output


def test_decimal_socket_mode_is_rejected_with_a_hint(tmp_path: Path) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(f'app = "{APP}"\n[[listen]]\npath = "{tmp_path}/p.sock"\nmode = 660\n')
    for command in (("check", "-c", str(cfg)), ("serve", "-c", str(cfg))):
        result = run_pounce(*command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert (
            "listen[0].mode: must be 0o0-0o777, got 0o1224 (decimal 660); write 0o660"
            in result.stderr
        )
        assert not (tmp_path / "p.sock").exists()


def test_unknown_variable_is_not_fatal_for_check(tmp_path: Path) -> None:
    result = run_pounce("check", APP, env={"POUNCE_HTTP_PORT": "tcp://10.96.0.12:80"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pounce: warning: POUNCE_HTTP_PORT: unknown variable (ignored)" in result.stderr
