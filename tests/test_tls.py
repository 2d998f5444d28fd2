"""TLS listeners: https scope and the ASGI TLS extension, mTLS, TLS 1.2 minimum,
ALPN, a plain listener next to a TLS one, `pounce check` errors for bad cert/key
files, and a reload serving replaced certificate files."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from helpers.server import (
    Server,
    daemon_env,
    free_port,
    pounce_cmd,
    run_pounce,
    spawn,
    wait_for,
)
from helpers.tls import APP, Pki, issue, make_ca, tls_ready

pytestmark = pytest.mark.slow


def _serve_tls(serve: Callable[..., Server], pki: Pki, *args: str, **env: str) -> Server:
    server = serve(APP, *args, env=pki.env(**env), ready=False)
    tls_ready(server, pki)
    return server


def _url(server: Server, path: str) -> str:
    return f"https://localhost:{server.port}{path}"


def _scope(server: Server, pki: Pki, *, client_cert: bool = False) -> dict[str, object]:
    ctx = pki.client_context(client_cert=client_cert)
    with httpx.Client(verify=ctx) as client:
        reply = client.get(_url(server, "/scope"))
    assert reply.status_code == 200
    return dict(reply.json())


def test_https_scope_and_tls_extension(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    info = _scope(server, pki)
    assert info["scheme"] == "https"
    assert info["http_version"] == "1.1"
    tls = info["tls"]
    assert isinstance(tls, dict)
    assert tls["client_cert_chain"] == []
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert tls["cipher_name"]


def test_alpn_offers_h2_then_http11(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = pki.client_context(alpn=offer)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            assert s.selected_alpn_protocol() == chosen


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(
    serve: Callable[..., Server], pki: Pki, version: ssl.TLSVersion
) -> None:
    server = _serve_tls(serve, pki)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1 is
        ctx.minimum_version = version
        ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(raw)


def test_minimum_version_13(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki, POUNCE_TLS_MINIMUM_VERSION="1.3")
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")


def test_mtls_required(serve: Callable[..., Server], pki: Pki) -> None:
    server = serve(
        APP,
        env=pki.env(POUNCE_TLS_CLIENT_AUTH="required", POUNCE_TLS_CA_CERTS=str(pki.ca)),
        ready=False,
    )

    def with_cert() -> bool:
        try:
            return _scope(server, pki, client_cert=True)["scheme"] == "https"
        except httpx.HTTPError:
            return False

    assert wait_for(with_cert, 15), server.output
    info = _scope(server, pki, client_cert=True)
    tls = info["tls"]
    assert isinstance(tls, dict)
    chain = tls["client_cert_chain"]
    assert isinstance(chain, list) and len(chain) == 1
    assert chain[0].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_name"] == "CN=pounce-client"
    with pytest.raises(httpx.HTTPError):
        _scope(server, pki, client_cert=False)


def test_mtls_optional(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(
        serve, pki, POUNCE_TLS_CLIENT_AUTH="optional", POUNCE_TLS_CA_CERTS=str(pki.ca)
    )
    without = _scope(server, pki)["tls"]
    assert isinstance(without, dict) and without["client_cert_chain"] == []
    with_cert = _scope(server, pki, client_cert=True)["tls"]
    assert isinstance(with_cert, dict) and len(with_cert["client_cert_chain"]) == 1


def _client_cert_outcome(server: Server, pki: Pki) -> str | None:
    """One request with the client certificate: "ok", the TLS error, "closed" (the server
    ended the connection without an answer), or None (not up yet)."""
    try:
        ctx = pki.client_context(client_cert=True)
        with (
            socket.create_connection((server.host, server.port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = tls.recv(16)
            return "ok" if head.startswith(b"HTTP/1.1 200") else "closed" if not head else None
    except ssl.SSLError as exc:
        return str(exc)
    except OSError:
        return None


def _system_store_server(serve: Callable[..., Server], pki: Pki, store: Path) -> Server:
    # The "system store" is what OpenSSL is told it is: SSL_CERT_FILE.
    env = pki.env(
        POUNCE_TLS_CLIENT_AUTH="required",
        POUNCE_TLS_USE_SYSTEM_STORE="true",
        SSL_CERT_FILE=str(store),
    )
    return serve(APP, env=env, ready=False)


def test_mtls_against_the_system_store(serve: Callable[..., Server], pki: Pki) -> None:
    server = _system_store_server(serve, pki, pki.ca)
    outcome: list[str | None] = []
    assert wait_for(lambda: outcome.append(_client_cert_outcome(server, pki)) or outcome[-1], 15)
    assert outcome[-1] == "ok", server.output
    info = _scope(server, pki, client_cert=True)
    tls = info["tls"]
    assert isinstance(tls, dict) and tls["client_cert_name"] == "CN=pounce-client"
    with pytest.raises(httpx.HTTPError):
        _scope(server, pki, client_cert=False)


def test_mtls_system_store_refuses_a_ca_it_does_not_hold(
    serve: Callable[..., Server], pki: Pki, tmp_path: Path
) -> None:
    _, _, other_ca = make_ca(tmp_path, "Some Other CA")
    server = _system_store_server(serve, pki, other_ca)
    outcome: list[str | None] = []
    assert wait_for(lambda: outcome.append(_client_cert_outcome(server, pki)) or outcome[-1], 15)
    # (TLS 1.3: the client's handshake is done before the server checks its certificate;
    # the server then drops the connection, with or without the unknown_ca alert.)
    refused = outcome[-1] == "closed" or "UNKNOWN_CA" in str(outcome[-1]).upper()
    assert refused, (outcome[-1], server.output)
    assert server.proc.poll() is None
    with pytest.raises(httpx.HTTPError):
        _scope(server, pki, client_cert=True)


def test_plain_and_tls_listeners_side_by_side(
    serve: Callable[..., Server], pki: Pki, tmp_path: Path
) -> None:
    plain, secure = free_port(), free_port()
    cfg = tmp_path / "pounce.toml"
    cfg.write_text(
        f"[[listen]]\nport = {plain}\ntls = false\n\n[[listen]]\nport = {secure}\n\n"
        f'[tls]\ncertfile = "{pki.cert}"\nkeyfile = "{pki.key}"\n'
    )
    server = spawn(pounce_cmd("serve", APP, "-c", str(cfg)), port=secure, env=daemon_env())
    try:
        tls_ready(server, pki)
        assert _scope(server, pki)["scheme"] == "https"
        reply = httpx.get(f"http://127.0.0.1:{plain}/scope", timeout=10)
        assert reply.json()["scheme"] == "http"
        assert reply.json()["tls"] is None
    finally:
        server.stop()


# -- pounce check ------------------------------------------------------------------


def _check(pki: Pki, **env: str) -> tuple[int, str]:
    result = run_pounce("check", APP, "-c", "/dev/null", env=env)
    return result.returncode, result.stdout + result.stderr


def test_check_accepts_a_good_pair(pki: Pki) -> None:
    code, out = _check(pki, **pki.env())
    assert code == 0, out


def test_check_reports_a_missing_cert(pki: Pki) -> None:
    code, out = _check(pki, **pki.env(POUNCE_TLS_CERTFILE="/nonexistent/cert.pem"))
    assert code == 2
    assert "tls.certfile (/nonexistent/cert.pem): file not found" in out


def test_check_reports_a_missing_key(pki: Pki) -> None:
    code, out = _check(pki, **pki.env(POUNCE_TLS_KEYFILE="/nonexistent/key.pem"))
    assert code == 2
    assert "tls.keyfile (/nonexistent/key.pem): file not found" in out


def test_check_reports_a_key_that_does_not_match(pki: Pki) -> None:
    code, out = _check(pki, **pki.env(POUNCE_TLS_KEYFILE=str(pki.other_key)))
    assert code == 2
    assert "the key does not match the certificate" in out


def test_check_reports_garbage(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    code, out = _check(pki, **pki.env(POUNCE_TLS_CERTFILE=str(junk)))
    assert code == 2
    assert "tls.certfile" in out


def test_check_mtls_needs_a_ca(pki: Pki) -> None:
    code, out = _check(pki, **pki.env(POUNCE_TLS_CLIENT_AUTH="required"))
    assert code == 2
    assert "tls.client_auth: required needs tls.ca_certs" in out


def test_check_tls_listener_needs_a_cert(tmp_path: Path) -> None:
    cfg = tmp_path / "pounce.toml"
    cfg.write_text("[[listen]]\nport = 8443\ntls = true\n")
    result = run_pounce("check", APP, "-c", str(cfg))
    assert result.returncode == 2
    assert "tls.certfile: required by a listener with tls = true" in result.stderr


def test_serve_refuses_a_mismatched_key_before_listening(pki: Pki) -> None:
    result = run_pounce(
        "serve", APP, "--port", "0", env=pki.env(POUNCE_TLS_KEYFILE=str(pki.other_key))
    )
    assert result.returncode == 2
    assert "does not match" in result.stderr


# -- reload --------------------------------------------------------------------------


def _served_cert(port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_reload_serves_replaced_certificate(serve: Callable[..., Server], pki: Pki) -> None:
    work = Path(tempfile.mkdtemp(prefix="pounce-reload-pki-"))
    try:
        cert, key = work / "cert.pem", work / "key.pem"
        shutil.copy(pki.cert, cert)
        shutil.copy(pki.key, key)
        control = str(work / "ctl.sock")
        env = {
            "POUNCE_TLS_CERTFILE": str(cert),
            "POUNCE_TLS_KEYFILE": str(key),
            "POUNCE_CONTROL_SOCKET": control,
        }
        server = serve(APP, env=env, ready=False)
        tls_ready(server, pki)
        first = _served_cert(server.port)
        assert first == ssl.PEM_cert_to_DER_cert(pki.cert.read_text())

        ca_key, ca_cert, _ = make_ca(work, "Second CA")
        new_cert, new_key = issue(work, "renewed", "localhost", ca_key, ca_cert)
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        result = run_pounce("ctl", "--socket", control, "reload", timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr + server.output
        expected = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        assert wait_for(lambda: _served_cert(server.port) == expected, 15), server.output
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_scope_json_shape(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    ctx = pki.client_context(alpn=["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        s.sendall(b"GET /scope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["scheme"] == "https"


def test_websocket_over_tls_is_wss(serve: Callable[..., Server], pki: Pki) -> None:
    from websockets.sync.client import connect

    server = serve("apps.ws_echo:app", env=pki.env(), ready=False)
    tls_ready(server, pki)
    ctx = pki.client_context(alpn=["http/1.1"])
    with connect(f"wss://localhost:{server.port}/scope", ssl=ctx, open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["scheme"] == "wss"
