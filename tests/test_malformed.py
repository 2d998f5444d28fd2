"""Strict HTTP/1.1 request parsing: malformed input is answered with 400 and a close.

Each malformed request goes on a fresh raw socket to a shared server; every case asserts
the status line, that the server closes the connection, and that the server still answers
a fresh good request.  References: RFC 9112 (message syntax), RFC 9110 (semantics).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.server import Server, start_server, wait_for
from helpers.wire import Wire, request

pytestmark = pytest.mark.slow

APP = "apps.http_echo:app"


class _Shared:
    """A server shared by the tests of this module; restarted if a test killed it."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.server: Server | None = None

    def get(self) -> Server:
        if self.server is None or self.server.proc.poll() is not None:
            self.server = start_server(APP, *self.args)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            if self.server.proc.stdout is not None:
                self.server.proc.stdout.close()


@pytest.fixture(scope="module")
def _shared() -> Iterator[_Shared]:
    shared = _Shared("--workers", "1")
    yield shared
    shared.stop()


@pytest.fixture
def server(_shared: _Shared) -> Server:
    return _shared.get()


@pytest.fixture(scope="module")
def _shared_quiet() -> Iterator[_Shared]:
    shared = _Shared("--workers", "1", "--no-access-log")
    yield shared
    shared.stop()


@pytest.fixture
def quiet_server(_shared_quiet: _Shared) -> Server:
    return _shared_quiet.get()


def assert_still_serving(server: Server) -> None:
    """A fresh, well-formed request on a new connection gets a 200."""
    assert server.proc.poll() is None, f"server exited:\n{server.output}"
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.get(f"{server.url}/fixed")
    assert response.status_code == 200
    assert response.content == b"hello world"


def head(*lines: str | bytes, start: bytes = b"POST /echo HTTP/1.1") -> bytes:
    """A request head: start line, header lines, empty line."""
    out = [start] + [line.encode("latin-1") if isinstance(line, str) else line for line in lines]
    return b"\r\n".join(out) + b"\r\n\r\n"


H = "Host: x"
TE = "Transfer-Encoding: chunked"

BAD_400 = {400}
BAD_400_501 = {400, 501}
BAD_400_505 = {400, 505}

