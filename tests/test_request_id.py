"""Request IDs (``[request_id]``), end to end on real sockets.

Every request gets an ID in ``scope["extensions"]["request_id"]`` and the response
header (``X-Request-ID`` by default) over HTTP/1.1, HTTP/2 and WebSocket (both
carriers); a trusted peer's (``[proxy] trusted``) valid ID is kept, anything else
replaced; the app's own header wins; the access log and the error log carry it;
``enabled = false`` turns all of it off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import h2.events
import httpx
import pytest

from helpers.asgi import json_lines
from helpers.server import Server, start_server, wait_for
from helpers.wire import Response, Wire
from helpers.ws import h2c, upgrade_request

pytestmark = pytest.mark.slow

APP = "apps.request_id_app:app"
GENERATED = re.compile(r"[0-9a-f]{32}")
TRUSTED = {"POUNCE_PROXY_TRUSTED": "127.0.0.1"}


@pytest.fixture(scope="module")
def plain() -> Iterator[Server]:
    """Defaults: IDs on, nobody trusted."""
    server = start_server(APP)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trusted() -> Iterator[Server]:
    """IDs on, 127.0.0.1 (the tests' own address) trusted."""
    server = start_server(APP, env=TRUSTED)
    yield server
    server.stop()


def _get(server: Server, path: str = "/", headers: str = "") -> Response:
    """One HTTP/1.1 request on a raw socket: the response as it came, duplicates kept."""
    with Wire.open(server.host, server.port) as wire:
        wire.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode("latin-1"))
        return wire.read_response()


def _seen(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.body)
    return body


def _h2_get(
    server: Server, path: str = "/", extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """One HTTP/2 request (prior knowledge): the response headers as sent, and the body."""
    client = h2c(server)
    try:
        sid = client.h2.get_next_available_stream_id()
        head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path.encode())]
        head += [(b":authority", b"localhost"), *(extra or [])]
        client.h2.send_headers(sid, head, end_stream=True)
        client._flush()
        client.pump_until(lambda: sid in client.ended)
        (response,) = [
            e
            for e in client.events
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid
        ]
        assert response.headers is not None
        return list(response.headers), client.data.get(sid, b"")  # type: ignore[arg-type]
    finally:
        client.sock.close()


def _log_lines(server: Server, rid: str, count: int = 1) -> list[str]:
    """The server's log lines that carry ``rid`` (waiting for ``count`` of them)."""

    def lines() -> list[str]:
        return [line for line in server.output.splitlines() if f"rid={rid}" in line]

    assert wait_for(lambda: len(lines()) >= count), server.output
    return lines()


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


# -- HTTP/1.1 ---------------------------------------------------------------------------


def test_http11_request_gets_an_id_in_scope_and_response(plain: Server) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        responses = [client.get(f"{plain.url}/r{i}") for i in range(5)]  # one keep-alive
    ids = []
    for response in responses:
        assert response.status_code == 200
        (rid,) = response.headers.get_list("x-request-id")
        assert GENERATED.fullmatch(rid), rid
        assert response.json()["request_id"] == rid
        ids.append(rid)
    assert len(set(ids)) == len(ids), ids


def test_untrusted_peers_id_is_replaced_and_its_header_reaches_the_app(plain: Server) -> None:
    response = _get(plain, headers="X-Request-ID: chosen-by-client\r\n")
    rid = response.header("x-request-id")
    assert rid is not None and GENERATED.fullmatch(rid), response.raw
    seen = _seen(response)
    assert seen["request_id"] == rid
    assert ["x-request-id", "chosen-by-client"] in seen["headers"]  # untouched


def test_apps_own_header_is_not_doubled(plain: Server) -> None:
    response = _get(plain, "/own-id")
    assert response.header_all("x-request-id") == ["app-chosen"], response.raw
    assert GENERATED.fullmatch(_seen(response)["request_id"])


def test_an_app_exception_gives_a_500_with_the_id_and_the_error_log_has_it(plain: Server) -> None:
    response = _get(plain, "/boom")
    assert response.status == 500
    rid = response.header("x-request-id")
    assert rid is not None and GENERATED.fullmatch(rid), response.raw
    lines = _log_lines(plain, rid, 2)
    assert any("Exception in ASGI application (GET /boom" in line for line in lines), lines
    assert any('"GET /boom HTTP/1.1" 500' in line for line in lines), lines  # access log


