"""End to end: the installed ``pounce`` command with httpx and curl, logs, workers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helpers.asgi import Launcher, json_lines, scope_of, wait_tcp
from helpers.procs import process_tree
from helpers.server import ROOT, Server, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CURL = "/usr/bin/curl"
CONSOLE_SCRIPT = Path(sys.executable).parent / "pounce"
LEVEL_KEYS = ("level", "levelname", "severity", "log.level")


def get(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.get(url)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, timeout=30)


# -- the console script serving examples/hello.py -------------------------------------------


def _check_hello(port: int) -> None:
    url = f"http://127.0.0.1:{port}/"
    r = get(url)
    assert r.status_code == 200
    # curl, with two requests on one connection.
    result = curl("-o", "-", "-w", "|%{http_code}", url, url)
    assert result.returncode == 0, result.stderr
    one = r.content + b"|200"
    assert result.stdout == one + one, (result.stdout, r.content)


@pytest.mark.parametrize("cli", ["console-script", "python-m"])
def test_hello_example_by_module(launch: Launcher, cli: str) -> None:
    port = free_port()
    args = ["serve", "examples.hello:app", "--host", "127.0.0.1", "--port", str(port)]
    if cli == "console-script":
        server = launch.spawn(cmd=[str(CONSOLE_SCRIPT), *args], cwd=ROOT)
    else:
        server = launch.spawn(*args, cwd=ROOT)
    wait_tcp(server, "127.0.0.1", port)
    _check_hello(port)


def test_hello_example_by_config_with_listen_override(launch: Launcher) -> None:
    port = free_port()
    server = launch.spawn(
        cmd=[
            str(CONSOLE_SCRIPT), "serve", "-c", "examples/pounce.toml",
            "--host", "127.0.0.1", "--port", str(port),
        ],
        cwd=ROOT,
    )  # fmt: skip
    wait_tcp(server, "127.0.0.1", port)
    _check_hello(port)


def test_curl_post_and_head(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_scope:app")
    result = curl("-X", "POST", "--data-binary", "x" * 777, server.url + "/posted?k=v")
    assert result.returncode == 0, result.stderr
    payload = scope_of(httpx.Response(200, content=result.stdout))
    assert payload["scope"]["method"] == "POST"
    assert payload["body_length"] == 777
    assert payload["scope"]["query_string"] == b"k=v"
    head = curl("-I", server.url + "/posted")
    assert head.returncode == 0, head.stderr
    assert head.stdout.startswith(b"HTTP/1.1 200")


# -- several workers ------------------------------------------------------------------------


def test_two_workers_serve_requests(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_scope:app", "--workers", "2")
    pids = set()
    for _ in range(20):
        payload = scope_of(get(server.url + "/w"))
        assert payload["scope"]["state"]["answer"] == 42
        pids.add(payload["pid"])
    tree = set(process_tree(server.proc.pid))
    assert pids <= tree, (pids, tree)
    free_threaded = not getattr(sys, "_is_gil_enabled", lambda: True)()
    if not free_threaded:
        # Workers are processes on a GIL build: two of them under the supervisor.
        assert wait_for(lambda: len(process_tree(server.proc.pid)) >= 3, 10), tree


# -- logs ---------------------------------------------------------------------------------


def _error_request(server: Server) -> None:
    r = get(server.url + "/raise-before")
    assert r.status_code == 500


def test_access_log_text(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app")
    assert get(server.url + "/access-probe-123?z=1").status_code == 200

    def logged() -> bool:
        return any(
            "/access-probe-123" in line and "200" in line and "GET" in line
            for line in server.output.splitlines()
        )

    assert wait_for(logged, 10), server.output


def test_access_log_json(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--log-format", "json")
    assert get(server.url + "/json-probe-456").status_code == 200

    def entry() -> dict | None:
        for obj in json_lines(server.output):
            if str(obj.get("path", "")).startswith("/json-probe-456"):
                return obj
        return None

    assert wait_for(lambda: entry() is not None, 10), server.output
    obj = entry()
    assert obj is not None
    assert obj["method"] == "GET"
    assert int(obj["status"]) == 200


def test_error_log_text_has_traceback(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app")
    _error_request(server)
    assert server.wait_output("boom-before-start-7431"), server.output
    assert server.wait_output("Traceback"), server.output


def test_error_log_json_is_json(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--log-format", "json")
    _error_request(server)

    def error_entry() -> dict | None:
        for obj in json_lines(server.output):
            if "boom-before-start-7431" in str(obj):
                return obj
        return None

    assert wait_for(lambda: error_entry() is not None, 10), server.output
    obj = error_entry()
    assert obj is not None
    assert "Traceback" in str(obj)


def _level(obj: dict) -> str | None:
    for key in LEVEL_KEYS:
        if key in obj:
            return str(obj[key]).lower()
    return None


def test_log_level_warning_suppresses_info(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--log-format", "json", "--log-level", "warning")
    assert get(server.url + "/quiet-probe").status_code == 200
    _error_request(server)  # an error is still logged, and marks the point we read up to

    def errors() -> list[dict]:
        return [o for o in json_lines(server.output) if "boom-before-start-7431" in str(o)]

    assert wait_for(lambda: bool(errors()), 10), server.output
    assert _level(errors()[0]) in ("error", "critical", "exception"), errors()
    levels = [_level(o) for o in json_lines(server.output)]
    assert "info" not in levels, server.output
    assert "debug" not in levels, server.output


def test_log_level_info_shows_info(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--log-format", "json", "--log-level", "info")
    assert get(server.url + "/loud-probe").status_code == 200

    def has_info() -> bool:
        return "info" in [_level(o) for o in json_lines(server.output)]

    assert wait_for(has_info, 10), server.output


def test_log_level_warning_text_format(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--log-level", "warning")
    assert get(server.url + "/quiet-text-probe").status_code == 200
    _error_request(server)
    assert server.wait_output("boom-before-start-7431"), server.output
    assert server.wait_output("Traceback"), server.output
    assert "/quiet-text-probe" not in server.output  # access lines are info lines
    assert not re.search(r"\bINFO\b", server.output), server.output


def test_log_level_info_text_format(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--log-level", "info")
    assert get(server.url + "/loud-text-probe").status_code == 200
    assert wait_for(lambda: bool(re.search(r"\bINFO\b", server.output)), 10), server.output


def test_no_access_log(launch: Launcher) -> None:
    server = launch.fd("apps.asgi_behave:app", "--no-access-log")
    assert get(server.url + "/silent-probe-789").status_code == 200
    # A later error line proves the log has caught up past the first request.
    _error_request(server)
    assert server.wait_output("boom-before-start-7431"), server.output
    assert "/silent-probe-789" not in server.output
