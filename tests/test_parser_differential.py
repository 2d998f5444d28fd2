"""Differential test: the fast parser and the h11 engine (h11 + our strictness checks) agree.

Same verdict (accept, or reject with the same status), and on accepted input the same
method, target, headers, body and framing, on a corpus and on hypothesis-generated
requests, whatever the split of the bytes into reads, with and without the default limits.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.corpus import BAD_REQUESTS, GOOD_REQUESTS
from pounce.errors import ProtocolError
from pounce.protocols import http11
from pounce.protocols.h11engine import H11RequestParser

Engine = type[http11.RequestParser] | type[H11RequestParser]


def run(engine: Engine, data: bytes, step: int = 0, **limits: int) -> tuple[str, Any]:
    """Parse every request in ``data``; the verdict and what was parsed."""
    parser = engine(**limits)
    pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    requests: list[tuple[Any, ...]] = []
    body = b""
    current: http11.Request | None = None
    try:
        for piece in pieces:
            parser.feed(piece)
            while True:
                event = parser.next_event()
                if event is http11.NEED_DATA:
                    break
                if event is http11.PAUSED:
                    parser.start_next_cycle()
                    continue
                if isinstance(event, http11.Request):
                    current, body = event, b""
                elif isinstance(event, http11.Data):
                    body += event.data
                elif event is http11.END_OF_MESSAGE:
                    assert current is not None
                    requests.append(
                        (
                            current.method,
                            current.target,
                            current.http_version,
                            current.headers,
                            current.keep_alive,
                            current.chunked,
                            body,
                        )
                    )
    except ProtocolError as exc:
        return f"reject {exc.status}", requests
    return "accept", requests


@pytest.mark.parametrize("data", GOOD_REQUESTS + BAD_REQUESTS)
@pytest.mark.parametrize("step", [0, 1, 5])
def test_corpus_same_verdict_and_events(data: bytes, step: int) -> None:
    fast = run(http11.RequestParser, data, step)
    ref = run(H11RequestParser, data, step)
    assert fast[0] == ref[0], (fast, ref)
    assert fast[1] == ref[1]


DEFAULT_LIMITS = {"max_header_size": 65536, "max_body_size": 100 * 1024 * 1024}


@pytest.mark.parametrize("data", GOOD_REQUESTS + BAD_REQUESTS)
def test_corpus_agrees_with_the_default_limits(data: bytes) -> None:
    """The limits decide some statuses (a 2^64 chunk size: 400, not 413): alike on both."""
    for step in (0, 3):
        fast = run(http11.RequestParser, data, step, **DEFAULT_LIMITS)
        ref = run(H11RequestParser, data, step, **DEFAULT_LIMITS)
        assert fast == ref, (data, fast, ref)


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        # the chunk size is refused before the body limit is looked at
        (b"10000000000000000\r\nhello\r\n0\r\n\r\n", "reject 400"),
        (b"10000000000000000\r\nhello", "reject 400"),
        (b"ffffffffffffffff\r\nhello", "reject 413"),
        (b"5;" + b"a" * 4095 + b"\r\nhello\r\n0\r\n\r\n", "reject 400"),  # 4097 bytes
    ],
)
def test_chunk_size_statuses(data: bytes, verdict: str) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for engine in (http11.RequestParser, H11RequestParser):
        assert run(engine, head + data, **DEFAULT_LIMITS)[0] == verdict, engine


def test_what_the_app_is_handed_is_the_same() -> None:
    """Transfer-Encoding as sent; absolute-form: origin-form target, its authority as Host."""
    te = b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n1\r\na\r\n0\r\n\r\n"
    absolute = b"GET http://b/x?y HTTP/1.1\r\nHost: a\r\n\r\n"
    absolute_10 = b"GET http://b:81 HTTP/1.0\r\n\r\n"
    for engine in (http11.RequestParser, H11RequestParser):
        assert run(engine, te)[1][0][3] == [(b"host", b"x"), (b"transfer-encoding", b"CHUNKED")]
        ((_, target, _, headers, *_),) = run(engine, absolute)[1]
        assert (target, headers) == (b"/x?y", [(b"host", b"b")]), engine
        ((_, target, _, headers, *_),) = run(engine, absolute_10)[1]
        assert (target, headers) == (b"/", [(b"host", b"b:81")]), engine


def test_corpus_verdicts_are_what_the_spec_says() -> None:
    for data in GOOD_REQUESTS:
        assert run(http11.RequestParser, data)[0] == "accept", data
    for data in BAD_REQUESTS:
        assert run(http11.RequestParser, data)[0].startswith("reject"), data


def test_limits_agree() -> None:
    big_head = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 3000 + b"\r\n\r\n"
    big_body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 100
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n"
        + b"a" * 64
        + b"\r\n0\r\n\r\n"
    )
    for data in (big_head, big_body, chunked):
        for engine in (http11.RequestParser, H11RequestParser):
            verdict = run(engine, data, max_header_size=2048, max_body_size=50)[0]
            assert verdict in ("reject 431", "reject 413"), (engine, data[:40], verdict)


TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~", min_size=1, max_size=10
)
VALUE = st.binary(max_size=24)


# Fields the server itself interprets (their values come from VALUE: any bytes).
INTERPRETED = [
    b"Upgrade", b"Connection", b"Expect", b"TE", b"Transfer-Encoding", b"Content-Length",
    b"Host", b"HTTP2-Settings", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
]  # fmt: skip
CHUNK_EXTENSIONS = [
    b";a", b";a=b", b';a="b\\"c"', b" ", b";a=b c", b" ;a", b";=b", b";a=\xff", b';a="\x01"',
    b"0000000000000000",  # a size of 17 digits and more: refused, not too large
]  # fmt: skip


EXTENSION_BYTES = st.binary(max_size=12).map(lambda ext: b";" + ext)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Mostly well-formed requests, with a chance of every kind of damage."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"G T", b"P(ST"]))
    target = draw(
        st.sampled_from(
            [
                *(b"/", b"/a/b?c=d", b"/%41", b"*", b"http://h/x", b"x", b"/\x00"),
                *(b"/\xc3\xa9?q=\xff", b"http://b", b"http://u@b/", b"https://[::1]:1?q"),
            ]
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTX/1.1"]))
    names = TOKEN.map(str.encode) | st.sampled_from(INTERPRETED)
    headers = draw(st.lists(st.tuples(names, VALUE), max_size=4))
    host = draw(
        st.sampled_from([[b"example.com"]] * 5 + [[], [b"a", b"b"], [b"a b"], [b"[::1]:80"]])
    )
    lines = [b" ".join([method, target, version])]
    lines += [b"Host: " + h for h in host]
    lines += [n + b": " + v for n, v in headers]
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["cl", "chunked", "none", "both", "bad-chunk", "fold"]))
    payload = b""
    if framing in ("cl", "both"):
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    if framing in ("chunked", "both", "bad-chunk"):
        lines.append(b"Transfer-Encoding: " + draw(st.sampled_from([b"chunked", b"CHUNKED"])))
        size = b"%x" % len(body) if framing != "bad-chunk" else b"zz"
        size += draw(st.sampled_from([b""] * 4 + CHUNK_EXTENSIONS) | EXTENSION_BYTES)
        payload = (size + b"\r\n" + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    if framing == "fold":
        lines.append(b" folded")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=requests(), step=st.integers(min_value=0, max_value=9), limits=st.booleans())
def test_generated_requests_agree(data: bytes, step: int, limits: bool) -> None:
    fast = run(http11.RequestParser, data, step, **(DEFAULT_LIMITS if limits else {}))
    ref = run(H11RequestParser, data, step, **(DEFAULT_LIMITS if limits else {}))
    assert fast[0] == ref[0], (data, fast, ref)
    assert fast[1] == ref[1], data


CHUNK_FRAGMENTS = [
    b"0", b"5", b"a", b"F", b"10000000000000000", b";", b"=", b'"', b"\\", b"x", b"tok", b" ",
    b"\t", b"\r\n", b"\r", b"\n", b"\x00", b"\x7f", b"\xff", b"hello", b"\r\n\r\n", b",",
    b"X-T: 1", b"Content-Length: 5", b"Transfer-Encoding: chunked", b":", b"Host: a b",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(st.sampled_from(CHUNK_FRAGMENTS), max_size=30).map(b"".join),
    step=st.integers(min_value=0, max_value=7),
)
def test_generated_chunked_bodies_agree(body: bytes, step: int) -> None:
    """Chunk-size lines and extensions, any bytes: both engines read them alike."""
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    fast = run(http11.RequestParser, data, step, **DEFAULT_LIMITS)
    ref = run(H11RequestParser, data, step, **DEFAULT_LIMITS)
    assert fast == ref, data


@pytest.mark.parametrize(
    "between",
    [b"\r\r\n", b"\r\r", b"\r\n\r\r\n", b"\n\n"],
)
def test_only_whole_empty_lines_are_skipped_before_a_request_line(between: bytes) -> None:
    """RFC 9112 §2.2 lets a server skip empty lines (CRLF) before a request-line; a bare
    CR or LF there is refused by both engines alike (h11's engine once skipped any run
    of CR and LF bytes, so it read on where the fast parser said 400)."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    data = request + between + request
    for step in range(4):
        fast = run(http11.RequestParser, data, step, **DEFAULT_LIMITS)
        ref = run(H11RequestParser, data, step, **DEFAULT_LIMITS)
        assert fast == ref, (step, fast, ref)
        assert fast[0] == "reject 400", fast