def test_text_access_log_line_ends_with_the_id(plain: Server) -> None:
    response = _get(plain, "/logged?x=1")
    rid = response.header("x-request-id")
    assert rid is not None
    (line,) = _log_lines(plain, rid)
    assert re.search(r'"GET /logged\?x=1 HTTP/1\.1" 200 \d+ [\d.]+ms rid=' + rid + "$", line), line


# -- trusted peers ----------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123", "a.b:c_D-9", "x" * 200, "Z"])
def test_trusted_peers_valid_id_is_kept(trusted: Server, incoming: str) -> None:
    response = _get(trusted, headers=f"X-Request-ID: {incoming}\r\nX-Request-ID: second\r\n")
    assert response.header_all("x-request-id") == [incoming], response.raw
    assert _seen(response)["request_id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["x" * 201, "has space", "slash/no", "semi;no", 'quote"no', "caf\xe9", "a,b", ""],
    ids=["oversized", "space", "slash", "semicolon", "quote", "latin1", "comma", "empty"],
)
def test_trusted_peers_invalid_id_is_replaced(trusted: Server, incoming: str) -> None:
    response = _get(trusted, headers=f"X-Request-ID: {incoming}\r\n")
    rid = response.header("x-request-id")
    assert rid is not None and GENERATED.fullmatch(rid), response.raw
    seen = _seen(response)
    assert seen["request_id"] == rid
    assert ["x-request-id", incoming] in seen["headers"]  # the header itself is untouched


def test_trusted_peers_id_is_kept_over_http2(trusted: Server) -> None:
    headers, body = _h2_get(trusted, extra=[(b"x-request-id", b"from-proxy.1")])
    assert _values(headers, b"x-request-id") == [b"from-proxy.1"]
    assert json.loads(body)["request_id"] == "from-proxy.1"


def test_trusted_peers_id_is_kept_for_a_websocket(trusted: Server) -> None:
    from websockets.sync.client import connect

    url = f"ws://{trusted.host}:{trusted.port}/ws"
    with connect(url, open_timeout=10, additional_headers={"X-Request-ID": "ws-1"}) as ws:
        seen = json.loads(ws.recv(timeout=10))
        assert ws.response.headers.get_all("x-request-id") == ["ws-1"]
    assert seen["request_id"] == "ws-1"


# -- HTTP/2 -----------------------------------------------------------------------------


def test_http2_stream_gets_an_id_in_scope_and_response(plain: Server) -> None:
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
        responses = [client.get(f"{plain.url}/h2-{i}") for i in range(3)]
    ids = []
    for response in responses:
        assert response.http_version == "HTTP/2"
        (rid,) = response.headers.get_list("x-request-id")
        assert GENERATED.fullmatch(rid), rid
        assert response.json()["request_id"] == rid
        ids.append(rid)
    assert len(set(ids)) == len(ids), ids
    # The access log of HTTP/2 carries it too.
    (line,) = _log_lines(plain, ids[0])
    assert '"GET /h2-0 HTTP/2" 200' in line, line


def test_http2_apps_own_header_is_not_doubled_and_a_500_has_an_id(plain: Server) -> None:
    headers, _ = _h2_get(plain, "/own-id")
    assert _values(headers, b"x-request-id") == [b"app-chosen"]
    headers, _ = _h2_get(plain, "/boom")
    assert _values(headers, b":status") == [b"500"]
    (rid,) = _values(headers, b"x-request-id")
    assert GENERATED.fullmatch(rid.decode())
    lines = _log_lines(plain, rid.decode(), 2)
    assert any("Exception in ASGI application (GET /boom" in line for line in lines), lines
    assert any('"GET /boom HTTP/2" 500' in line for line in lines), lines


# -- WebSocket --------------------------------------------------------------------------


def test_websocket_over_http11_has_the_handshakes_id(plain: Server) -> None:
    from websockets.sync.client import connect

    with connect(f"ws://{plain.host}:{plain.port}/ws", open_timeout=10) as ws:
        seen = json.loads(ws.recv(timeout=10))
        (rid,) = ws.response.headers.get_all("x-request-id")
    assert ws.response.status_code == 101
    assert GENERATED.fullmatch(rid), rid
    assert seen["request_id"] == rid
    (line,) = _log_lines(plain, rid)
    assert '"GET /ws HTTP/1.1" 101' in line, line


def test_websocket_denial_over_http11_has_an_id(plain: Server) -> None:
    with Wire.open(plain.host, plain.port) as wire:
        wire.send(upgrade_request("/deny"))
        response = wire.read_response()
    assert response.status == 403
    (rid,) = response.header_all("x-request-id")
    assert GENERATED.fullmatch(rid), response.raw


