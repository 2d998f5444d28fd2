"""Proxy headers on real servers: trusted peers only, over HTTP/1.1, HTTP/2, WebSocket
(both), TCP on IPv4 and IPv6 and Unix sockets, and the uvicorn-style flags.

The values themselves (the walk, Forwarded, malformed input) are unit-tested in
test_proxy_headers.py; here the question is who applies them, and to what.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from helpers.asgi import Launcher, scope_of, short_tmpdir, uds_get, wait_uds
from helpers.server import Server
from helpers.ws import h2c

pytestmark = pytest.mark.slow

APP = "apps.proxy_scope:app"
CHAIN = {
    "X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.1",
    "X-Forwarded-Proto": "http, https, http, http",
    "X-Forwarded-Host": "spoofed.example, public.example, lb2, lb1",
}


def _scope(server: Server, headers: dict[str, str], path: str = "/") -> dict[str, Any]:
    reply = httpx.get(server.url + path, headers=headers, timeout=10)
    scope: dict[str, Any] = scope_of(reply)["scope"]
    return scope


def _header(scope: dict[str, Any], name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key == name]


def _ws_scope_h1(server: Server, headers: dict[str, str]) -> dict[str, Any]:
    """The scope of a WebSocket over HTTP/1.1 (the websockets client), as JSON."""
    from websockets.sync.client import connect

    url = f"ws://{server.host}:{server.port}/scope"
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        scope: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return scope


def test_an_untrusted_peers_headers_are_passed_through_untouched(
    serve: Callable[..., Server],
) -> None:
    # Nobody is trusted by default.
    server = serve(APP)
    scope = _scope(server, {**CHAIN, "Forwarded": "for=198.51.100.1;proto=https"})
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["scheme"] == "http"
    assert scope["server"] == ("127.0.0.1", server.port)
    assert _header(scope, b"host") == [f"127.0.0.1:{server.port}".encode()]
    assert _header(scope, b"x-forwarded-for") == [CHAIN["X-Forwarded-For"].encode()]
    assert _header(scope, b"forwarded") == [b"for=198.51.100.1;proto=https"]
    # And a WebSocket over HTTP/1.1 keeps its transport's scheme.
    ws = _ws_scope_h1(server, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"})
    assert ws["scheme"] == "ws" and ws["client"][0] == "127.0.0.1"


def test_a_peer_outside_the_trusted_networks_is_not_trusted(
    serve: Callable[..., Server],
) -> None:
    server = serve(APP, "--forwarded-allow-ips", "10.0.0.0/8,unix")
    scope = _scope(server, CHAIN)
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_chain_of_trusted_hops(serve: Callable[..., Server], mode: str) -> None:
    server = serve(APP, "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8", "--worker-mode", mode)
    scope = _scope(server, CHAIN)
    # From the right: 10.0.0.1 and 10.0.0.2 trusted, 203.0.113.7 is the client; its
    # proto and host are the ones lined up with it, not the client's own left-most.
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"
    assert scope["server"] == ("public.example", 443)
    assert _header(scope, b"host") == [b"public.example"]
    assert _header(scope, b"x-forwarded-for") == [CHAIN["X-Forwarded-For"].encode()]


def test_forwarded_with_quoted_ipv6_and_obfuscated_nodes(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--forwarded-allow-ips", "127.0.0.1")
    scope = _scope(
        server,
        {
            "Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https;host="api.example:8443"',
            "X-Forwarded-For": "198.51.100.1",  # Forwarded wins
        },
    )
    assert scope["client"] == ("2001:db8:cafe::17", 4711)
    assert scope["scheme"] == "https"
    assert scope["server"] == ("api.example", 8443)
    assert _header(scope, b"host") == [b"api.example:8443"]
    scope = _scope(server, {"Forwarded": "for=_gateway-7;proto=http"})
    assert scope["client"] == ("_gateway-7", 0) and scope["scheme"] == "http"


def test_malformed_values_are_ignored(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--forwarded-allow-ips", "127.0.0.1")
    for headers in [
        {"X-Forwarded-For": "not-an-ip", "X-Forwarded-Proto": "gopher"},
        {"X-Forwarded-Host": "bad host/", "X-Forwarded-Port": "99999"},
        {"Forwarded": 'for="[2001:db8::1'},
        {"Forwarded": "for=1.2.3.4;for=5.6.7.8, ;;,"},
    ]:
        scope = _scope(server, headers)  # 200, never a 500
        assert scope["client"][0] == "127.0.0.1", headers
        assert scope["scheme"] == "http" and scope["server"] == ("127.0.0.1", server.port)
    # A long chain is read from the right, at most 64 hops.
    scope = _scope(server, {"X-Forwarded-For": ", ".join(["127.0.0.1"] * 2000)})
    assert scope["client"] == ("127.0.0.1", 0)


def test_ipv6_listener_and_peer(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--forwarded-allow-ips", "::1", host="::1")
    scope = _scope(server, {"X-Forwarded-For": "2001:db8::7, ::1", "X-Forwarded-Port": "8443"})
    assert scope["client"] == ("2001:db8::7", 0)  # ::1 is trusted as a hop too
    assert scope["server"] == ("::1", 8443)
    other = serve(APP, "--forwarded-allow-ips", "127.0.0.1", host="::1")
    scope = _scope(other, {"X-Forwarded-For": "2001:db8::7"})
    assert scope["client"][0] == "::1"


def test_unix_socket_peer(launch: Launcher) -> None:
    with short_tmpdir() as tmp:
        trusting, plain = tmp / "t.sock", tmp / "p.sock"
        a = launch.spawn("serve", APP, "--uds", str(trusting), "--forwarded-allow-ips", "unix")
        b = launch.spawn("serve", APP, "--uds", str(plain), "--forwarded-allow-ips", "127.0.0.1")
        wait_uds(a, trusting)
        wait_uds(b, plain)
        headers = {"X-Forwarded-For": "192.0.2.44", "X-Forwarded-Proto": "https"}
        scope = scope_of(uds_get(trusting, headers=headers))["scope"]
        assert scope["client"] == ("192.0.2.44", 0) and scope["scheme"] == "https"
        scope = scope_of(uds_get(plain, headers=headers))["scope"]
        assert scope["client"] is None and scope["scheme"] == "http"


def test_websocket_over_http11_gets_wss(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--forwarded-allow-ips", "127.0.0.1")
    ws = _ws_scope_h1(server, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.9"})
    assert ws["type"] == "websocket" and ws["scheme"] == "wss"
    assert ws["client"] == ["198.51.100.9", 0]


def test_http2_and_websocket_over_http2(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--forwarded-allow-ips", "127.0.0.1")
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        reply = client.get(
            server.url + "/",
            headers={
                "X-Forwarded-For": "203.0.113.20",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "h2.example",
            },
        )
    assert reply.http_version == "HTTP/2"
    scope = scope_of(reply)["scope"]
    assert scope["http_version"] == "2"
    assert scope["client"] == ("203.0.113.20", 0) and scope["scheme"] == "https"
    assert scope["server"] == ("h2.example", 443)
    assert _header(scope, b"host") == [b"h2.example"]
    client2 = h2c(server)
    with client2.sock:
        ws = client2.open(
            "/scope",
            scheme="http",
            extra=[(b"forwarded", b'for="[2001:db8::5]";proto=https')],
        )
        assert ws.status == b"200"
        shown = json.loads(ws.message())
    assert shown["scheme"] == "wss" and shown["client"] == ["2001:db8::5", 0]


# -- the uvicorn flags ---------------------------------------------------------------------


def test_proxy_headers_flag_trusts_localhost(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--proxy-headers")
    scope = _scope(server, {"X-Forwarded-For": "203.0.113.30"})
    assert scope["client"] == ("203.0.113.30", 0)


def test_proxy_headers_flag_keeps_a_configured_list(serve: Callable[..., Server]) -> None:
    # The environment trusts someone else: --proxy-headers adds nobody.
    server = serve(APP, "--proxy-headers", env={"POUNCE_PROXY_TRUSTED": "10.0.0.0/8"})
    scope = _scope(server, {"X-Forwarded-For": "203.0.113.30"})
    assert scope["client"][0] == "127.0.0.1"


def test_no_proxy_headers_flag_trusts_nobody(serve: Callable[..., Server]) -> None:
    server = serve(
        APP,
        "--no-proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
        env={"POUNCE_PROXY_TRUSTED": "*"},
    )
    scope = _scope(server, {"X-Forwarded-For": "203.0.113.30"})
    assert scope["client"][0] == "127.0.0.1"


def test_forwarded_allow_ips_star(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--forwarded-allow-ips", "*")
    scope = _scope(server, {"X-Forwarded-For": "203.0.113.31, 198.51.100.2"})
    assert scope["client"] == ("203.0.113.31", 0)  # every hop trusted: the left-most
