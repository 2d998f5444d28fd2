"""HTTP/2 error handling at the frame level (RFC 9113), over h2c prior knowledge.

Each case writes frames by hand (``hyperframe``, ``hpack``) on a raw socket and
expects the error code the RFC names: GOAWAY for connection errors, RST_STREAM
for stream errors.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator

import pytest
from hpack import Decoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from helpers.server import Server
from helpers.tls import Peer

pytestmark = pytest.mark.slow

APP = "apps.h2_app:app"
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x9


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    return serve(APP, env={"POUNCE_HTTP2_INITIAL_WINDOW_SIZE": "65535"})


@pytest.fixture
def peer(server: Server) -> Iterator[Peer]:
    p = Peer(server)
    yield p
    p.close()


def test_settings_are_acknowledged_and_server_settings_come_first(peer: Peer) -> None:
    peer.start()
    first = next(peer.frames())
    assert isinstance(first, SettingsFrame) and "ACK" not in first.flags
    assert first.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
    assert first.settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 65535
    assert first.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 65536
    peer.wait_for(SettingsFrame, flags={"ACK"})


def test_ping_is_answered(peer: Peer) -> None:
    peer.start()
    peer.send(PingFrame(0, opaque_data=b"12345678"))
    pong = peer.wait_for(PingFrame, flags={"ACK"})
    assert isinstance(pong, PingFrame) and pong.opaque_data == b"12345678"


def test_bad_preface_is_protocol_error(server: Server) -> None:
    peer = Peer(server)
    # "PRI" commits the connection to HTTP/2; the rest of the preface is wrong.
    peer.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", SettingsFrame(0))
    assert peer.goaway().error_code == PROTOCOL_ERROR
    peer.close()


def test_oversized_frame_is_frame_size_error(peer: Peer) -> None:
    peer.start()
    # 16385 bytes of DATA: over the default SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2).
    peer.send(peer.headers(1))
    peer.send(DataFrame(1, b"x" * 16385))
    assert peer.goaway().error_code == FRAME_SIZE_ERROR


def test_data_on_a_closed_stream_is_stream_closed(peer: Peer) -> None:
    peer.start()
    peer.send(peer.headers(1, "/echo", end=True))
    peer.wait_for(HeadersFrame, stream_id=1)  # an empty answer: stream 1 is closed now
    peer.send(DataFrame(1, b"late"))
    frame = next(f for f in peer.frames() if isinstance(f, RstStreamFrame | GoAwayFrame))
    assert frame.error_code == STREAM_CLOSED


def test_data_on_an_idle_stream_is_protocol_error(peer: Peer) -> None:
    peer.start()
    peer.send(DataFrame(3, b"never opened"))
    assert peer.goaway().error_code == PROTOCOL_ERROR


def test_overflowing_the_window_is_flow_control_error(peer: Peer) -> None:
    peer.start()
    peer.send(peer.headers(1, "/slow?key=never"))  # never reads its body
    for _ in range(4):
        peer.send(DataFrame(1, b"x" * 16384))
    peer.send(DataFrame(1, b"x" * 16384))  # 81920 > 65535
    frame = next(f for f in peer.frames() if isinstance(f, RstStreamFrame | GoAwayFrame))
    assert frame.error_code == FLOW_CONTROL_ERROR


def test_window_update_overflow_is_flow_control_error(peer: Peer) -> None:
    peer.start()
    peer.send(WindowUpdateFrame(0, window_increment=2**31 - 1))
    assert peer.goaway().error_code == FLOW_CONTROL_ERROR


def test_bad_hpack_is_compression_error(peer: Peer) -> None:
    peer.start()
    # 0xFF 0xFF...: an indexed field far past the static and dynamic tables.
    peer.send(HeadersFrame(1, b"\xff\xff\xff\xff\x0f", flags=["END_HEADERS", "END_STREAM"]))
    assert peer.goaway().error_code == COMPRESSION_ERROR


def test_rst_stream_ends_only_that_stream(peer: Peer) -> None:
    peer.start()
    peer.send(peer.headers(1, "/hold?key=rst1", method="GET", end=True))
    peer.wait_for(DataFrame, stream_id=1)
    peer.send(RstStreamFrame(1, error_code=0x8))  # CANCEL
    peer.send(peer.headers(3, "/held?key=rst1", method="GET", end=True))
    data = peer.wait_for(DataFrame, stream_id=3)
    assert isinstance(data, DataFrame)
    body = data.data
    for _ in range(50):
        if body == b"disconnected":
            break
        sid = 5 + 2 * _
        peer.send(peer.headers(sid, "/held?key=rst1", method="GET", end=True))
        frame = peer.wait_for(DataFrame, stream_id=sid)
        assert isinstance(frame, DataFrame)
        body = frame.data
    assert body == b"disconnected"  # the app of stream 1 got http.disconnect


def test_goaway_from_client_closes_quietly(peer: Peer) -> None:
    peer.start()
    peer.send(GoAwayFrame(0, last_stream_id=0, error_code=NO_ERROR))
    list(peer.frames(5))
    assert peer.closed


def test_a_stream_over_max_concurrent_streams_is_refused_alone(
    serve: Callable[..., Server],
) -> None:
    """RFC 9113 §5.1.2: one stream too many is a stream error (REFUSED_STREAM, so the
    client may retry it), not a connection error; the other streams carry on."""
    server = serve(APP, env={"POUNCE_HTTP2_MAX_CONCURRENT_STREAMS": "2"})
    peer = Peer(server)
    decoder = Decoder()
    seen: list[Frame] = []

    def release(key: str) -> None:  # over another connection: this one is full
        with urllib.request.urlopen(f"{server.url}/release?key={key}", timeout=10) as answer:
            assert answer.read() == b"released"

    def answer(stream_id: int) -> tuple[bytes, bytes]:
        """(:status, body) of a stream, read up to its END_STREAM."""
        status, body = b"", b""
        for frame in peer.frames():
            seen.append(frame)
            if isinstance(frame, HeadersFrame):
                headers = decoder.decode(frame.data, raw=True)
                if frame.stream_id == stream_id:
                    status = dict(headers)[b":status"]
            elif isinstance(frame, DataFrame) and frame.stream_id == stream_id:
                body += frame.data
            if frame.stream_id == stream_id and "END_STREAM" in frame.flags:
                return status, body
        raise AssertionError(f"stream {stream_id} did not end: {seen}")

    try:
        peer.start()
        settings = peer.wait_for(SettingsFrame)
        assert isinstance(settings, SettingsFrame)
        assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
        # As a client does (RFC 9113 §6.5.3); Pounce holds to the limit from the start.
        peer.send(SettingsFrame(0, flags=["ACK"]))
        # Two streams whose apps wait, and a third with a body already in flight; its
        # header block adds an HPACK table entry that stream 7 refers to below.
        marker = (("x-marker", "from-the-refused-stream"),)
        peer.send(
            peer.headers(1, "/slow?key=cap-1", method="GET", end=True),
            peer.headers(3, "/slow?key=cap-3", method="GET", end=True),
            peer.headers(5, "/hold?key=cap-5", method="POST", extra=marker),
            DataFrame(5, b"x" * 1000, flags=["END_STREAM"]),
        )
        for frame in peer.frames():
            seen.append(frame)
            if isinstance(frame, RstStreamFrame):
                break
        assert isinstance(frame, RstStreamFrame), seen
        assert (frame.stream_id, frame.error_code) == (5, REFUSED_STREAM)

        release("cap-1")
        assert answer(1) == (b"200", b"done")
        # Stream 1 is closed: a new stream fits, and stream 5's app was never called.
        peer.send(peer.headers(7, "/held?key=cap-5", method="GET", end=True, extra=marker))
        assert answer(7) == (b"200", b"unknown")
        release("cap-3")
        assert answer(3) == (b"200", b"done")
    finally:
        peer.close()
    assert not any(isinstance(f, GoAwayFrame) for f in seen), seen
    resets = [f for f in seen if isinstance(f, RstStreamFrame)]
    # Only stream 5 was reset; the DATA already sent on it may be answered with
    # STREAM_CLOSED, as on any stream the server reset (RFC 9113 §5.1, "closed").
    assert {f.stream_id for f in resets} == {5}, resets
    assert resets[0].error_code == REFUSED_STREAM


def test_headers_on_a_closed_stream_at_the_limit_is_still_stream_closed(
    serve: Callable[..., Server],
) -> None:
    """At the limit, HEADERS on a stream that ended opens no stream: it is the
    connection error STREAM_CLOSED (RFC 9113 §5.1), as below the limit."""
    server = serve(APP, env={"POUNCE_HTTP2_MAX_CONCURRENT_STREAMS": "1"})
    peer = Peer(server)
    try:
        peer.start()
        peer.wait_for(SettingsFrame)
        peer.send(SettingsFrame(0, flags=["ACK"]))
        peer.send(peer.headers(1, "/held?key=none", method="GET", end=True))
        peer.wait_for(DataFrame, stream_id=1)  # stream 1 ended both ways
        peer.send(peer.headers(3, "/hold?key=limit1", method="GET", end=True))  # at the limit
        peer.wait_for(DataFrame, stream_id=3)  # stream 3 was taken, not refused
        peer.send(peer.headers(1, "/again", method="GET", end=True))
        assert peer.goaway().error_code == STREAM_CLOSED
    finally:
        peer.close()


def _block(peer: Peer, *fields: tuple[str, str]) -> bytes:
    return peer.encoder.encode(list(fields))


GET = ((":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "x"))
#: Malformed requests (RFC 9113 §8.1.1), each as the frames sent on a fresh stream.
MALFORMED: dict[str, Callable[[Peer, int], list[Frame]]] = {
    "upper-case field name": lambda p, s: [p.headers(s, end=True, extra=(("X-Upper", "1"),))],
    "connection-specific field": lambda p, s: [
        p.headers(s, end=True, extra=(("connection", "keep-alive"),))
    ],
    "te other than trailers": lambda p, s: [p.headers(s, end=True, extra=(("te", "gzip"),))],
    "unknown pseudo-header": lambda p, s: [p.headers(s, end=True, extra=((":foo", "bar"),))],
    "pseudo-header after a field": lambda p, s: [
        HeadersFrame(
            s,
            _block(p, *GET[:2], ("x-a", "1"), *GET[2:]),
            flags=["END_HEADERS", "END_STREAM"],
        )
    ],
    "missing :path": lambda p, s: [
        HeadersFrame(s, _block(p, GET[0], GET[1], GET[3]), flags=["END_HEADERS", "END_STREAM"])
    ],
    "repeated :method": lambda p, s: [
        HeadersFrame(s, _block(p, GET[0], *GET), flags=["END_HEADERS", "END_STREAM"])
    ],
    "host differing from :authority": lambda p, s: [
        p.headers(s, end=True, extra=(("host", "other.example"),))
    ],
    "content-length not a number": lambda p, s: [
        p.headers(s, end=True, extra=(("content-length", "1x"),))
    ],
    "content-length and no DATA": lambda p, s: [
        p.headers(s, end=True, extra=(("content-length", "5"),))
    ],
    "DATA short of content-length": lambda p, s: [
        p.headers(s, extra=(("content-length", "10"),)),
        DataFrame(s, b"12345", flags=["END_STREAM"]),
    ],
    "DATA over content-length": lambda p, s: [
        p.headers(s, extra=(("content-length", "2"),)),
        DataFrame(s, b"12345"),
    ],
    "pseudo-header in trailers": lambda p, s: [
        p.headers(s),
        DataFrame(s, b"body"),
        HeadersFrame(s, _block(p, (":path", "/x")), flags=["END_HEADERS", "END_STREAM"]),
    ],
    "trailers without END_STREAM": lambda p, s: [
        p.headers(s),
        HeadersFrame(s, _block(p, ("x-trailer", "1")), flags=["END_HEADERS"]),
    ],
}


def test_malformed_requests_are_stream_errors(peer: Peer) -> None:
    """RFC 9113 §8.1.1: a malformed request is a stream error, RST_STREAM PROTOCOL_ERROR
    on its stream alone; the connection, and a stream in flight on it, carry on."""
    decoder = Decoder()
    seen: list[Frame] = []

    def until(stream_id: int, kind: type[Frame]) -> Frame:
        for frame in peer.frames():
            seen.append(frame)
            if isinstance(frame, HeadersFrame):
                decoder.decode(frame.data, raw=True)  # keep the HPACK table in step
            assert not isinstance(frame, GoAwayFrame), seen
            if isinstance(frame, kind) and frame.stream_id == stream_id:
                return frame
        raise AssertionError(f"no {kind.__name__} on stream {stream_id}: {seen}")

    peer.start()
    peer.send(peer.headers(1, "/hold?key=malformed", method="GET", end=True))
    until(1, DataFrame)  # its app runs, waiting for http.disconnect
    stream_id = 1
    for case, frames in MALFORMED.items():
        stream_id += 2
        peer.send(*frames(peer, stream_id))
        reset = until(stream_id, RstStreamFrame)
        assert isinstance(reset, RstStreamFrame)
        assert reset.error_code == PROTOCOL_ERROR, case
    # The connection carries on: a good request is answered ...
    stream_id += 2
    peer.send(peer.headers(stream_id, "/held?key=malformed", method="GET", end=True))
    answer = until(stream_id, DataFrame)
    assert isinstance(answer, DataFrame)
    # ... and the app of stream 1 never got http.disconnect.
    assert answer.data == b"waiting"
    resets = {f.stream_id for f in seen if isinstance(f, RstStreamFrame)}
    assert 1 not in resets and stream_id not in resets, seen
