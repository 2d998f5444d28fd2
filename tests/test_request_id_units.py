"""Fast unit tests of request IDs (``pounce.asgi.requestid``) and of where they go:
the scope builder, the HTTP/1.1 bridge over a fake transport (both parsers), the
server's own error responses, and the log helpers.  The end-to-end tests on real
sockets are in test_request_id.py."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from helpers.fakes import Bridge, FakeSink, split_responses
from helpers.fakes import run_loop as run
from pounce.asgi.http import HTTPCycle
from pounce.asgi.requestid import RequestIds, add_header, log_suffix
from pounce.protocols import http11
from pounce.types import Receive, Scope, Send

GENERATED = re.compile(r"[0-9a-f]{32}")
PARSERS = pytest.mark.parametrize("parser", ["fast", "h11"])


# -- RequestIds ---------------------------------------------------------------------------


def test_new_ids_are_32_hex_digits_and_unique() -> None:
    ids = RequestIds("X-Request-ID")
    made = {ids.new() for _ in range(10_000)}
    assert len(made) == 10_000
    assert all(GENERATED.fullmatch(rid) for rid in made)
    # Two workers (two sources seeded from os.urandom) do not repeat each other.
    assert not made & {RequestIds("X-Request-ID").new() for _ in range(1000)}


def test_name_is_lower_case_for_reading_and_writing() -> None:
    ids = RequestIds("X-Trace-Id")
    assert ids.name == b"x-trace-id"
    assert ids.field == b"x-trace-id: "


@pytest.mark.parametrize("value", [b"abc", b"A.b:c_d-9", b"x" * 200, b"0"])
def test_a_trusted_peers_valid_id_is_kept(value: bytes) -> None:
    ids = RequestIds("X-Request-ID")
    headers = [(b"host", b"h"), (b"x-request-id", value), (b"x-request-id", b"second")]
    assert ids.take(headers, True) == value.decode()
    assert ids.take(headers, False) != value.decode()  # never from an untrusted peer
    assert headers[1] == (b"x-request-id", value)  # read, not changed


@pytest.mark.parametrize(
    "value",
    [b"", b"x" * 201, b"a b", b"a/b", b"a;b", b'a"b', b"caf\xe9", b"a\tb", b"a,b", b"a\x00b"],
)
def test_anything_else_is_replaced(value: bytes) -> None:
    ids = RequestIds("X-Request-ID")
    rid = ids.take([(b"x-request-id", value)], True)
    assert GENERATED.fullmatch(rid), rid


def test_only_the_first_header_counts() -> None:
    ids = RequestIds("X-Request-ID")
    rid = ids.take([(b"x-request-id", b"bad value"), (b"x-request-id", b"good")], True)
    assert GENERATED.fullmatch(rid), rid


def test_assign_fills_the_extension_and_returns_the_id() -> None:
    ids = RequestIds("X-Request-ID")
    extensions: dict[str, Any] = {"tls": None}
    rid = ids.assign([(b"x-request-id", b"kept")], True, extensions)
    assert extensions == {"tls": None, "request_id": "kept"}
    assert rid == b"kept"
    assert ids.line(rid) == b"x-request-id: kept\r\n"
    assert ids.pair({"extensions": extensions}) == (b"x-request-id", b"kept")
    assert ids.pair({"extensions": {}}) is None


def test_add_header_leaves_the_apps_own_alone() -> None:
    pair = (b"x-request-id", b"ours")
    assert add_header([(b"a", b"1")], pair) == [(b"a", b"1"), pair]
    theirs = [(b"X-Request-Id", b"theirs")]
    assert add_header(theirs, pair) == theirs
    assert add_header(theirs, None) == theirs


def test_log_suffix() -> None:
    assert log_suffix({"extensions": {"request_id": "r1"}}) == (" rid=r1", {"request_id": "r1"})
    assert log_suffix({"extensions": {}}) == ("", None)
    assert log_suffix({}) == ("", None)


def test_error_response_takes_extra_lines() -> None:
    plain = http11.error_response(500, "Internal Server Error")
    with_id = http11.error_response(500, "Internal Server Error", b"x-request-id: r3\r\n")
    head, _, body = with_id.partition(b"\r\n\r\n")
    assert head.endswith(b"\r\nx-request-id: r3")
    assert body == b"Internal Server Error\n"
    assert with_id.replace(b"x-request-id: r3\r\n", b"") == plain


# -- the HTTP/1.1 bridge over a fake transport ----------------------------------------------


def _app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = scope["extensions"].get("request_id", "none").encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _id_lines(data: bytes) -> list[bytes]:
    head = data.partition(b"\r\n\r\n")[0]
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")]


@PARSERS
@pytest.mark.parametrize("headers", [[], [(b"server", b"other")]], ids=["plain", "own-server"])
def test_response_head_has_the_scopes_id(parser: str, headers: list[tuple[bytes, bytes]]) -> None:
    async def main() -> None:
        b = Bridge(_app(headers), **{"http.parser": parser})
        b.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: untrusted\r\n\r\n")
        [(_, sent, body)] = split_responses(await b.response())
        assert GENERATED.fullmatch(body.decode())
        assert sent[b"x-request-id"] == body
        assert _id_lines(b.transport.data) == [b"x-request-id: " + body]

    run(main)


@PARSERS
@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-REQUEST-ID", b"app")],
        [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"x-request-id", b"app")],
        [(b"server", b"other"), (b"X-Request-Id", b"app")],
    ],
    ids=["alone", "with-date", "with-server"],
)
def test_the_apps_own_id_header_wins(parser: str, headers: list[tuple[bytes, bytes]]) -> None:
    async def main() -> None:
        b = Bridge(_app(headers), **{"http.parser": parser})
        b.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        await b.response()
        assert [line.partition(b": ")[2] for line in _id_lines(b.transport.data)] == [b"app"]

    run(main)


@PARSERS
def test_trusted_id_and_disabled(parser: str) -> None:
    async def main() -> None:
        b = Bridge(_app([]), **{"http.parser": parser, "proxy.trusted": ("127.0.0.1",)})
        b.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: from.proxy\r\n\r\n")
        [(_, headers, body)] = split_responses(await b.response())
        assert body == b"from.proxy" and headers[b"x-request-id"] == b"from.proxy"

        off = Bridge(_app([]), **{"http.parser": parser, "request_id.enabled": False})
        assert off.state.request_ids is None
        off.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        [(_, headers, body)] = split_responses(await off.response())
        assert body == b"none" and b"x-request-id" not in headers

    run(main)


# -- the server's own answers for a request with a scope ---------------------------------------


def _cycle(sink: FakeSink) -> HTTPCycle:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/p",
        "http_version": "1.1",
        "extensions": {"request_id": "r4"},
    }
    return HTTPCycle(sink, scope, True, False, False, None, None, b"r4")


def test_a_500_after_an_app_failure_has_the_id_and_the_log_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        sink = FakeSink()
        await _cycle(sink).run(boom)
        assert sink.data.startswith(b"HTTP/1.1 500 ")
        assert _id_lines(sink.data) == [b"x-request-id: r4"]

    with caplog.at_level(logging.ERROR, logger="pounce.error"):
        run(main)
    (record,) = [r for r in caplog.records if r.name == "pounce.error"]
    assert record.getMessage() == "Exception in ASGI application (GET /p rid=r4)"
    assert record.request_id == "r4"  # type: ignore[attr-defined]


def test_a_408_for_a_stalled_body_has_the_id() -> None:
    async def main() -> None:
        sink = FakeSink()
        _cycle(sink).request_timed_out()
        assert sink.data.startswith(b"HTTP/1.1 408 ")
        assert _id_lines(sink.data) == [b"x-request-id: r4"]

    run(main)
