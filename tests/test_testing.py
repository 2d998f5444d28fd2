"""``pounce.testing``: ``TestServer`` serves an app on a real socket in a background thread
(HTTP/1.1, HTTP/2, WebSocket, lifespan), and the ``pounce_server`` fixture works in a user's
own pytest run."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from apps.middleware_app import app
from helpers.server import child_env
from helpers.ws import h2c
from pounce.errors import AppImportError, LifespanError
from pounce.testing import TestServer

pytestmark = pytest.mark.slow

MIDDLEWARE = ["apps.middleware_app:Outer", "apps.middleware_app:Inner"]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pounce-test-server"]


def test_http11_http2_websocket_and_lifespan_state() -> None:
    with TestServer(app, middleware=MIDDLEWARE) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.ws_url == f"ws://127.0.0.1:{server.port}"
        r = httpx.get(server.url + "/a", timeout=10)
        assert r.status_code == 200
        assert r.json()["seen"] == ["outer", "inner"]
        assert r.json()["state"]["started"] is True  # lifespan startup ran before __enter__
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            r2 = client.get(server.url + "/b")
        assert r2.http_version == "HTTP/2" and r2.json()["http"] == "2"
        with connect(server.ws_url + "/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["path"] == "/ws"
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
        client2 = h2c(server)  # type: ignore[arg-type]  # host and port are all it reads
        with client2.sock:
            stream = client2.open("/ws2", scheme="http")
            assert stream.status == b"200"
            message = stream.message()
            assert isinstance(message, str) and json.loads(message)["http"] == "2"
        port = server.port
    assert refused(port)
    assert server_threads() == []


def test_an_import_string_and_settings() -> None:
    with TestServer("apps.middleware_app:app", http2=False) as server:
        r = httpx.get(server.url + "/", timeout=10)
        assert r.json()["seen"] == []
        h2_client = httpx.Client(http1=False, http2=True, timeout=10)
        with h2_client, pytest.raises(httpx.HTTPError):
            h2_client.get(server.url + "/")


def test_startup_failure_raises_in_enter_and_leaves_nothing() -> None:
    server = TestServer("apps.middleware_app:failing_startup")
    with pytest.raises(LifespanError, match="no database"):
        server.__enter__()
    assert refused(server.port)
    assert server_threads() == []


def test_a_bad_middleware_raises_before_serving() -> None:
    with pytest.raises(AppImportError, match=r"server\.middleware\[0\]: could not import"):
        TestServer(app, middleware=["no_such_module_t1:Mw"]).start()
    assert server_threads() == []


def test_async_with() -> None:
    async def main() -> int:
        async with TestServer(app) as server:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(server.url + "/async")
            assert r.json()["path"] == "/async"
            return server.port

    port = asyncio.run(main())
    assert refused(port)


def test_the_fixture_in_a_users_pytest_run(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["pounce.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        "import httpx\n"
        "from apps.middleware_app import app\n"
        "\n"
        "PORTS = []\n"
        "\n"
        "def test_serves(pounce_server):\n"
        "    server = pounce_server(app, middleware=['apps.middleware_app:Outer'])\n"
        "    PORTS.append(server.port)\n"
        "    r = httpx.get(server.url + '/user', timeout=10)\n"
        "    assert r.json()['seen'] == ['outer']\n"
        "    assert r.json()['state']['started'] is True\n"
        "\n"
        "def test_stopped_after_the_test():\n"
        "    import socket\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', PORTS[0]), timeout=5).close()\n"
        "    except ConnectionRefusedError:\n"
        "        return\n"
        "    raise AssertionError('still listening')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
