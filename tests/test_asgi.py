"""ASGI 3 compliance, end to end: the HTTP scope, receive()/send() and app errors.

Every test talks to a real ``pounce serve`` subprocess over a real socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from helpers.asgi import (
    Launcher,
    exchange,
    launcher,
    read_response,
    read_until_close,
    scope_of,
    split_response,
)
from helpers.procs import process_tree, rss_kib
from helpers.server import Server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def mod_launch() -> Iterator[Launcher]:
    with launcher() as launch:
        yield launch


@pytest.fixture(scope="module")
def scope_server(mod_launch: Launcher) -> Server:
    return mod_launch.fd("apps.asgi_scope:app")


@pytest.fixture(scope="module")
def behave(mod_launch: Launcher) -> Server:
    return mod_launch.fd("apps.asgi_behave:app")


def raw_scope(server: Server, request: bytes) -> dict:
    data, _ = exchange(server, request)
    status, _, body = split_response(data)
    assert status == 200, data
    return scope_of(httpx.Response(200, content=body))


def q(path: Path) -> str:
    return quote(str(path), safe="")


# ---------------------------------------------------------------------------------------
# The HTTP scope
# ---------------------------------------------------------------------------------------


def test_scope_has_core_fields(scope_server: Server) -> None:
    with httpx.Client(timeout=10) as client:
        payload = scope_of(client.get(scope_server.url + "/plain?x=1"))
    scope = payload["scope"]
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"]["spec_version"], str)
    assert scope["asgi"]["spec_version"].startswith("2.")
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/plain"
    assert scope["raw_path"] == b"/plain"
    assert scope["query_string"] == b"x=1"
    assert scope["root_path"] == ""
    assert payload["types"]["extensions"] == "dict"
    assert payload["types"]["state"] == "dict"
    assert payload["types"]["headers"] in ("list", "tuple")


def test_path_is_percent_decoded_utf8_and_raw_path_is_as_sent(scope_server: Server) -> None:
    scope = raw_scope(
        scope_server,
        b"GET /caf%C3%A9/a%20b/x%2Fy?q=%C3%A9&x=1+2&e= HTTP/1.1\r\n"
        b"Host: example\r\nConnection: close\r\n\r\n",
    )["scope"]
    assert scope["path"] == "/café/a b/x/y"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b/x%2Fy"
    assert scope["query_string"] == b"q=%C3%A9&x=1+2&e="


def test_simple_cafe_path(scope_server: Server) -> None:
    scope = raw_scope(
        scope_server, b"GET /caf%C3%A9 HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"
    )["scope"]
    assert scope["path"] == "/café"
    assert scope["raw_path"] == b"/caf%C3%A9"
    assert scope["query_string"] == b""


def test_headers_lowercase_bytes_order_and_duplicates(scope_server: Server) -> None:
    sent = [
        (b"Host", b"example.test"),
        (b"X-First", b"1"),
        (b"X-Dup", b"alpha"),
        (b"Accept", b"*/*"),
        (b"X-Dup", b"beta"),
        (b"X-UPPER-Name", b"MixedCase Value"),
        (b"x-dup", b"gamma"),
        (b"Connection", b"close"),
    ]
    request = b"GET /headers HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in sent)
    scope = raw_scope(scope_server, request + b"\r\n")["scope"]
    headers = scope["headers"]
    for pair in headers:
        assert len(pair) == 2
        assert isinstance(pair[0], bytes)
        assert isinstance(pair[1], bytes)
        assert pair[0] == pair[0].lower()
    assert [tuple(p) for p in headers] == [(n.lower(), v) for n, v in sent]


def test_client_and_server_addresses_for_tcp(scope_server: Server) -> None:
    with scope_server.connect() as s:
        local_port = s.getsockname()[1]
        s.sendall(b"GET /addr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_until_close(s)
    status, _, body = split_response(data)
    assert status == 200
    scope = scope_of(httpx.Response(200, content=body))["scope"]
    assert isinstance(scope["client"], (list, tuple))
    assert list(scope["client"]) == ["127.0.0.1", local_port]
    assert isinstance(scope["server"], (list, tuple))
    assert list(scope["server"]) == ["127.0.0.1", scope_server.port]


def test_http_10_version(scope_server: Server) -> None:
    scope = raw_scope(scope_server, b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")["scope"]
    assert scope["http_version"] == "1.0"
    assert scope["path"] == "/old"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_method_and_body_reach_the_app(scope_server: Server, method: str) -> None:
    with httpx.Client(timeout=10) as client:
        payload = scope_of(client.request(method, scope_server.url + "/m", content=b"z" * 321))
    assert payload["scope"]["method"] == method
    assert payload["body_length"] == 321


def test_lifespan_state_reaches_every_request(scope_server: Server) -> None:
    states = []
    for _ in range(3):  # a fresh connection each time
        with httpx.Client(timeout=10) as client:
            states.append(scope_of(client.get(scope_server.url + "/s"))["scope"]["state"])
    with httpx.Client(timeout=10) as client:  # several requests on one keep-alive connection
        for _ in range(3):
            states.append(scope_of(client.get(scope_server.url + "/s"))["scope"]["state"])
    for state in states:
        assert state["answer"] == 42
        assert state["name"] == "scope-app"


def test_state_is_a_copy_per_request(scope_server: Server) -> None:
    with httpx.Client(timeout=10) as client:
        first = scope_of(client.get(scope_server.url + "/mutate-state"))
        assert first["state_before"]["answer"] == 42
        second = scope_of(client.get(scope_server.url + "/after-mutation"))
    assert second["state_before"]["answer"] == 42
    assert "added-by-request" not in second["state_before"]


def test_root_path_from_cli(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_scope:app", "--root-path", "/mounted")
    with httpx.Client(timeout=10) as client:
        scope = scope_of(client.get(server.url + "/mounted/thing"))["scope"]
    assert scope["root_path"] == "/mounted"


# ---------------------------------------------------------------------------------------
# receive()
# ---------------------------------------------------------------------------------------


def test_receive_streams_chunked_body(behave: Server) -> None:
    with behave.connect() as s:
        s.sendall(
            b"POST /echo-chunks?tag=T1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        # The app sees the first chunk while the rest of the body is still unsent.
        assert behave.wait_output("CHUNK-T1-"), behave.output
        s.sendall(b"6\r\n world\r\n")
        assert wait_for(lambda: "-11\n" in behave.output.split("CHUNK-T1-", 1)[1], 10)
        s.sendall(b"0\r\n\r\n")
        data, _ = read_until_close(s)
    status, _, body = split_response(data)
    assert status == 200, data
    result = json.loads(body)
    assert result["length"] == 11
    assert result["sha256"] == hashlib.sha256(b"hello world").hexdigest()
    messages = result["messages"]
    assert all(m["type"] == "http.request" for m in messages)
    assert [m["more_body"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert len(messages) >= 2


def test_receive_large_content_length_body(behave: Server) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    with httpx.Client(timeout=20) as client:
        r = client.post(behave.url + "/echo-chunks?tag=T2", content=body)
    assert r.status_code == 200
    result = r.json()
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    flags = [m["more_body"] for m in result["messages"]]
    assert flags[-1] is False
    assert all(flags[:-1])
    assert sum(m["len"] for m in result["messages"]) == len(body)


def test_receive_returns_http_disconnect_when_client_leaves(behave: Server, tmp_path: Path) -> None:
    ready, marker = tmp_path / "ready", tmp_path / "marker"
    s = behave.connect()
    try:
        s.sendall(
            f"GET /wait-disconnect?ready={q(ready)}&marker={q(marker)} HTTP/1.1\r\n"
            "Host: x\r\n\r\n".encode()
        )
        assert wait_for(ready.exists, 10), behave.output
        assert not marker.exists()
    finally:
        s.close()
    assert wait_for(marker.exists, 10), behave.output
    assert marker.read_text() == "http.disconnect"


def test_receive_returns_http_disconnect_when_client_leaves_mid_body(
    behave: Server, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    s = behave.connect()
    try:
        s.sendall(
            f"POST /upload-disconnect?tag=U1&marker={q(marker)} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
            + b"u" * 1000
        )
        assert behave.wait_output("UPLOAD-U1-1000"), behave.output
    finally:
        s.close()
    assert wait_for(marker.exists, 10), behave.output
    assert marker.read_text() == "http.disconnect"


def test_receive_after_response_returns_http_disconnect(behave: Server, tmp_path: Path) -> None:
    """ASGI HTTP spec: http.disconnect is sent "if receive is called after a response has
    been sent or after the HTTP connection has been closed"."""
    marker = tmp_path / "marker"
    with behave.connect() as s:
        s.sendall(
            f"GET /receive-after-response?marker={q(marker)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        status, _, body = read_response(s)
        assert (status, body) == (200, b"done")
        # The keep-alive connection is still open, yet the app is not left hanging.
        assert wait_for(marker.exists, 10), behave.output
    assert marker.read_text() == "http.disconnect"


# ---------------------------------------------------------------------------------------
# send()
# ---------------------------------------------------------------------------------------


def test_send_streams_body_with_more_body(behave: Server, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with behave.connect() as s:
        s.sendall(f"GET /stream-out?release={q(release)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        s.settimeout(10)
        while b"part-1;" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        # The first part arrived while the app is still waiting to send the second.
        assert b"part-2;" not in data
        release.write_text("go")
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.endswith(b"0\r\n\r\n") or (
                b"part-2;" in data and b"chunked" not in data.lower()
            ):
                break
    status, headers, body = split_response(data)
    assert status == 200
    if headers.get("transfer-encoding") == "chunked":
        assert body.endswith(b"0\r\n\r\n")
    assert b"part-1;" in body
    assert b"part-2;" in body


def test_send_respects_backpressure_from_a_slow_reader(launch: Launcher, tmp_path: Path) -> None:
    server = launch.fd("apps.asgi_behave:app")
    progress = tmp_path / "progress"
    total = 200 * 1024 * 1024

    def sent() -> int:
        try:
            return int(progress.read_text() or 0)
        except (OSError, ValueError):
            return 0

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.settimeout(10)
        s.connect((server.host, server.port))
        s.sendall(
            f"GET /flood?progress={q(progress)}&total={total} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert wait_for(lambda: sent() > 0, 10), server.output
        # Without backpressure the app would push all 200 MB into memory in a moment.
        assert not wait_for(lambda: sent() >= total, 4), "app was never paused"
        assert sent() < total // 2
        pids = process_tree(server.proc.pid)
        biggest = max(rss_kib(p) for p in pids)
        assert biggest < 150 * 1024, f"server RSS {biggest} KiB for an unread 200 MB response"
    finally:
        s.close()
    # The server survives the aborted transfer.
    with httpx.Client(timeout=10) as client:
        assert client.get(server.url + "/ok").status_code == 200


def test_paused_transfer_resumes_and_completes(behave: Server, tmp_path: Path) -> None:
    """A reader with a tiny receive buffer makes the server pause and resume many times;
    every byte still arrives, in order, with nothing lost or duplicated."""
    progress = tmp_path / "progress"
    total = 16 * 1024 * 1024 + 123
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.settimeout(30)
        s.connect((behave.host, behave.port))
        s.sendall(
            f"GET /flood?progress={q(progress)}&total={total}&chunk=65536 HTTP/1.1\r\n"
            "Host: x\r\n\r\n".encode()
        )
        status, headers, body = read_response(s, timeout=30)
    finally:
        s.close()
    assert status == 200
    assert int(headers["content-length"]) == total
    assert len(body) == total
    assert body == b"f" * total


# ---------------------------------------------------------------------------------------
# App errors
# ---------------------------------------------------------------------------------------


def _since(server: Server, start: int) -> str:
    return server.output[start:]


def test_exception_before_response_start_gives_500_and_traceback(behave: Server) -> None:
    start = len(behave.output)
    data, _ = exchange(
        behave, b"GET /raise-before HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    status, _, _ = split_response(data)
    assert status == 500, data
    assert wait_for(lambda: "boom-before-start-7431" in _since(behave, start), 10), behave.output
    assert wait_for(lambda: "Traceback" in _since(behave, start), 10), behave.output
    with httpx.Client(timeout=10) as client:
        assert client.get(behave.url + "/ok").status_code == 200


def test_exception_after_response_start_closes_connection(behave: Server) -> None:
    start = len(behave.output)
    data, closed = exchange(behave, b"GET /raise-after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed, "connection left open after the app crashed mid-response"
    status, headers, body = split_response(data)
    assert status == 200
    assert headers.get("content-length") == "100"
    assert len(body) < 100  # the client sees an incomplete response
    assert wait_for(lambda: "boom-after-start-7432" in _since(behave, start), 10), behave.output
    assert wait_for(lambda: "Traceback" in _since(behave, start), 10), behave.output


def test_exception_after_chunked_start_closes_connection(behave: Server) -> None:
    start = len(behave.output)
    data, closed = exchange(behave, b"GET /raise-after-chunked HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed, "connection left open after the app crashed mid-response"
    status, headers, body = split_response(data)
    assert status == 200
    assert b"yyyyyyyyyy" in body
    assert headers.get("transfer-encoding") == "chunked"
    assert not body.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it incomplete
    assert wait_for(lambda: "boom-after-start-chunked-7433" in _since(behave, start), 10)
    assert wait_for(lambda: "Traceback" in _since(behave, start), 10), behave.output


def error_logged(server: Server, start: int, path: str) -> bool:
    """An ERROR-level line about ``path`` appeared after offset ``start``."""
    return any(
        re.search(r"\bERROR\b", line) and path in line
        for line in _since(server, start).splitlines()
    )


def test_app_returning_without_response_gives_500(behave: Server) -> None:
    start = len(behave.output)
    data, _ = exchange(behave, b"GET /no-response HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, _ = split_response(data)
    assert status == 500, data

    assert wait_for(lambda: error_logged(behave, start, "/no-response"), 10), behave.output


def test_app_returning_mid_body_closes_connection(behave: Server) -> None:
    start = len(behave.output)
    data, closed = exchange(behave, b"GET /partial-return HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed, "connection left open after the app returned mid-response"
    status, headers, body = split_response(data)
    assert status == 200
    assert b"partial" in body
    # Incomplete: no terminating chunk, nor a complete Content-Length body.
    if headers.get("transfer-encoding") == "chunked":
        assert not body.endswith(b"0\r\n\r\n")
    else:
        assert "content-length" not in headers or int(headers["content-length"]) > len(body)

    assert wait_for(lambda: error_logged(behave, start, "/partial-return"), 10), behave.output
