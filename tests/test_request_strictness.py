"""What a strict HTTP/1.1 server refuses or rewrites, the same on both engines.

Real servers (``--http-parser fast`` and ``h11``) and raw sockets: non-ASCII
request-targets, chunk extensions (RFC 9112 §7.1.1, bounded), absolute-form targets
(RFC 9112 §3.2.2), fixed error texts, and every header the server itself interprets
fuzzed with non-ASCII and control bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from helpers.server import Server, start_server
from helpers.wire import Response, Wire, request

pytestmark = pytest.mark.slow

ENGINES = ["fast", "h11"]


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = start_server("apps.http_echo:app", "--workers", "1", "--http-parser", request.param)
    yield srv
    srv.stop()
    if srv.proc.stdout is not None:
        srv.proc.stdout.close()


def exchange(server: Server, raw: bytes) -> tuple[Response, Wire]:
    wire = Wire.open(server.host, server.port)
    wire.try_send(raw)
    return wire.read_response(), wire


def assert_400_and_closed(server: Server, raw: bytes) -> Response:
    """A 400 with a fixed plain-text body, then the close, and the server serves on."""
    response, wire = exchange(server, raw)
    with wire:
        assert response.status == 400, (raw[:200], response.raw, response.body)
        assert wire.wait_closed(), "connection left open after the 400"
    assert FIXED_TEXT.fullmatch(response.body), response.body
    assert_still_serving(server)
    return response


def assert_still_serving(server: Server) -> None:
    assert server.proc.poll() is None, server.output
    with Wire.open(server.host, server.port) as wire:
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().body == b"hello world"


# An error body is a short fixed text: no repr of the peer's bytes, no quotes.
FIXED_TEXT = re.compile(rb"[A-Za-z][A-Za-z0-9 _-]*\n")

CHUNKED = b"POST /fixed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n"


# -- issue 11 item 8: the request-target is ASCII, error bodies are fixed texts ----------


@pytest.mark.parametrize(
    "target",
    [b"/\xc3\xa9?q=\xff", b"/?q=\xff", b"/\x80", b"http://b/\xe9"],
    ids=["path-and-query", "query", "0x80", "absolute-form"],
)
def test_non_ascii_request_target_is_400(server: Server, target: bytes) -> None:
    assert_400_and_closed(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")


def test_error_body_is_a_fixed_text_not_the_parsers_message(server: Server) -> None:
    """h11 refuses a bad chunk footer quoting the bytes (``bytearray(b'X...')``):
    the peer gets a fixed text, whichever engine found the error."""
    response = assert_400_and_closed(server, CHUNKED + b"5\r\nhelloXY\r\n0\r\n\r\n")
    assert b"bytearray" not in response.raw + response.body
    assert b"XY" not in response.body


# -- issue 11 item 9: chunk extensions follow RFC 9112 §7.1.1 and are bounded ------------

BAD_EXTENSIONS = {
    "space-in-value": b"5;a=b c\r\nhello\r\n0\r\n\r\n",
    "no-name": b"5;=b\r\nhello\r\n0\r\n\r\n",
    "bare-cr": b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "ctl": b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
    "non-ascii-token": b"5;a=\xff\r\nhello\r\n0\r\n\r\n",
    "unclosed-quote": b'5;a="b\r\nhello\r\n0\r\n\r\n',
    "space-before-semicolon": b"5 ;a\r\nhello\r\n0\r\n\r\n",
    "on-the-last-chunk": b"5\r\nhello\r\n0;a b\r\n\r\n",
    "line-over-4k": b"5;a=" + b"b" * 4093 + b"\r\nhello\r\n0\r\n\r\n",
    "line-over-4k-no-crlf-yet": b"5;a=" + b"b" * 6000,
    "over-64k-in-one-body": (b"1;a=" + b"b" * 4000 + b"\r\nx\r\n") * 17 + b"0\r\n\r\n",
}


@pytest.mark.parametrize("chunks", list(BAD_EXTENSIONS.values()), ids=list(BAD_EXTENSIONS))
def test_bad_or_oversized_chunk_extensions_are_400_and_close(server: Server, chunks: bytes) -> None:
    """/fixed never reads the body: the server reads it to reuse the connection for the
    pipelined request after it, and refuses it there all the same."""
    response, wire = exchange(server, CHUNKED + chunks + NEXT)
    with wire:
        assert response.status == 400, (response.raw, response.body)
        assert wire.wait_closed(), "connection left open after the 400"
        assert b"hello world" not in wire.buf
    assert_still_serving(server)


BAD_TRAILERS = {
    "content-length": b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
    "transfer-encoding": b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "obs-fold": b"5\r\nhello\r\n0\r\nX-T: 1\r\n folded\r\n\r\n",
    "ended-by-bare-lf": b"5\r\nhello\r\n0\r\n\n",
}


@pytest.mark.parametrize("chunks", list(BAD_TRAILERS.values()), ids=list(BAD_TRAILERS))
def test_bad_trailers_are_400_and_close(server: Server, chunks: bytes) -> None:
    """Trailers follow a header section's rules and carry no framing field."""
    response, wire = exchange(server, CHUNKED + chunks + NEXT)
    with wire:
        assert response.status == 400, (response.raw, response.body)
        assert wire.wait_closed(), "connection left open after the 400"
    assert_still_serving(server)


def test_valid_chunk_extensions_are_accepted(server: Server) -> None:
    chunks = (
        b'5; a = "b \\" c\xe9" ;d;e=f\t\r\nhello\r\n'
        + (b"1;a=" + b"b" * 4000 + b"\r\n!\r\n") * 3  # 12 KB of extensions: fine
        + b"0;last\r\n\r\n"
    )
    with Wire.open(server.host, server.port) as wire:
        wire.send(CHUNKED.replace(b"/fixed", b"/echo") + chunks + NEXT)
        echoed = wire.read_response()
        assert (echoed.status, echoed.body) == (200, b"hello!!!")
        assert wire.read_response().body == b"hello world"  # the connection was reused


