"""The sans-I/O HTTP/1.1 parser, tested with bytes alone."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pounce.errors import ProtocolError
from pounce.protocols import http11


def parse_all(data: bytes, *, step: int = 0, **kwargs: int) -> list[object]:
    """Feed ``data`` (in ``step``-byte pieces if given) and collect events up to PAUSED."""
    parser = http11.RequestParser(**kwargs)
    events: list[object] = []
    pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    for piece in pieces:
        parser.feed(piece)
        while True:
            event = parser.next_event()
            if event is http11.NEED_DATA or event is http11.PAUSED:
                break
            events.append(event)
    return events


def body_of(events: list[object]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, http11.Data))


def test_simple_get() -> None:
    events = parse_all(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n")
    request = events[0]
    assert isinstance(request, http11.Request)
    assert request.method == b"GET"
    assert request.target == b"/a?b=1"
    assert request.http_version == "1.1"
    assert request.headers == [(b"host", b"x"), (b"x-a", b"1")]
    assert request.keep_alive
    assert events[1] is http11.END_OF_MESSAGE


@pytest.mark.parametrize("step", [0, 1, 3, 7])
def test_chunked_body_any_split(step: int) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
    )
    events = parse_all(data, step=step)
    assert body_of(events) == b"hello world"
    assert events[-1] is http11.END_OF_MESSAGE


def test_content_length_body_and_pipelining() -> None:
    parser = http11.RequestParser()
    parser.feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert isinstance(parser.next_event(), http11.Request)
    assert parser.next_event() == http11.Data(b"abc")
    assert parser.next_event() is http11.END_OF_MESSAGE
    assert parser.next_event() is http11.PAUSED
    parser.start_next_cycle()
    second = parser.next_event()
    assert isinstance(second, http11.Request) and second.target == b"/2"


def _drain(parser: http11.RequestParser) -> list[object]:
    events: list[object] = []
    while True:
        event = parser.next_event()
        if event is http11.NEED_DATA or event is http11.PAUSED:
            return events
        events.append(event)


def test_feed_head_returns_a_whole_head_at_once() -> None:
    parser = http11.RequestParser()
    request = parser.feed_head(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(request, http11.Request) and request.target == b"/a"
    # a request without a body is complete: no more events, the parser is paused
    assert parser.next_event() is http11.PAUSED
    parser.start_next_cycle()
    assert parser.feed_head(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n") is not None


def test_feed_head_with_the_body_in_the_same_read() -> None:
    body = bytes(range(256)) * 256  # 64 KiB
    parser = http11.RequestParser()
    head = b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    request = parser.feed_head(head + body[:1000])
    assert isinstance(request, http11.Request) and request.content_length == len(body)
    assert parser.in_body and parser.buffered == 1000
    events = _drain(parser)
    parser.feed(body[1000:])
    events += _drain(parser)
    assert body_of(events) == body
    assert events[-1] is http11.END_OF_MESSAGE
    assert parser.buffered == 0


def test_feed_head_keeps_what_follows_the_body() -> None:
    parser = http11.RequestParser()
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert parser.feed_head(data) is not None
    assert _drain(parser) == [http11.Data(b"abc"), http11.END_OF_MESSAGE]
    parser.start_next_cycle()
    second = parser.next_event()
    assert isinstance(second, http11.Request) and second.target == b"/next"


def test_feed_head_keeps_pipelined_requests_after_a_bodyless_one() -> None:
    parser = http11.RequestParser()
    request = parser.feed_head(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert request is not None and request.target == b"/1"
    assert parser.next_event() is http11.PAUSED
    parser.start_next_cycle()
    second = parser.next_event()
    assert isinstance(second, http11.Request) and second.target == b"/2"


def test_feed_head_falls_back_to_feed() -> None:
    parser = http11.RequestParser()
    assert parser.feed_head(b"GET / HTTP/1.1\r\nHo") is None  # not a whole head yet
    assert parser.feed_head(b"st: x\r\n\r\n") is None  # something was buffered
    request = parser.next_event()
    assert isinstance(request, http11.Request)
    with pytest.raises(ProtocolError):
        http11.RequestParser().feed_head(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n")


def test_body_bytes_taken_for_an_upgrade_keep_their_order() -> None:
    parser = http11.RequestParser()
    parser.feed_head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    parser.feed(b"def")
    assert parser.take_buffered() == b"abcdef"
    assert parser.buffered == 0


def test_http10_keep_alive_rules() -> None:
    (plain, _) = parse_all(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(plain, http11.Request) and not plain.keep_alive
    (ka, _) = parse_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert isinstance(ka, http11.Request) and ka.keep_alive
    (close, _) = parse_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert isinstance(close, http11.Request) and not close.keep_alive


from helpers.corpus import BAD, BAD_CHUNKS  # noqa: E402


@pytest.mark.parametrize("data", list(BAD.values()), ids=list(BAD))
def test_rejects_malformed_heads(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_all(data)
    assert info.value.status in (400, 501)


@pytest.mark.parametrize("chunks", list(BAD_CHUNKS.values()), ids=list(BAD_CHUNKS))
def test_rejects_bad_chunks(chunks: bytes) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        parse_all(head + chunks)
    assert info.value.status == 400


def test_unknown_version_is_505() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_all(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert info.value.status == 505


def test_header_section_too_large_is_431() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        parse_all(data, max_header_size=4096)
    assert info.value.status == 431
    # and without the end of the head ever arriving:
    with pytest.raises(ProtocolError) as info:
        parse_all(data[:-4], max_header_size=4096)
    assert info.value.status == 431


def test_body_limits_are_413_without_buffering() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n", max_body_size=10
        )
    assert info.value.status == 413
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n"
    )
    with pytest.raises(ProtocolError) as info:
        parse_all(chunked, max_body_size=10)
    assert info.value.status == 413


def test_response_header_checks() -> None:
    assert http11.check_response_headers([(b"x-a", b"ok")]) is None
    assert http11.check_response_headers([(b"x-a", b"a\r\nb")]) is not None
    assert http11.check_response_headers([(b"x-a", b"a\x00b")]) is not None
    assert http11.check_response_headers([(b"x a", b"v")]) is not None


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC 0123456789;=/", max_size=20).map(str.strip)


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_-.%", max_size=30),
    headers=st.lists(st.tuples(TOKEN, VALUE), max_size=6),
    body=st.binary(max_size=200),
    chunked=st.booleans(),
    step=st.integers(min_value=0, max_value=17),
)
def test_agrees_with_h11_on_valid_requests(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, chunked: bool, step: int
) -> None:
    headers = [
        (n, v) for n, v in headers if n not in {"host", "content-length", "transfer-encoding"}
    ]
    lines = [f"{method} /{path} HTTP/1.1", "Host: example.com"]
    lines += [f"{n}: {v}" for n, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    data = "\r\n".join(lines).encode() + b"\r\n\r\n" + payload

    ours = parse_all(data, step=step)
    reference = h11.Connection(h11.SERVER)
    reference.receive_data(data)
    theirs: list[object] = []
    while True:
        event = reference.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
            theirs.append(event)
            break
        theirs.append(event)
    request = ours[0]
    assert isinstance(request, http11.Request)
    h11_request = theirs[0]
    assert isinstance(h11_request, h11.Request)
    assert request.method == h11_request.method
    assert request.target == h11_request.target
    assert request.headers == [(n, v) for n, v in h11_request.headers]
    assert body_of(ours) == b"".join(bytes(e.data) for e in theirs if isinstance(e, h11.Data))
    assert ours[-1] is http11.END_OF_MESSAGE
