"""``pounce.run`` in a real process: an import string (process workers), an app object (a
thread worker), ``config=`` under settings; the daemon stops on SIGTERM with exit code 0."""

from __future__ import annotations

import signal
import sys
import tempfile

import httpx
import pytest

from helpers.asgi import Launcher, finish, wait_exit
from helpers.server import Server, free_port

pytestmark = pytest.mark.slow


def run_script(launch: Launcher, body: str) -> Server:
    """``python -c`` with ``body`` (``PORT`` and ``CTL`` are set for it), stopped at teardown."""
    port = free_port()
    ctl = tempfile.mktemp(prefix="pnc-api-", suffix=".sock")
    code = f"import pounce\nPORT = {port}\nCTL = {ctl!r}\n{body}"
    return launch.spawn(cmd=[sys.executable, "-c", code], host="127.0.0.1", port=port)


def stop(server: Server) -> int:
    """SIGTERM, then the exit code (the pipe closed)."""
    return server.stop(timeout=30)


def test_an_import_string_runs_process_workers(launch: Launcher) -> None:
    server = run_script(
        launch,
        'pounce.run("apps.middleware_app:app", port=PORT, workers=2, control_socket=CTL,\n'
        '           middleware=["apps.middleware_app:Outer"], worker_mode="process")\n',
    )
    server.wait_ready()
    r = httpx.get(server.url + "/", timeout=10)
    assert r.json()["seen"] == ["outer"]
    assert server.wait_output("2 worker(s), process mode", 30), server.output
    assert stop(server) == 0, server.output


def test_an_app_object_runs_on_a_thread_worker(launch: Launcher) -> None:
    server = run_script(
        launch,
        "from apps.middleware_app import app, Inner\n"
        'pounce.run(app, port=PORT, control_socket=CTL, middleware=["apps.middleware_app:Outer"])\n',
    )
    server.wait_ready()
    with httpx.Client(timeout=10, http1=False, http2=True) as client:
        r = client.get(server.url + "/")
    assert r.http_version == "HTTP/2"
    assert r.json()["seen"] == ["outer"]
    assert r.json()["state"]["started"] is True
    assert server.wait_output("1 worker(s), thread mode", 30), server.output
    assert "apps.middleware_app:app (object)" in server.output  # the banner's app
    assert stop(server) == 0, server.output


def test_config_with_settings_over_it(launch: Launcher) -> None:
    server = run_script(
        launch,
        "from pounce.config import Config, ListenConfig, ServerConfig\n"
        "from apps.middleware_app import app\n"
        "config = Config(\n"
        "    listen=(ListenConfig(host='127.0.0.1', port=1),),\n"
        "    server=ServerConfig(middleware=('apps.middleware_app:Outer',)),\n"
        ")\n"
        "pounce.run(app, config=config, port=PORT, control_socket=CTL)\n",
    )
    server.wait_ready()
    r = httpx.get(server.url + "/", timeout=10)
    assert r.json()["seen"] == ["outer"]  # from the config; the port from the settings
    assert stop(server) == 0, server.output


def test_a_boot_failure_raises_out_of_run(launch: Launcher) -> None:
    server = run_script(
        launch,
        "from pounce.errors import PounceError\n"
        "try:\n"
        '    pounce.run("apps.middleware_app:failing_startup", port=PORT, control_socket=CTL)\n'
        "except PounceError as exc:\n"
        "    print('RAISED', type(exc).__name__, exc)\n"
        "    raise SystemExit(7)\n",
    )
    assert wait_exit(server, 30) == 7, server.output
    assert finish(server) == 7
    assert "RAISED" in server.output and "no database" in server.output, server.output


def test_a_reload_restarts_the_thread_worker_with_the_same_object(launch: Launcher) -> None:
    server = run_script(
        launch,
        "from apps.middleware_app import app\npounce.run(app, port=PORT, control_socket=CTL)\n",
    )
    server.wait_ready()
    server.signal(signal.SIGHUP)
    assert server.wait_output("generation 2 ready; draining generation 1", 30), server.output
    r = httpx.get(server.url + "/after", timeout=10)
    assert r.json()["path"] == "/after" and r.json()["state"]["started"] is True
    assert stop(server) == 0, server.output