# (id, raw request bytes, allowed statuses)
CASES: list[tuple[str, bytes, set[int]]] = [
    # -- message framing (RFC 9112 §6) -------------------------------------------------
    ("cl-and-te", head(H, "Content-Length: 5", TE) + b"0\r\n\r\n", BAD_400),
    ("te-and-cl", head(H, TE, "Content-Length: 5") + b"0\r\n\r\n", BAD_400),
    (
        "cl-differing-duplicates",
        head(H, "Content-Length: 5", "Content-Length: 6") + b"hello",
        BAD_400,
    ),
    ("cl-differing-list", head(H, "Content-Length: 5, 6") + b"hello", BAD_400),
    ("cl-non-numeric", head(H, "Content-Length: abc") + b"hello", BAD_400),
    ("cl-negative", head(H, "Content-Length: -1") + b"hello", BAD_400),
    ("cl-plus-sign", head(H, "Content-Length: +5") + b"hello", BAD_400),
    ("cl-underscore", head(H, "Content-Length: 1_0") + b"helloworld", BAD_400),
    ("te-gzip", head(H, "Transfer-Encoding: gzip") + b"0\r\n\r\n", BAD_400_501),
    ("te-identity", head(H, "Transfer-Encoding: identity") + b"0\r\n\r\n", BAD_400_501),
    ("te-unknown-coding", head(H, "Transfer-Encoding: chunkedx") + b"0\r\n\r\n", BAD_400_501),
    ("te-chunked-gzip", head(H, "Transfer-Encoding: chunked, gzip") + b"0\r\n\r\n", BAD_400),
    ("te-chunked-chunked", head(H, "Transfer-Encoding: chunked, chunked") + b"0\r\n\r\n", BAD_400),
    # -- chunk sizes (RFC 9112 §7.1) ---------------------------------------------------
    ("chunk-size-non-hex", head(H, TE) + b"zz\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-size-negative", head(H, TE) + b"-5\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-size-empty", head(H, TE) + b"\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-size-huge", head(H, TE) + b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-size-0x-prefix", head(H, TE) + b"0x5\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-size-plus-sign", head(H, TE) + b"+5\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-size-underscore", head(H, TE) + b"0_5\r\nhello\r\n0\r\n\r\n", BAD_400),
    ("chunk-data-longer-than-size", head(H, TE) + b"5\r\nhelloXX\r\n0\r\n\r\n", BAD_400),
    # -- header field syntax (RFC 9112 §5) ---------------------------------------------
    ("obs-fold-space", head(H, "X-A: b", " c"), BAD_400),
    ("obs-fold-tab", head(H, "X-A: b", "\tc"), BAD_400),
    ("space-before-colon", head(H, "X-A : b"), BAD_400),
    ("tab-before-colon", head(H, "X-A\t: b"), BAD_400),
    ("host-space-before-colon", head("Host : x"), BAD_400),
    ("header-without-colon", head(H, "X-A"), BAD_400),
    ("header-empty-name", head(H, ": b"), BAD_400),
    ("header-name-with-space", head(H, "X A: b"), BAD_400),
    ("header-name-delimiter", head(H, "X(A: b"), BAD_400),
    # -- control characters and NUL ----------------------------------------------------
    ("nul-in-target", head(H, start=b"GET /a\x00b HTTP/1.1"), BAD_400),
    ("ctl-in-target", head(H, start=b"GET /a\x01b HTTP/1.1"), BAD_400),
    ("del-in-target", head(H, start=b"GET /a\x7fb HTTP/1.1"), BAD_400),
    ("cr-in-target", head(H, start=b"GET /a\rb HTTP/1.1"), BAD_400),
    ("nul-in-method", head(H, start=b"G\x00T / HTTP/1.1"), BAD_400),
    ("nul-in-version", head(H, start=b"GET / HTTP/1.1\x00"), BAD_400),
    ("nul-in-header-value", head(H, b"X-A: a\x00b"), BAD_400),
    ("cr-in-header-value", head(H, b"X-A: a\rb"), BAD_400),
    ("ctl-in-header-value", head(H, b"X-A: a\x01b"), BAD_400),
    ("del-in-header-value", head(H, b"X-A: a\x7fb"), BAD_400),
    ("nul-in-header-name", head(H, b"X\x00A: b"), BAD_400),
    ("ctl-in-header-name", head(H, b"X\x01A: b"), BAD_400),
    ("nul-in-host", head(b"Host: x\x00y"), BAD_400),
    # -- method token (RFC 9110 §9.1: method = token) ----------------------------------
    ("method-paren", head(H, start=b"G(T / HTTP/1.1"), BAD_400),
    ("method-space", head(H, start=b"GE T / HTTP/1.1"), BAD_400),
    ("method-brace", head(H, start=b"G{T / HTTP/1.1"), BAD_400),
    ("method-empty", head(H, start=b" / HTTP/1.1"), BAD_400),
    # -- Host (RFC 9112 §3.2) ----------------------------------------------------------
    ("host-missing", head(start=b"GET / HTTP/1.1"), BAD_400),
    ("host-duplicate-same", head(H, H, start=b"GET / HTTP/1.1"), BAD_400),
    ("host-duplicate-different", head("Host: a", "Host: b", start=b"GET / HTTP/1.1"), BAD_400),
    ("host-a-b", head("Host: a b", start=b"GET / HTTP/1.1"), BAD_400),
    ("host-space-inside", head("Host: exa mple.com", start=b"GET / HTTP/1.1"), BAD_400),
    ("host-unclosed-bracket", head("Host: [::1", start=b"GET / HTTP/1.1"), BAD_400),
    ("host-bad-port", head("Host: example.com:abc", start=b"GET / HTTP/1.1"), BAD_400),
    ("host-slash", head("Host: a/b", start=b"GET / HTTP/1.1"), BAD_400),
    ("host-userinfo", head("Host: user@example.com", start=b"GET / HTTP/1.1"), BAD_400),
    # -- request line (RFC 9112 §3) ----------------------------------------------------
    ("request-line-no-version", b"GET /\r\nHost: x\r\n\r\n", BAD_400),
    ("request-line-extra-token", head(H, start=b"GET / HTTP/1.1 x"), BAD_400),
    ("request-line-space-in-target", head(H, start=b"GET /a b HTTP/1.1"), BAD_400),
    ("request-line-double-space", head(H, start=b"GET  / HTTP/1.1"), BAD_400),
    ("request-line-leading-space", head(H, start=b" GET / HTTP/1.1"), BAD_400),
    ("request-line-trailing-space", head(H, start=b"GET / HTTP/1.1 "), BAD_400),
    ("request-line-garbage", b"hello\r\n\r\n", BAD_400),
    ("request-line-binary", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", BAD_400),
    # -- HTTP version (RFC 9112 §2.3) --------------------------------------------------
    ("version-lowercase", head(H, start=b"GET / http/1.1"), BAD_400),
    ("version-bad-name", head(H, start=b"GET / HTTX/1.1"), BAD_400),
    ("version-no-minor", head(H, start=b"GET / HTTP/1"), BAD_400),
    ("version-two-digit-minor", head(H, start=b"GET / HTTP/1.10"), BAD_400),
    ("version-no-dot", head(H, start=b"GET / HTTP/11"), BAD_400),
    ("version-three-parts", head(H, start=b"GET / HTTP/1.1.1"), BAD_400),
    ("version-letters", head(H, start=b"GET / HTTP/a.b"), BAD_400),
    ("version-missing-number", head(H, start=b"GET / HTTP/"), BAD_400),
    ("version-major-2", head(H, start=b"GET / HTTP/2.0"), BAD_400_505),
    ("version-major-3", head(H, start=b"GET / HTTP/3.0"), BAD_400_505),
]


@pytest.mark.parametrize(("raw", "allowed"), [pytest.param(r, a, id=i) for i, r, a in CASES])
def test_malformed_request_rejected_and_closed(
    server: Server, raw: bytes, allowed: set[int]
) -> None:
    with Wire.open(server.host, server.port) as wire:
        wire.try_send(raw)
        response = wire.read_response()
        assert response.version == "HTTP/1.1", response.raw
        assert response.status in allowed, f"{response.status_line!r} for {raw!r}"
        assert wire.wait_closed(), f"connection left open after {response.status_line!r}"
    assert_still_serving(server)


def test_case_ids_are_unique() -> None:
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))


