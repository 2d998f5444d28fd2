"""WebSocket over real sockets: the ``websockets`` client (and raw bytes) against
``pounce serve`` running ``apps.ws_echo:app`` and a Starlette route."""

from __future__ import annotations

import json
import os
import signal
import struct
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from helpers.server import Server, http_exchange, wait_for
from helpers.ws import KEY, RawReader, upgrade_request

pytestmark = pytest.mark.slow

APP = "apps.ws_echo:app"

Serve = Callable[..., Server]


def ws_url(server: Server, path: str = "/echo") -> str:
    return f"ws://{server.host}:{server.port}{path}"


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2); payloads under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def test_echo_text_binary_subprotocol_headers_and_deflate(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), subprotocols=["other", "chat"], open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(timeout=10) == b"\x00\xff" * 1000
        assert ws.subprotocol == "chat"
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers["server"] == "pounce"
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
    assert wait_for(lambda: '"GET /echo HTTP/1.1" 101' in server.output)


def test_handshakes_are_counted_in_metrics(serve: Serve) -> None:
    server = serve(APP, "--metrics-public")
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
    with pytest.raises(InvalidStatus):
        connect(ws_url(server, "/deny"), open_timeout=10)
    metrics = http_exchange_body(server, "/metrics").decode()
    assert 'http_requests_total{method="GET",status="101"} 1' in metrics
    assert 'http_requests_total{method="GET",status="418"} 1' in metrics


def test_no_subprotocol_and_deflate_off(serve: Serve) -> None:
    server = serve(APP, env={"POUNCE_WEBSOCKET_PER_MESSAGE_DEFLATE": "false"})
    with connect(ws_url(server), open_timeout=10) as ws:
        assert ws.subprotocol is None
        assert "sec-websocket-extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        ws.send("x" * 70000)
        assert ws.recv(timeout=10) == "x" * 70000


def test_scope(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server, "/scope?a=1"), subprotocols=["p1", "p2"], open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["p1", "p2"]
    assert scope["extensions"] == {
        "websocket.http.response": {},
        "request_id": ws.response.headers["x-request-id"],  # [request_id] is on by default
    }
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert ["upgrade", "websocket"] in scope["headers"]


def test_app_closes_with_code_and_reason(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("close:4001:bye now")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")


def test_client_close_code_reaches_the_app(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
        ws.close(code=4002, reason="done")
    assert wait_for(lambda: http_exchange_body(server, "/last-close") == b"4002")


def http_exchange_body(server: Server, path: str) -> bytes:
    raw = http_exchange(
        server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    return raw.partition(b"\r\n\r\n")[2]


def test_denial_response(serve: Serve) -> None:
    server = serve(APP)
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/deny"), open_timeout=10)
    assert info.value.response.status_code == 418
    assert info.value.response.body == b"no tea"
    assert wait_for(lambda: '"GET /deny HTTP/1.1" 418' in server.output)


def test_close_before_accept_is_403_and_crash_is_500(serve: Serve) -> None:
    server = serve(APP)
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/reject"), open_timeout=10)
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/crash"), open_timeout=10)
    assert info.value.response.status_code == 500
    assert wait_for(lambda: "boom before accept" in server.output)


def test_invalid_upgrades(serve: Serve) -> None:
    server = serve(APP)
    bad_version = http_exchange(server, upgrade_request(version="8"))
    assert bad_version.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13\r\n" in bad_version.lower()
    no_key = http_exchange(
        server,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
    )
    assert no_key.startswith(b"HTTP/1.1 400 ")
    bad_key = http_exchange(server, upgrade_request().replace(KEY.encode(), b"short"))
    assert bad_key.startswith(b"HTTP/1.1 400 ")
    post = http_exchange(server, upgrade_request().replace(b"GET", b"POST", 1))
    assert post.startswith(b"HTTP/1.1 400 ")
    # Another protocol's upgrade is a plain HTTP request for the app.
    other = http_exchange(
        server,
        b"GET /last-close HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: Upgrade, close\r\n\r\n",
    )
    assert other.startswith(b"HTTP/1.1 200 ")


def test_max_message_size_closes_1009(serve: Serve) -> None:
    server = serve(APP, env={"POUNCE_WEBSOCKET_MAX_MESSAGE_SIZE": "1024"})
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("a" * 1024)
        assert ws.recv(timeout=10) == "a" * 1024
        ws.send("b" * 1025)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


def test_server_answers_client_pings(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), open_timeout=10, ping_interval=None) as ws:
        assert ws.ping(b"are you there").wait(10)
        ws.send("still open")
        assert ws.recv(timeout=10) == "still open"


def test_server_pings_and_closes_1011_without_pong(serve: Serve) -> None:
    env = {"POUNCE_WEBSOCKET_PING_INTERVAL": "0.2", "POUNCE_WEBSOCKET_PING_TIMEOUT": "0.5"}
    server = serve(APP, env=env)
    with server.connect(timeout=10) as sock:
        sock.sendall(upgrade_request())
        reader = RawReader(sock)
        assert reader.head().startswith(b"HTTP/1.1 101 ")
        opcode, payload = reader.frame() or (0, b"")
        assert opcode == 0x9  # a ping; answering it keeps the connection open
        sock.sendall(client_frame(0xA, payload))
        opcode, payload = reader.frame() or (0, b"")
        assert opcode == 0x9  # the next ping, not a close: the pong counted
        # No pong this time: a close with 1011, then EOF.
        opcode, payload = reader.frame() or (0, b"")
        assert opcode == 0x8
        assert struct.unpack("!H", payload[:2])[0] == 1011
        assert reader.frame() is None


def test_sigterm_closes_1001(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
        server.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    assert server.proc.wait(15) == 0


def test_app_error_after_accept_closes_1011(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("raise")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011
    assert wait_for(lambda: "boom after accept" in server.output)


def test_reload_closes_1012(serve: Serve) -> None:
    server = serve(APP)
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
        server.signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=20)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1012
    with connect(ws_url(server), open_timeout=10) as ws:  # the new generation serves
        ws.send("again")
        assert ws.recv(timeout=10) == "again"


def test_starlette_websocket_route(serve: Serve) -> None:
    server = serve("apps.ws_starlette:app")
    with connect(ws_url(server, "/ws/alice"), open_timeout=10) as ws:
        assert ws.recv(timeout=10) == "hello alice"
        ws.send(json.dumps({"n": 2}))
        assert json.loads(ws.recv(timeout=10)) == {"n": 3}
        ws.close()
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/nope"), open_timeout=10)
    assert info.value.response.status_code == 403
