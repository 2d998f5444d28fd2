"""``[server] middleware``: ASGI middleware classes around the app, the first outermost, for
HTTP/1.1, HTTP/2 and WebSocket (over HTTP/1.1 and HTTP/2), in process and thread workers;
lifespan sees the wrapped app; bad entries fail at start naming ``server.middleware[i]``."""

from __future__ import annotations

import json
from pathlib import Path

import h2.events
import httpx
import pytest
from websockets.sync.client import connect

from helpers.asgi import Launcher, output_lines, wait_exit
from helpers.server import Server, free_port, run_pounce, start_server
from helpers.ws import h2c
from pounce.errors import AppImportError

pytestmark = pytest.mark.slow

APP = "apps.middleware_app:app"
OUTER, INNER = "apps.middleware_app:Outer", "apps.middleware_app:Inner"
BOTH = f"{OUTER},{INNER}"


def check_http(server: Server) -> None:
    """Outer saw the request first, Inner's header was added first; HTTP/1.1 and HTTP/2."""
    with httpx.Client(timeout=10) as client:
        r = client.get(server.url + "/one")
    with httpx.Client(timeout=10, http1=False, http2=True) as client:
        r2 = client.get(server.url + "/two")
    assert r2.http_version == "HTTP/2"
    for response, version in ((r, "1.1"), (r2, "2")):
        assert response.status_code == 200
        body = response.json()
        assert body["http"] == version
        assert body["seen"] == ["outer", "inner"]
        assert response.headers.get_list("x-layer") == ["inner", "outer"]
        # lifespan ran through the same wrapped app
        assert body["state"] == {"started": True, "lifespan_seen": ["outer", "inner"]}


def check_websocket(server: Server) -> None:
    url = f"ws://{server.host}:{server.port}/ws"
    with connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["seen"] == ["outer", "inner"]
        assert ws.response.headers.get_all("x-layer") == ["inner", "outer"]
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
    client = h2c(server)
    with client.sock:
        stream = client.open("/ws-h2", scheme="http")
        assert stream.status == b"200"
        message = stream.message()
        assert isinstance(message, str)
        assert json.loads(message)["seen"] == ["outer", "inner"]
        heads = [e for e in client.events if isinstance(e, h2.events.ResponseReceived)]
        assert heads and heads[0].headers is not None
        layers = [bytes(v) for k, v in heads[0].headers if bytes(k) == b"x-layer"]
        assert layers == [b"inner", b"outer"]


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_order_on_every_protocol(mode: str) -> None:
    server = start_server(APP, "--middleware", BOTH, "--worker-mode", mode)
    try:
        check_http(server)
        check_websocket(server)
    finally:
        assert server.stop() == 0, server.output


def test_reversed_list_reverses_the_order() -> None:
    server = start_server(APP, "--middleware", f"{INNER},{OUTER}")
    try:
        r = httpx.get(server.url + "/", timeout=10)
        assert r.json()["seen"] == ["inner", "outer"]
        assert r.headers.get_list("x-layer") == ["outer", "inner"]
    finally:
        server.stop()


def test_from_the_environment() -> None:
    server = start_server(APP, env={"POUNCE_SERVER_MIDDLEWARE": BOTH})
    try:
        check_http(server)
    finally:
        server.stop()


def test_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "pounce.toml"
    config.write_text(f'[server]\nmiddleware = ["{OUTER}", "{INNER}"]\n')
    server = start_server(APP, "-c", str(config))
    try:
        check_http(server)
    finally:
        server.stop()


def test_without_middleware_nothing_is_added() -> None:
    server = start_server(APP)
    try:
        r = httpx.get(server.url + "/", timeout=10)
        assert r.json()["seen"] == []
        assert "x-layer" not in r.headers
    finally:
        server.stop()


BAD = [
    ("no_such_module_m1:Mw", 'server.middleware[1]: could not import module "no_such_module_m1"'),
    (
        "apps.middleware_app:Missing",
        'server.middleware[1]: attribute "Missing" not found in module "apps.middleware_app"',
    ),
    (
        "apps.middleware_app:NOT_CALLABLE",
        'server.middleware[1]: "apps.middleware_app:NOT_CALLABLE" is not callable (got int)',
    ),
    (
        "apps.middleware_app:Raises",
        'server.middleware[1]: "apps.middleware_app:Raises"(app) raised RuntimeError: '
        "middleware constructor broke",
    ),
    (
        "apps.middleware_app:Sync",
        'server.middleware[1]: "apps.middleware_app:Sync(app)" takes one argument',
    ),
    (
        "apps.asgi_broken_import:app",
        'server.middleware[1]: importing "apps.asgi_broken_import" failed: '
        "ModuleNotFoundError: No module named 'definitely_missing_dep_77'",
    ),
]


@pytest.mark.parametrize(("entry", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_entry_fails_at_start_with_the_key_path(
    launch: Launcher, entry: str, message: str
) -> None:
    port = free_port()
    server = launch.spawn("serve", APP, "--port", str(port), "--middleware", f"{OUTER},{entry}")
    code = wait_exit(server, 30)
    assert code == AppImportError.exit_code, server.output
    last = output_lines(server.output)[-1]
    assert last.startswith(f"pounce: error: {message}"), server.output
    # The app's own traceback only when its code raised, as for a bad app.
    raised = entry.endswith(("Raises", "broken_import:app"))
    assert ("Traceback" in server.output) == raised, server.output


def test_a_bad_entry_fails_in_thread_mode_too(launch: Launcher) -> None:
    port = free_port()
    server = launch.spawn(
        "serve", APP, "--port", str(port), "--worker-mode", "thread",
        "--middleware", "no_such_module_m2:Mw",
    )  # fmt: skip
    assert wait_exit(server, 30) == AppImportError.exit_code, server.output
    expected = 'pounce: error: server.middleware[0]: could not import module "no_such_module_m2"'
    assert output_lines(server.output)[-1] == expected, server.output


def test_a_malformed_entry_is_a_config_error(launch: Launcher) -> None:
    server = launch.spawn("serve", APP, "--port", str(free_port()), "--middleware", OUTER + "()")
    assert wait_exit(server, 30) == 2, server.output
    assert "--middleware" in server.output and "module:Class" in server.output, server.output


def test_check_imports_the_middleware() -> None:
    good = run_pounce("check", APP, env={"POUNCE_SERVER_MIDDLEWARE": BOTH})
    assert good.returncode == 0, good.stderr
    assert f"app {APP} imported in 2 middleware" in good.stdout
    bad = run_pounce("check", APP, env={"POUNCE_SERVER_MIDDLEWARE": f"{OUTER},nope_m3:X"})
    assert bad.returncode == AppImportError.exit_code
    assert bad.stderr.strip().splitlines()[-1] == (
        'pounce: error: server.middleware[1]: could not import module "nope_m3"'
    )
