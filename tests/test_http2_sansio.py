"""HTTP/2's sans-I/O core (``protocols/http2.py``) with bytes alone: client frames built
with hyperframe and hpack go in, the server's frames and h2 events come out."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from pounce.protocols import http2
from pounce.protocols.http2 import ServerH2Connection, missing_h2_internals

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]


def _server(max_streams: int = 100) -> ServerH2Connection:
    conn = ServerH2Connection(
        config=h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams},
    )
    conn.initiate_connection()
    conn.receive_data(PREFACE + SettingsFrame(0).serialize())
    conn.data_to_send()
    return conn


def _frames(data: bytes) -> list[Frame]:
    out = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        out.append(frame)
        data = data[9 + length :]
    return out


def _headers(
    encoder: Encoder, stream_id: int, headers: list[tuple[str, str]], end: bool = True
) -> bytes:
    frame = HeadersFrame(stream_id, encoder.encode(headers))
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def _resets(frames: list[Frame]) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}


def test_a_stream_over_the_limit_is_refused_alone_and_its_header_block_still_decoded() -> None:
    conn, encoder = _server(max_streams=1), Encoder()
    conn.receive_data(_headers(encoder, 1, GET, end=False))  # stays open: the one allowed
    # Stream 3 is refused, but its block adds "x-seen" to the HPACK table, which the
    # block of stream 5 then refers to by index (RFC 9113 §4.3).
    events = conn.receive_data(_headers(encoder, 3, [*GET, ("x-seen", "3")]))
    assert [(type(e), e.stream_id, e.error_code, e.remote_reset) for e in events] == [
        (h2.events.StreamReset, 3, ErrorCodes.REFUSED_STREAM, False)
    ]
    out = _frames(conn.data_to_send())
    assert _resets(out) == {3: ErrorCodes.REFUSED_STREAM}
    assert not any(isinstance(f, GoAwayFrame) for f in out)
    # The client gives up stream 1; stream 5 is served, its headers decoded right.
    conn.receive_data(RstStreamFrame(1, error_code=ErrorCodes.CANCEL).serialize())
    events = conn.receive_data(_headers(encoder, 5, [*GET, ("x-seen", "3")]))
    received = [e for e in events if isinstance(e, h2.events.RequestReceived)]
    assert len(received) == 1 and received[0].stream_id == 5
    assert (b"x-seen", b"3") in list(received[0].headers or [])


def test_an_even_stream_over_the_limit_is_still_a_connection_error() -> None:
    conn, encoder = _server(max_streams=1), Encoder()
    conn.receive_data(_headers(encoder, 1, GET, end=False))
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.receive_data(_headers(encoder, 2, GET))


@pytest.mark.parametrize(
    "headers",
    [
        [(":method", "GET"), (":scheme", "http"), (":authority", "a")],  # no :path
        [*GET, (":path", "/again")],  # repeated pseudo-header
        [*GET, (":status", "200")],  # a response pseudo-header in a request
        [(":method", "GET"), ("x-a", "1"), (":scheme", "http"), (":path", "/")],  # misplaced
        [*GET, ("X-Upper", "1")],  # upper-case field name (§8.2)
        [*GET, ("connection", "close")],  # connection-specific (§8.2.2)
        [*GET, ("te", "gzip")],  # TE other than trailers
    ],
    ids=["missing", "repeated", "response-pseudo", "misplaced", "upper", "connection", "te"],
)
def test_a_malformed_request_resets_its_stream_only(headers: list[tuple[str, str]]) -> None:
    conn, encoder = _server(), Encoder()
    events = conn.receive_data(_headers(encoder, 1, headers))
    assert [(type(e), e.stream_id, e.error_code, e.remote_reset) for e in events] == [
        (h2.events.StreamReset, 1, ErrorCodes.PROTOCOL_ERROR, False)
    ]
    out = _frames(conn.data_to_send())
    assert _resets(out) == {1: ErrorCodes.PROTOCOL_ERROR}
    assert not any(isinstance(f, GoAwayFrame) for f in out)
    # The connection and its HPACK table carry on.
    events = conn.receive_data(_headers(encoder, 3, GET))
    assert [type(e) for e in events] == [h2.events.RequestReceived, h2.events.StreamEnded]


def test_data_beyond_content_length_resets_the_stream_and_returns_the_window() -> None:
    conn, encoder = _server(), Encoder()
    length = 3 * 16384
    conn.receive_data(_headers(encoder, 1, [*GET, ("content-length", str(length))], end=False))
    for _ in range(3):
        events = conn.receive_data(DataFrame(1, b"x" * 16384).serialize())
        assert [type(e) for e in events] == [h2.events.DataReceived]
    # The rest of the connection's window, past the content-length.
    events = conn.receive_data(DataFrame(1, b"x" * (65535 - length)).serialize())
    assert [(type(e), e.stream_id, e.error_code) for e in events] == [
        (h2.events.StreamReset, 1, ErrorCodes.PROTOCOL_ERROR)
    ]
    out = _frames(conn.data_to_send())
    assert _resets(out) == {1: ErrorCodes.PROTOCOL_ERROR}
    # Nobody reads the dropped bytes: the connection window gets them back at once.
    updates = [f for f in out if isinstance(f, WindowUpdateFrame) and f.stream_id == 0]
    assert sum(f.window_increment for f in updates) == 65535 - length


def test_trailers_without_end_stream_are_malformed() -> None:
    conn, encoder = _server(), Encoder()
    conn.receive_data(_headers(encoder, 1, GET, end=False))
    events = conn.receive_data(_headers(encoder, 1, [("x-trailer", "1")], end=False))
    assert [(type(e), e.stream_id, e.error_code) for e in events] == [
        (h2.events.StreamReset, 1, ErrorCodes.PROTOCOL_ERROR)
    ]
    assert _resets(_frames(conn.data_to_send())) == {1: ErrorCodes.PROTOCOL_ERROR}


def test_a_broken_header_block_stays_a_connection_error() -> None:
    conn = _server()
    frame = HeadersFrame(1, b"\xff\xff\xff\xff\xff")  # an index far past any table
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.receive_data(frame.serialize())


def test_error_codes_are_h2s_with_the_rfc_values() -> None:
    expected = {
        "NO_ERROR": 0x0,
        "PROTOCOL_ERROR": 0x1,
        "INTERNAL_ERROR": 0x2,
        "REFUSED_STREAM": 0x7,
        "CANCEL": 0x8,
        "COMPRESSION_ERROR": 0x9,
        "ENHANCE_YOUR_CALM": 0xB,
    }
    for name, value in expected.items():
        code = getattr(http2, name)
        assert code is ErrorCodes[name] and code == value


def test_the_h2_internals_relied_on_exist() -> None:
    # protocols/http2.py overrides and calls these: an h2 that moved them must fail here.
    assert missing_h2_internals() == []
    params = list(inspect.signature(h2.stream.H2Stream.receive_headers).parameters)
    assert params == ["self", "headers", "end_stream", "header_encoding"]
    for name in ("_receive_headers_frame", "_receive_data_frame", "_receive_priority_frame"):
        assert list(inspect.signature(getattr(h2.connection.H2Connection, name)).parameters) == [
            "self",
            "frame",
        ]


def test_h2_is_pinned_to_the_major_version_tested() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    pins = set(re.findall(r'"h2([^"]*)"', pyproject))
    assert pins == {">=4.1,<5"}, pins
    assert importlib.metadata.version("h2").split(".")[0] == "4"


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(h2.connection, "_decode_headers")
    missing = missing_h2_internals()
    assert "h2.connection._decode_headers" in missing


def test_request_helpers_read_the_header_block() -> None:
    from pounce.protocols.http2 import content_length, is_extended_connect

    connect = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":path", b"/")]
    assert is_extended_connect(connect)
    assert not is_extended_connect([(b":method", b"CONNECT"), (b":authority", b"a:1")])
    assert not is_extended_connect([(b":method", b"GET"), (b":protocol", b"websocket")])
    assert content_length([(b"content-length", b"12")]) == 12
    assert content_length([(b"content-length", b"x")]) is None
    assert content_length([]) is None


def test_a_connection_error_always_ends_in_goaway_with_the_right_code() -> None:
    import h2.exceptions
    from hpack.exceptions import HPACKDecodingError

    from pounce.protocols.http2 import COMPRESSION_ERROR, connection_error_bytes

    # a bad preface: h2 queued nothing, so the GOAWAY is added (PROTOCOL_ERROR)
    out = connection_error_bytes(b"", h2.exceptions.ProtocolError("bad preface"))
    assert out[:4] == b"\x00\x00\x08\x07" and out[-4:] == (1).to_bytes(4, "big")
    # an HPACK failure h2 reports as PROTOCOL_ERROR is COMPRESSION_ERROR (RFC 9113 §4.3)
    try:
        raise h2.exceptions.ProtocolError("hpack") from HPACKDecodingError("bad")
    except h2.exceptions.ProtocolError as exc:
        out = connection_error_bytes(b"", exc)
    assert out[-4:] == int(COMPRESSION_ERROR).to_bytes(4, "big")