def test_an_invalid_websocket_upgrade_is_logged_with_an_id(plain: Server) -> None:
    with Wire.open(plain.host, plain.port) as wire:
        wire.send(upgrade_request("/ws", version="12"))
        assert wire.read_response().status == 426

    def logged() -> list[str]:
        return [line for line in plain.output.splitlines() if "invalid WebSocket upgrade" in line]

    assert wait_for(lambda: bool(logged())), plain.output
    assert re.search(r" rid=[0-9a-f]{32}$", logged()[0]), logged()


def test_websocket_over_http2_has_the_streams_id(plain: Server) -> None:
    client = h2c(plain)
    try:
        ws = client.open("/ws", scheme="http")
        assert ws.status == b"200"
        rid = client.response[ws.stream_id][b"x-request-id"].decode()
        message = ws.message()
        assert isinstance(message, str)
        assert json.loads(message)["request_id"] == rid
        assert GENERATED.fullmatch(rid), rid
        denied = client.open("/deny", scheme="http")
        assert denied.status == b"403"
        other = client.response[denied.stream_id][b"x-request-id"].decode()
        assert GENERATED.fullmatch(other) and other != rid
    finally:
        client.sock.close()


# -- configuration ------------------------------------------------------------------------


def test_custom_header_name(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--request-id-header", "X-Trace-Id", env=TRUSTED)
    response = _get(server, headers="X-Trace-Id: trace.7\r\nX-Request-ID: other\r\n")
    assert response.header_all("x-trace-id") == ["trace.7"], response.raw
    assert response.header("x-request-id") is None
    assert _seen(response)["request_id"] == "trace.7"
    headers, _ = _h2_get(server)
    (rid,) = _values(headers, b"x-trace-id")
    assert GENERATED.fullmatch(rid.decode())
    assert not _values(headers, b"x-request-id")


def test_disabled_gives_no_id_no_header_no_extension(serve: Callable[..., Server]) -> None:
    from websockets.sync.client import connect

    server = serve(APP, env={"POUNCE_REQUEST_ID_ENABLED": "false", **TRUSTED})
    response = _get(server, headers="X-Request-ID: abc\r\n")
    assert response.header("x-request-id") is None, response.raw
    assert _seen(response)["has_key"] is False
    assert _get(server, "/boom").header("x-request-id") is None
    headers, body = _h2_get(server)
    assert not _values(headers, b"x-request-id")
    assert json.loads(body)["has_key"] is False
    with connect(f"ws://{server.host}:{server.port}/ws", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["has_key"] is False
        assert "x-request-id" not in ws.response.headers
    assert server.wait_output('"GET /ws HTTP/1.1" 101'), server.output
    assert "rid=" not in server.output


def test_json_logs_carry_request_id(serve: Callable[..., Server]) -> None:
    server = serve(APP, "--log-format", "json")
    ok = _get(server, "/fine")
    boom = _get(server, "/boom")
    ok_id, boom_id = ok.header("x-request-id"), boom.header("x-request-id")
    assert ok_id and boom_id and ok_id != boom_id

    def entries(rid: str) -> list[dict[str, Any]]:
        return [e for e in json_lines(server.output) if e.get("request_id") == rid]

    assert server.wait_output(boom_id) and server.wait_output(ok_id), server.output
    (access,) = [e for e in entries(ok_id) if e["logger"] == "pounce.access"]
    assert access["path"] == "/fine" and access["status"] == 200
    assert access["message"].endswith(f"rid={ok_id}")
    by_logger = {e["logger"]: e for e in entries(boom_id)}
    assert by_logger["pounce.access"]["status"] == 500
    error = by_logger["pounce.error"]
    assert "Exception in ASGI application (GET /boom" in error["message"]
    assert "boom in the app" in error["exc_info"]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_ids_in_both_worker_modes(serve: Callable[..., Server], mode: str) -> None:
    server = serve(APP, "--workers", "2", env={"POUNCE_SERVER_WORKER_MODE": mode, **TRUSTED})
    ids = set()
    for _ in range(6):  # fresh connections: both workers answer some
        response = _get(server)
        rid = response.header("x-request-id")
        assert rid is not None and GENERATED.fullmatch(rid)
        assert _seen(response)["request_id"] == rid
        ids.add(rid)
    assert len(ids) == 6
    assert _get(server, headers="X-Request-ID: kept\r\n").header("x-request-id") == "kept"