# Controls: valid but unusual requests that a strict parser must still accept.
GOOD_CASES: list[tuple[str, bytes]] = [
    ("host-with-port", head("Host: example.com:8080", start=b"GET /echo HTTP/1.1")),
    ("host-ipv6", head("Host: [::1]", start=b"GET /echo HTTP/1.1")),
    ("host-ipv6-port", head("Host: [::1]:8000", start=b"GET /echo HTTP/1.1")),
    ("host-ipv4-port", head("Host: 127.0.0.1:1", start=b"GET /echo HTTP/1.1")),
    ("host-empty", head("Host:", start=b"GET /echo HTTP/1.1")),
    ("method-extension-token", head(H, start=b"M-SEARCH /echo HTTP/1.1")),
    ("method-token-chars", head(H, start=b"FOO_BAR!~ /echo HTTP/1.1")),
    (
        "header-name-case",
        head("hOsT: x", "content-LENGTH: 3", start=b"POST /echo HTTP/1.1") + b"abc",
    ),
    ("te-chunked-mixed-case", head(H, "Transfer-Encoding: Chunked") + b"3\r\nabc\r\n0\r\n\r\n"),
    ("header-value-obs-text-and-tab", head(H, b"X-A: caf\xe9\tand more")),
    ("header-value-empty", head(H, "X-Empty:")),
    ("header-value-surrounding-whitespace", head(H, "X-A: \t spaced \t")),
    ("header-name-token-chars", head(H, "X-!#$%&'*+.^_`|~: v")),
    ("query-with-odd-chars", head(H, start=b"GET /echo?a=b&c=%20;d=/?:@!$'()*+, HTTP/1.1")),
]


@pytest.mark.parametrize("raw", [pytest.param(r, id=i) for i, r in GOOD_CASES])
def test_unusual_but_valid_request_is_accepted(server: Server, raw: bytes) -> None:
    with Wire.open(server.host, server.port) as wire:
        wire.send(raw)
        response = wire.read_response()
        assert response.status == 200, response.raw
        # and the connection stays usable
        wire.send(request("GET", "/fixed"))
        assert wire.read_response().body == b"hello world"


def test_pipelined_good_then_bad_request(server: Server) -> None:
    """The good request is answered, then the bad one gets a 400 and the close."""
    with Wire.open(server.host, server.port) as wire:
        wire.send(request("POST", "/echo", body=b"good") + head(H, "X-A : b"))
        first = wire.read_response()
        assert (first.status, first.body) == (200, b"good")
        second = wire.read_response()
        assert second.status == 400, second.raw
        assert wire.wait_closed()
    assert_still_serving(server)


def test_bad_request_does_not_affect_other_keep_alive_connection(server: Server) -> None:
    with Wire.open(server.host, server.port) as good, Wire.open(server.host, server.port) as bad:
        good.send(request("GET", "/echo?n=1"))
        first = good.read_response()
        assert first.status == 200
        assert "close" not in first.connection_tokens()

        bad.send(head(H, "Content-Length: 5", TE) + b"0\r\n\r\n")
        rejected = bad.read_response()
        assert rejected.status == 400
        assert bad.wait_closed()

        good.send(request("POST", "/echo?n=2", body=b"still here"))
        second = good.read_response()
        assert second.status == 200
        assert second.body == b"still here"
        assert second.header("x-client-port") == first.header("x-client-port")


