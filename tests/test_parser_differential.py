"""Differential test: the fast parser and the h11 engine (h11 + our strictness checks) agree.

Same accept-or-reject verdict, and on accepted input the same method, target,
headers, body and framing, on a corpus and on hypothesis-generated requests,
whatever the split of the bytes into reads.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pounce.errors import ProtocolError
from pounce.protocols import http11
from pounce.protocols.h11engine import H11RequestParser
from tests_support_corpus import BAD_REQUESTS, GOOD_REQUESTS

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
    assert fast[0].split()[0] == ref[0].split()[0], (fast, ref)
    assert fast[1] == ref[1]


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


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Mostly well-formed requests, with a chance of every kind of damage."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"G T", b"P(ST"]))
    target = draw(
        st.sampled_from([b"/", b"/a/b?c=d", b"/%41", b"*", b"http://h/x", b"x", b"/\x00"])
    )
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTX/1.1"]))
    headers = draw(st.lists(st.tuples(TOKEN.map(str.encode), VALUE), max_size=4))
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
        lines.append(b"Transfer-Encoding: chunked")
        size = b"%x" % len(body) if framing != "bad-chunk" else b"zz"
        payload = (size + b"\r\n" + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    if framing == "fold":
        lines.append(b" folded")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=requests(), step=st.integers(min_value=0, max_value=9))
def test_generated_requests_agree(data: bytes, step: int) -> None:
    fast = run(http11.RequestParser, data, step)
    ref = run(H11RequestParser, data, step)
    assert fast[0].split()[0] == ref[0].split()[0], (data, fast, ref)
    assert fast[1] == ref[1], data
