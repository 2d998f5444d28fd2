"""The one scope builder (asgi/scope.py), the launch policy (worker/launch.py) and the
table of protocol take-overs (worker/context.py): values in, values out."""

from __future__ import annotations

import asyncio
from typing import Any

from pounce.asgi.scope import connection_template, h2_request, http_scope, websocket_scope
from pounce.protocols import http11
from pounce.worker.context import ProtocolHooks, Upgradable, upgrade_tokens
from pounce.worker.launch import launch, track
from pounce.worker.runner import AVAILABLE as RUNNER_AVAILABLE
from pounce.worker.runner import ConnectionRunner

CLIENT = ("127.0.0.1", 5555)
SERVER = ("127.0.0.1", 8000)


def _scope(target: bytes, *, root_path: str = "", method: bytes = b"GET") -> dict[str, Any]:
    template = connection_template("http", CLIENT, SERVER, root_path)
    return dict(http_scope(template, "1.1", method, target, [], {"k": 1}, {}))


def test_the_parts_of_a_target() -> None:
    scope = _scope(b"/a%20b/c?x=1&y=%20")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (
        "/a b/c",
        b"/a%20b/c",
        b"x=1&y=%20",
    )
    assert _scope(b"/p#frag")["raw_path"] == b"/p"
    assert _scope(b"/p?q#frag")["raw_path"] == b"/p"
    assert _scope(b"/%ff")["path"] == "/\ufffd"


def test_absolute_form_is_cut_to_its_path() -> None:
    assert _scope(b"http://example.com/x?y")["raw_path"] == b"/x"
    assert _scope(b"http://example.com/x?y")["query_string"] == b"y"
    assert _scope(b"http://example.com")["path"] == "/"
    assert _scope(b"*", method=b"OPTIONS")["path"] == "*"


def test_root_path_goes_in_front() -> None:
    scope = _scope(b"/x", root_path="/api")
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("/api/x", b"/api/x", "/api")


def test_the_whole_scope_and_the_template_untouched() -> None:
    template = connection_template("https", CLIENT, SERVER, "")
    frozen = dict(template)
    state = {"db": "x"}
    extensions = {"tls": {"server_cert": None}}
    headers = [(b"host", b"h")]
    scope = http_scope(template, "1.1", b"PURGE", b"/p?q", headers, state, extensions)
    assert dict(scope) == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "PURGE",
        "scheme": "https",
        "path": "/p",
        "raw_path": b"/p",
        "query_string": b"q",
        "root_path": "",
        "headers": headers,
        "client": CLIENT,
        "server": SERVER,
        "state": state,
        "extensions": extensions,
    }
    assert scope["state"] is not state  # each request gets its own copy
    assert template == frozen


def test_h2_pseudo_headers_become_the_request_line() -> None:
    got = h2_request(
        [(b":method", b"GET"), (b":path", b"/x"), (b":authority", b"h:1"), (b"a", b"b")]
    )
    assert got == (b"GET", b"/x", [(b"host", b"h:1"), (b"a", b"b")])
    # a host header wins over :authority
    got = h2_request(
        [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a"), (b"host", b"b")]
    )
    assert got is not None and got[2] == [(b"host", b"b")]
    assert h2_request([(b":path", b"/")]) is None
    assert h2_request([(b":method", b"GET"), (b":path", b"")]) is None


def test_http11_and_http2_give_one_scope_for_one_request() -> None:
    parser = http11.RequestParser()
    request = parser.feed_head(b"GET /a%2Fb?c=d HTTP/1.1\r\nhost: example.com\r\nx-y: z\r\n\r\n")
    assert request is not None
    template = connection_template("http", CLIENT, SERVER, "/root")
    h1 = http_scope(template, "2", request.method, request.target, request.headers, {}, {})
    h2 = h2_request(
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/a%2Fb?c=d"),
            (b":authority", b"example.com"),
            (b"x-y", b"z"),
        ]
    )
    assert h2 is not None
    assert dict(http_scope(template, "2", *h2, {}, {})) == dict(h1)


def test_websocket_scope_from_the_http_scope() -> None:
    template = connection_template("https", CLIENT, SERVER, "")
    tls = {"server_cert": None}
    http = http_scope(template, "1.1", b"GET", b"/ws?a", [], {"s": 1}, {"tls": tls})
    ws = websocket_scope(http, ["chat"])
    assert ws["type"] == "websocket" and ws["scheme"] == "wss"
    assert ws["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (ws["path"], ws["query_string"], ws["subprotocols"]) == ("/ws", b"a", ["chat"])
    assert ws["extensions"] == {"websocket.http.response": {}, "tls": tls}


# -- the table of protocol take-overs -------------------------------------------------


def _upgrade_request(value: bytes) -> http11.Request:
    parser = http11.RequestParser()
    request = parser.feed_head(
        b"GET / HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: " + value + b"\r\n\r\n"
    )
    assert request is not None and request.upgrade
    return request


def test_upgrade_tokens() -> None:
    assert upgrade_tokens([(b"upgrade", b"WebSocket, h2c"), (b"upgrade", b" foo ")]) == [
        b"websocket",
        b"h2c",
        b"foo",
    ]


def test_upgrades_are_asked_in_the_order_of_the_tokens() -> None:
    asked: list[bytes] = []

    def handler(token: bytes, takes: bool) -> Any:
        def handle(conn: Upgradable, request: http11.Request, scope: Any) -> bool:
            asked.append(token)
            return takes

        return handle

    hooks = ProtocolHooks(
        upgrades={b"h2c": handler(b"h2c", False), b"websocket": handler(b"websocket", True)}
    )
    conn: Any = object()
    assert hooks.upgrade(conn, _upgrade_request(b"h2c, websocket"), {})
    assert asked == [b"h2c", b"websocket"]  # h2c declined: on to the next token
    asked.clear()
    assert not hooks.upgrade(conn, _upgrade_request(b"foo"), {})
    assert asked == []
    assert not ProtocolHooks().upgrade(conn, _upgrade_request(b"websocket"), {})


# -- the launch policy ------------------------------------------------------------------


async def _quick(done: list[str]) -> None:
    done.append("ran")


async def _slow(done: list[str], go: asyncio.Event) -> None:
    await go.wait()
    done.append("ran")


def test_launch_without_a_runner_gives_a_task_tracked_until_done() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        done: list[str] = []
        go = asyncio.Event()
        task = launch(_slow(done, go), loop)
        assert task is not None
        track(task, tasks)
        assert tasks == {task}
        go.set()
        await asyncio.wait_for(task, 5)
        await asyncio.sleep(0)  # (the done callback runs in the next pass)
        assert done == ["ran"] and tasks == set()
        track(None, tasks)
        assert tasks == set()

    asyncio.run(main())


def test_launch_on_an_idle_runner_steps_the_app_at_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        runner = ConnectionRunner(loop)
        done: list[str] = []
        result: list[asyncio.Task[None] | None] = []
        finished = asyncio.Event()

        def from_a_callback() -> None:  # (as a protocol callback: no Task running)
            result.append(launch(_quick(done), loop, runner))
            finished.set()

        loop.call_soon(from_a_callback)
        await asyncio.wait_for(finished.wait(), 5)
        assert result == [None] and done == ["ran"]  # finished in its eager step, no Task
        # From inside a Task the runner cannot be entered: the app gets a Task.
        task = launch(_quick(done), loop, runner)
        assert task is not None and task is not runner.task
        await asyncio.wait_for(task, 5)
        assert done == ["ran", "ran"]
        runner.close()

    assert RUNNER_AVAILABLE
    asyncio.run(main())