def test_good_requests_around_bad_ones_keep_working(server: Server) -> None:
    """The parser state of one connection does not leak into the next one."""
    for raw in [head(H, "X-A : b"), head(H, TE) + b"zz\r\n"]:
        with Wire.open(server.host, server.port) as wire:
            wire.try_send(raw)
            assert wire.read_response().status == 400
            assert wire.wait_closed()
        with Wire.open(server.host, server.port) as wire:
            wire.send(request("POST", "/echo", body=b"abc") + request("GET", "/fixed"))
            one = wire.read_response()
            two = wire.read_response()
            assert (one.status, one.body) == (200, b"abc")
            assert (two.status, two.body) == (200, b"hello world")


# -- fuzzing: arbitrary bytes never break the server -------------------------------------

FRAGMENTS = [
    b"GET", b"POST", b"G(T", b" ", b"  ", b"\t", b"/", b"/echo", b"?a=1", b"HTTP/1.1", b"HTTP/1.0",
    b"HTTP/9", b"\r\n", b"\n", b"\r", b"\x00", b"\x7f", b"\xff", b":", b"Host: x",
    b"Host: a b", b"Content-Length: 3", b"Content-Length: -1", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip", b"Connection: close", b"0", b"5", b"ffffffffffffffffffff",
    b"abc", b";ext", b"\r\n\r\n",
]  # fmt: skip

fuzz_input = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=30).map(b"".join),
    st.binary(min_size=1, max_size=200),
    # a valid request followed by garbage on the same connection
    st.binary(min_size=1, max_size=100).map(lambda junk: request("GET", "/fixed") + junk),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=fuzz_input)
def test_fuzzed_input_gets_http_responses_or_a_close(_shared: _Shared, data: bytes) -> None:
    """Whatever arrives, the server only ever writes well-formed HTTP/1.1 responses, ends
    the connection once the client has sent everything (half-close), and keeps serving."""
    server = _shared.get()
    with Wire.open(server.host, server.port) as wire:
        wire.try_send(data)
        with contextlib.suppress(OSError):  # the server may have closed already
            wire.sock.shutdown(socket.SHUT_WR)
        received = wire.read_to_eof(time.monotonic() + 10)
    replay = Wire(socket.socket())
    with replay:
        replay.buf, replay.eof = received, True
        while replay.buf:
            response = replay.read_response(timeout=1)
            assert response.version == "HTTP/1.1", received
            assert 200 <= response.status < 600, received
    assert_still_serving(server)


# -- response headers from the app ------------------------------------------------------

INJECTIONS = [
    pytest.param("v=a%0D%0Ax-evil:%201", id="value-crlf"),
    pytest.param("v=a%0Ax-evil:%201", id="value-lf"),
    pytest.param("v=a%0Dx-evil:%201", id="value-cr"),
    pytest.param("v=a%00x-evil", id="value-nul"),
    pytest.param("n=x-a%0D%0Ax-evil&v=1", id="name-crlf"),
    pytest.param("n=x-a%0Ax-evil&v=1", id="name-lf"),
    pytest.param("n=x-a%0Dx-evil&v=1", id="name-cr"),
    pytest.param("n=x-a%00x-evil&v=1", id="name-nul"),
]

# An error-level record, a traceback or a message about the bad header.  Not a bare
# "error": that is also the name of the server's (INFO-level) error logger.
LOGGED = re.compile(r"\b(?:ERROR|CRITICAL|WARNING)\b|Traceback|[Ii]nvalid|[Ee]xception")


@pytest.mark.parametrize("query", INJECTIONS)
def test_response_header_injection_gives_500_and_is_logged(
    quiet_server: Server, query: str
) -> None:
    server = quiet_server
    with Wire.open(server.host, server.port) as wire:
        before = len(server.output)
        wire.send(request("GET", f"/inject?{query}"))
        response = wire.read_response()
        assert response.status == 500, response.raw
        assert b"x-evil" not in response.raw.lower()
        assert b"\x00" not in response.raw
        assert b"should-not-be-sent" not in response.raw
        assert wait_for(lambda: LOGGED.search(server.output[before:]) is not None, timeout=10), (
            f"no error logged; server output since the request: {server.output[before:]!r}"
        )
    assert_still_serving(server)


def test_valid_response_header_from_app_is_sent(quiet_server: Server) -> None:
    """Control for the injection tests: the same route with a clean value works."""
    with Wire.open(quiet_server.host, quiet_server.port) as wire:
        wire.send(request("GET", "/inject?n=x-test&v=fine%20value"))
        response = wire.read_response()
        assert response.status == 200
        assert response.header("x-test") == "fine value"
        assert response.body == b"should-not-be-sent"