# -- issue 11 item 10: absolute-form: the target's authority is the host ---------------


@pytest.mark.parametrize(
    ("target", "host", "path", "query"),
    [
        ("http://b/echo?q=1", "b", "/echo", "q=1"),
        ("http://b:8080?q=1", "b:8080", "/", "q=1"),
        ("https://[::1]/echo", "[::1]", "/echo", ""),
    ],
)
def test_absolute_form_authority_wins_over_host(
    server: Server, target: str, host: str, path: str, query: str
) -> None:
    with Wire.open(server.host, server.port) as wire:
        wire.send(f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        response = wire.read_response()
    assert response.status == 200, response.raw
    assert response.header("x-host") == host  # the Host the app finds in scope["headers"]
    assert (response.header("x-path"), response.header("x-query")) == (path, query)


def test_absolute_form_http10_without_host_gets_one(server: Server) -> None:
    with Wire.open(server.host, server.port) as wire:
        wire.send(b"GET http://b/echo HTTP/1.0\r\n\r\n")
        response = wire.read_response()
    assert (response.status, response.header("x-host")) == (200, "b")


@pytest.mark.parametrize("target", [b"http:///echo", b"http://u@b/echo", b"1ttp://b/echo"])
def test_absolute_form_without_a_valid_authority_is_400(server: Server, target: bytes) -> None:
    assert_400_and_closed(server, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")


# -- issue 11 item 13: the engines agree on the status of a 2^64 chunk size -------------


def test_chunk_size_of_2_to_the_64_is_400(server: Server) -> None:
    assert_400_and_closed(server, CHUNKED + b"10000000000000000\r\nhello")


# -- issue 12 item 7: headers the server interprets, fuzzed with bad bytes ---------------

WEBSOCKET = [
    ("Host", "x"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Protocol", "chat"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
]
H2C = [
    ("Host", "x"),
    ("Upgrade", "h2c"),
    ("Connection", "Upgrade, HTTP2-Settings"),
    ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
]
POST = [
    ("Host", "x"),
    ("Expect", "100-continue"),
    ("TE", "trailers"),
    ("Connection", "keep-alive"),
    ("Content-Length", "5"),
]
CHUNKED_POST = [("Host", "x"), ("Transfer-Encoding", "chunked")]
# name: (method, fields, body)
REQUESTS: dict[str, tuple[bytes, list[tuple[str, str]], bytes]] = {
    "ws": (b"GET", WEBSOCKET, b""),
    "h2c": (b"GET", H2C, b""),
    "post": (b"POST", POST, b"hello"),
    "chunked": (b"POST", CHUNKED_POST, b"5\r\nhello\r\n0\r\n\r\n"),
}
# (field, the request it is fuzzed in, statuses allowed for a non-ASCII byte)
FIELDS = [
    ("Upgrade", "ws", {400}),
    ("Connection", "ws", {400}),
    ("Sec-WebSocket-Key", "ws", {400}),
    ("Sec-WebSocket-Version", "ws", {426}),
    ("Sec-WebSocket-Protocol", "ws", {400}),
    ("Sec-WebSocket-Extensions", "ws", {400}),
    ("Upgrade", "h2c", {400}),
    ("Connection", "h2c", {400}),
    ("HTTP2-Settings", "h2c", {200}),  # no token68: no upgrade, the request stays HTTP/1.1
    ("Expect", "post", {200, 417}),
    ("TE", "post", {200}),
    ("Connection", "post", {400}),
    ("Content-Length", "post", {400}),
    ("Host", "post", {400}),
    ("Transfer-Encoding", "chunked", {400, 501}),
]
NON_ASCII = [b"\xff", b"\x80", b"\xc3\xa9"]
CONTROL = [b"\x00", b"\x01", b"\x7f", b"\x1b"]
# What an exception escaping the protocol would leave in the log.
CRASHED = re.compile(r"Traceback|Fatal error|UnicodeDecodeError|Exception in callback")


def fuzzed(kind: str, name: str, bad: bytes, inside: bool) -> bytes:
    """The ``kind`` request with ``bad`` put inside or at the end of field ``name``."""
    method, fields, body = REQUESTS[kind]
    lines = [method + b" /echo HTTP/1.1"]
    for key, value in fields:
        raw = value.encode()
        if key == name:
            raw = raw[:1] + bad + raw[1:] if inside else raw + bad
        lines.append(key.encode() + b": " + raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("name", "kind", "allowed"), [pytest.param(*f, id=f"{f[0]}-{f[1]}") for f in FIELDS]
)
def test_interpreted_header_with_bad_bytes_gets_an_answer(
    server: Server, name: str, kind: str, allowed: set[int]
) -> None:
    """Non-ASCII bytes: the status the field's rules give (never a traceback, never
    silence); control bytes: 400 from the parser, whatever the field."""
    before = len(server.output)
    for bad in NON_ASCII + CONTROL:
        for inside in (False, True):
            raw = fuzzed(kind, name, bad, inside)
            response, wire = exchange(server, raw)
            with wire:
                expected = allowed if bad in NON_ASCII else {400}
                assert response.status in expected, (raw, response.raw, response.body)
                if response.status >= 400:
                    assert FIXED_TEXT.fullmatch(response.body), response.body
                    assert wire.wait_closed()
    assert_still_serving(server)
    logged = server.output[before:]
    assert CRASHED.search(logged) is None, logged
