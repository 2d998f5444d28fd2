"""WebSocket over TLS and over HTTP/2 (RFC 8441 extended CONNECT).

The HTTP/2 client (``helpers.ws``) is written with ``h2`` (the client side of its state
machine) and wsproto's frame layer (``Connection(ConnectionType.CLIENT)``) over a TLS socket that
negotiated ``h2`` by ALPN, or a cleartext one (h2c, prior knowledge).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from helpers.server import Server
from helpers.tls import Pki, tls_ready
from helpers.ws import H2WebSocketClient, h2c

pytestmark = pytest.mark.slow

APP = "apps.ws_echo:app"


def _serve_tls(serve: Callable[..., Server], pki: Pki, *args: str, **env: str) -> Server:
    server = serve(APP, *args, env=pki.env(**env), ready=False)
    tls_ready(server, pki)
    return server


def test_websocket_scope_has_the_tls_extension(serve: Callable[..., Server], pki: Pki) -> None:
    from websockets.sync.client import connect

    server = _serve_tls(
        serve, pki, POUNCE_TLS_CLIENT_AUTH="optional", POUNCE_TLS_CA_CERTS=str(pki.ca)
    )
    ctx = pki.client_context(alpn=["http/1.1"], client_cert=True)
    with connect(f"wss://localhost:{server.port}/scope", ssl=ctx, open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["scheme"] == "wss"
    assert scope["http_version"] == "1.1"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert tls["cipher_name"]
    assert tls["client_cert_name"] == "CN=pounce-client"
    assert len(tls["client_cert_chain"]) == 1
    assert "websocket.http.response" in scope["extensions"]


def test_plain_websocket_scope_has_no_tls_extension(serve: Callable[..., Server]) -> None:
    from websockets.sync.client import connect

    server = serve(APP)
    with connect(f"ws://127.0.0.1:{server.port}/scope", open_timeout=10) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["extensions"] == {
        "websocket.http.response": {},
        "request_id": ws.response.headers["x-request-id"],  # [request_id] is on by default
    }


def _tls_h2(server: Server, pki: Pki) -> H2WebSocketClient:
    ctx = pki.client_context(alpn=["h2"])
    raw = socket.create_connection((server.host, server.port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    return H2WebSocketClient(sock)


def test_h2_websocket_echo_text_binary_and_close(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    client = _tls_h2(server, pki)
    with client.sock:
        ws = client.open("/echo", extra=[(b"sec-websocket-protocol", b"chat")])
        assert ws.status == b"200"
        assert client.response[ws.stream_id][b"sec-websocket-protocol"] == b"chat"
        assert client.response[ws.stream_id][b"x-extra"] == b"yes"
        ws.send(TextMessage(data="hello over h2"))
        assert ws.message() == "hello over h2"
        ws.send(BytesMessage(data=b"\x00\x01binary\xff"))
        assert ws.message() == b"\x00\x01binary\xff"
        big = bytes(range(256)) * 1024  # 256 KiB: more than the initial windows
        ws.send(BytesMessage(data=big))
        assert ws.message() == big
        # A second WebSocket on the same connection, at the same time.
        other = client.open("/echo")
        other.send(TextMessage(data="second"))
        assert other.message() == "second"
        # The app closes with a code: close frame, then the stream ends.
        ws.send(TextMessage(data="close:4001:bye"))
        event = ws.next()
        assert isinstance(event, CloseConnection)
        assert (event.code, event.reason) == (4001, "bye")
        ws.send(event.response())
        client.h2.end_stream(ws.stream_id)
        client._flush()
        client.pump_until(ws.ended)
        # The client closes the other one.
        other.send(CloseConnection(code=1000, reason="done"))
        reply = other.next()
        assert isinstance(reply, CloseConnection) and reply.code == 1000
        client.h2.end_stream(other.stream_id)
        client._flush()
        client.pump_until(other.ended)
        assert other.stream_id not in client.reset
    assert server.wait_output('"CONNECT /echo HTTP/2" 200', timeout=10), server.output
    assert "Exception" not in server.output, server.output


def test_h2_websocket_scope(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    client = _tls_h2(server, pki)
    with client.sock:
        ws = client.open("/scope?a=1", extra=[(b"sec-websocket-protocol", b"p1, p2")])
        assert ws.status == b"200"
        message = ws.message()
        assert isinstance(message, str)
        scope = json.loads(message)
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/scope"
    assert scope["query_string"] == "a=1"
    assert scope["subprotocols"] == ["p1", "p2"]
    assert scope["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)
    assert "websocket.http.response" in scope["extensions"]
    assert ["host", "localhost"] in scope["headers"]


def test_h2_websocket_denials(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    client = _tls_h2(server, pki)
    with client.sock:
        deny = client.open("/deny")
        assert deny.status == b"418"
        client.pump_until(deny.ended)
        assert client.data[deny.stream_id] == b"no tea"
        reject = client.open("/reject")
        assert reject.status == b"403"
        crash = client.open("/crash")
        assert crash.status == b"500"
        # The connection goes on after all of them.
        ws = client.open("/echo")
        ws.send(TextMessage(data="still here"))
        assert ws.message() == "still here"


def test_h2_websocket_bad_version_and_protocol(serve: Callable[..., Server], pki: Pki) -> None:
    server = _serve_tls(serve, pki)
    client = _tls_h2(server, pki)
    with client.sock:
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            sid,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":path", b"/echo"),
                (b":authority", b"localhost"),
                (b"sec-websocket-version", b"8"),
            ],
        )
        client._flush()
        client.pump_until(lambda: sid in client.response)
        assert client.response[sid][b":status"] == b"426"
        assert client.response[sid][b"sec-websocket-version"] == b"13"
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            sid,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"not-websocket"),
                (b":scheme", b"https"),
                (b":path", b"/echo"),
                (b":authority", b"localhost"),
            ],
        )
        client._flush()
        client.pump_until(lambda: sid in client.response)
        assert client.response[sid][b":status"] == b"501"


def test_h2c_websocket_echo(serve: Callable[..., Server]) -> None:
    server = serve(APP)
    client = h2c(server)
    with client.sock:
        ws = client.open("/scope", scheme="http")
        assert ws.status == b"200"
        message = ws.message()
        assert isinstance(message, str)
        assert json.loads(message)["scheme"] == "ws"
        echo = client.open("/echo", scheme="http")
        echo.send(TextMessage(data="cleartext"))
        assert echo.message() == "cleartext"


def test_no_extended_connect_without_websocket(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--no-ws")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    with sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = conn.receive_data(sock.recv(65536))
            if any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
                break
        assert conn.remote_settings.enable_connect_protocol == 0


def test_h2_websocket_closed_with_1001_on_shutdown(serve: Callable[..., Server]) -> None:
    server = serve(APP)
    client = h2c(server)
    with client.sock:
        ws = client.open("/echo", scheme="http")
        ws.send(TextMessage(data="before"))
        assert ws.message() == "before"
        client.after_goaway = True
        server.signal(signal.SIGTERM)
        event = ws.next()
        assert isinstance(event, CloseConnection)
        assert event.code == 1001
        ws.send(event.response())
        client.h2.end_stream(ws.stream_id)
        client._flush()
        client.pump_until(ws.ended)
        assert any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)
    assert server.proc.wait(15) == 0, server.output


def test_h2_websocket_window_stays_shut_while_the_app_does_not_read(
    serve: Callable[..., Server],
) -> None:
    server = serve("apps.browser_app:app")
    client = h2c(server)
    with client.sock:
        ws = client.open("/slow", scheme="http")
        assert ws.status == b"200"
        ws.send(TextMessage(data="start"))
        for _ in range(40):
            ws.send(BytesMessage(data=b"x" * 1024))
        client.pump_for(0.7)  # the app sleeps 1.5 s
        # 16 messages wait for the app: the rest (24 KiB and more) stays unacknowledged.
        held = client.h2.local_flow_control_window(ws.stream_id)
        assert held < 65535 - 24 * 1024, held
        ws.send(TextMessage(data="end"))
        assert ws.message() == "got 40"
        client.pump_until(lambda: client.h2.local_flow_control_window(ws.stream_id) > 60000)


def test_h2_websocket_pings_and_closes_1011_without_pong(serve: Callable[..., Server]) -> None:
    env = {"POUNCE_WEBSOCKET_PING_INTERVAL": "0.2", "POUNCE_WEBSOCKET_PING_TIMEOUT": "0.5"}
    server = serve(APP, env=env)
    client = h2c(server)
    with client.sock:
        ws = client.open("/echo", scheme="http")
        assert ws.status == b"200"
        ping = ws.next()
        assert isinstance(ping, Ping)  # answering it keeps the WebSocket open
        ws.send(ping.response())
        again = ws.next()
        assert isinstance(again, Ping), again  # the next ping, not a close: the pong counted
        assert again.payload != ping.payload
        # No pong this time: a close with 1011, and the stream ends.
        close = ws.next()
        assert isinstance(close, CloseConnection), close
        assert (close.code, close.reason) == (1011, "keepalive ping timeout")
        client.pump_until(lambda: ws.ended() or ws.stream_id in client.reset)
        # The connection itself goes on: a GET on it says what the app's disconnect said.
        sid = client.h2.get_next_available_stream_id()
        request = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/last-close")]
        client.h2.send_headers(sid, [*request, (b":authority", b"localhost")], end_stream=True)
        client._flush()
        client.pump_until(lambda: sid in client.ended)
        assert client.data[sid] == b"1011"
    assert server.wait_output("no pong within ws ping_timeout"), server.output
