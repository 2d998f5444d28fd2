"""The ASGI lifespan protocol, end to end through ``pounce serve``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from helpers.asgi import Launcher, read_until_close, split_response, wait_exit
from helpers.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_startup_and_shutdown_run(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_lifespan:app")
    assert server.wait_output("LIFESPAN-STARTUP-OK"), server.output
    with httpx.Client(timeout=10) as client:
        r = client.get(server.url + "/")
    assert r.status_code == 200
    assert r.json()["text"] == "lifespan-app"
    assert "LIFESPAN-SHUTDOWN-OK" not in server.output
    server.signal(signal.SIGTERM)
    code = wait_exit(server, 15)
    assert code == 0, server.output
    out = server.output
    assert "LIFESPAN-SHUTDOWN-OK" in out, out
    assert out.index("LIFESPAN-STARTUP-OK") < out.index("LIFESPAN-SHUTDOWN-OK")


def test_state_set_in_startup_reaches_every_request(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_lifespan:app")
    states = []
    for _ in range(3):
        with httpx.Client(timeout=10) as client:
            states.append(client.get(server.url + "/a").json()["state"])
    with httpx.Client(timeout=10) as client:
        for path in ("/b", "/c", "/d"):
            states.append(client.get(server.url + path).json()["state"])
    for state in states:
        assert state is not None
        assert state["db"] == "connected-db-token"
        assert state["counter"] == 7


def test_requests_wait_for_startup_to_complete(launch: Launcher, tmp_path: Path) -> None:
    release = tmp_path / "release"
    server = launch.fd(
        "apps.asgi_lifespan:slow_startup", env={"ASGI_TEST_RELEASE": str(release)}, ready=False
    )
    assert server.wait_output("SLOW-STARTUP-WAITING"), server.output
    # A request sent while startup is still running (the kernel queues the connection)...
    with server.connect() as s:
        s.sendall(b"GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        release.write_text("go")
        data, _ = read_until_close(s, timeout=15)
    # ...is only handled after startup completed: it sees the state startup set.
    status, _, body = split_response(data)
    assert status == 200, data
    assert json.loads(body)["state"]["db"] == "ready-after-slow-startup"


def _serve_and_expect_failure(launch: Launcher, app: str, needle: str) -> None:
    port = free_port()
    server = launch.spawn("serve", app, "--host", "127.0.0.1", "--port", str(port))
    code = wait_exit(server, 20)
    assert code is not None, f"server kept running after a failed startup:\n{server.output}"
    assert code != 0, server.output
    assert needle in server.output, server.output


def test_startup_failed_message_exits_nonzero(launch: Launcher) -> None:
    _serve_and_expect_failure(
        launch, "apps.asgi_lifespan:startup_failed", "database-unreachable-5150"
    )


def test_exception_in_startup_exits_nonzero(launch: Launcher) -> None:
    _serve_and_expect_failure(launch, "apps.asgi_lifespan:startup_raises", "startup-exploded-6021")


def test_startup_failure_with_two_workers_exits_nonzero(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_lifespan:startup_raises", "--workers", "2", ready=False)
    code = wait_exit(server, 20)
    assert code is not None, f"server kept running (restarting workers?):\n{server.output}"
    assert code != 0
    assert "startup-exploded-6021" in server.output


def test_startup_failure_with_inherited_fd_exits_nonzero(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_lifespan:startup_failed", ready=False)
    code = wait_exit(server, 20)
    assert code is not None, server.output
    assert code != 0
    assert "database-unreachable-5150" in server.output


def test_app_without_lifespan_support_still_serves(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_lifespan:no_lifespan")
    with httpx.Client(timeout=10) as client:
        for _ in range(2):
            r = client.get(server.url + "/x")
            assert r.status_code == 200
            assert r.json()["text"] == "no-lifespan-app"
    server.signal(signal.SIGTERM)
    assert wait_exit(server, 15) == 0, server.output
