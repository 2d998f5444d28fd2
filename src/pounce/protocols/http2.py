"""HTTP/2 (RFC 9113), sans-I/O: ``h2``'s connection adapted to the server's rules.

Bytes in (``receive_data``), events out, bytes back (``data_to_send``): no asyncio,
sockets or clocks, so it is tested with frames alone.  The worker's
:class:`~pounce.worker.h2connection.H2Connection` drives it over a transport.

``h2`` ends the whole connection (GOAWAY PROTOCOL_ERROR) for three things that
RFC 9113 makes errors of one stream only:

* one stream over SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2): RST_STREAM
  REFUSED_STREAM, so the client may retry it (§8.7);
* a malformed request (§8.1.1): a missing, repeated, unknown or misplaced
  pseudo-header, an upper-case or connection-specific field (§8.2), ``TE`` other
  than ``trailers``, a forbidden character, Host differing from ``:authority``
  (§8.3.1), a bad ``content-length`` or one the DATA frames do not add up to:
  RST_STREAM PROTOCOL_ERROR;
* trailers without END_STREAM: likewise malformed.

The other streams and the connection carry on.  A malformed stream never reaches
an app; if its app already runs (bad trailers, a body longer than its
``content-length``), a :class:`h2.events.StreamReset` with ``remote_reset=False``
tells the connection to end it.  HPACK errors stay connection errors: the header
table is the connection's (§4.3).

This reaches into ``h2`` internals (:data:`H2_INTERNALS`), so ``h2`` is pinned to
the major version it was tested with, and a test checks they all exist: an upgrade
that moves them fails loudly instead of ending connections at run time.
"""

from __future__ import annotations

import importlib
import logging

import h2.connection
import h2.events
import h2.exceptions
import h2.stream
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import DataFrame, Frame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

error_log = logging.getLogger("pounce.error")

# The error codes (RFC 9113 §7) the server sends, as h2 names them.
NO_ERROR = ErrorCodes.NO_ERROR
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM
CANCEL = ErrorCodes.CANCEL
COMPRESSION_ERROR = ErrorCodes.COMPRESSION_ERROR
ENHANCE_YOUR_CALM = ErrorCodes.ENHANCE_YOUR_CALM

#: The ``h2`` internals :class:`ServerH2Connection` relies on: (module, dotted name).
H2_INTERNALS: tuple[tuple[str, str], ...] = (
    ("h2.connection", "_decode_headers"),
    ("h2.connection", "ConnectionInputs.RECV_HEADERS"),
    ("h2.connection", "AllowedStreamIDs"),
    ("h2.connection", "H2Connection._receive_headers_frame"),
    ("h2.connection", "H2Connection._receive_data_frame"),
    ("h2.connection", "H2Connection._receive_priority_frame"),
    ("h2.connection", "H2Connection._get_or_create_stream"),
    ("h2.connection", "H2Connection.open_inbound_streams"),
    ("h2.stream", "H2Stream.receive_headers"),
    ("h2.stream", "StreamClosedBy.SEND_RST_STREAM"),
)
#: Attributes an ``h2`` connection object sets in ``__init__`` that it relies on.
H2_INSTANCE_INTERNALS = (
    "decoder",
    "state_machine",
    "streams",
    "highest_inbound_stream_id",
    "_closed_streams",
    "_inbound_flow_control_window_manager",
)


def missing_h2_internals() -> list[str]:
    """The names of :data:`H2_INTERNALS` (and instance attributes) this ``h2`` lacks."""
    missing = []
    for module_name, dotted in H2_INTERNALS:
        obj: object = importlib.import_module(module_name)
        for part in dotted.split("."):
            if not hasattr(obj, part):
                missing.append(f"{module_name}.{dotted}")
                break
            obj = getattr(obj, part)
    conn = h2.connection.H2Connection()
    missing += [
        f"H2Connection().{name}" for name in H2_INSTANCE_INTERNALS if not hasattr(conn, name)
    ]
    manager = getattr(conn, "_inbound_flow_control_window_manager", None)
    if not hasattr(manager, "process_bytes"):
        missing.append("H2Connection()._inbound_flow_control_window_manager.process_bytes")
    return missing


class ServerH2Connection(h2.connection.H2Connection):
    """``h2``'s server connection, with the stream errors above."""

    def _receive_headers_frame(
        self, frame: HeadersFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        stream_id = frame.stream_id
        if stream_id not in self.streams:
            limit = self.local_settings.max_concurrent_streams
            if self.open_inbound_streams + 1 > limit:
                if stream_id % 2 == 0:
                    # Never a client's stream: a connection error all the same.
                    raise h2.exceptions.TooManyStreamsError(f"Max inbound streams is {limit}")
                return self._refuse(frame)
        # Decoded whatever comes next: the HPACK table is the connection's (§4.3).
        headers = h2.connection._decode_headers(self.decoder, frame.data)
        events = self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_HEADERS)
        stream = self._get_or_create_stream(
            stream_id, h2.connection.AllowedStreamIDs(not self.config.client_side)
        )
        try:
            frames, stream_events = stream.receive_headers(
                headers, "END_STREAM" in frame.flags, self.config.header_encoding
            )
        except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError):
            raise  # the stream's state, not its request: as h2 decides
        except h2.exceptions.ProtocolError as exc:
            return [], events + self._malformed(stream, exc)
        if "PRIORITY" in frame.flags:
            p_frames, p_events = self._receive_priority_frame(frame)
            stream_events[0].priority_updated = p_events[0]  # type: ignore[attr-defined]
            stream_events.extend(p_events)
            frames.extend(p_frames)
        return frames, events + stream_events

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as exc:
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                raise
            events = self._malformed(stream, exc)
        # Nobody reads this DATA now: give its bytes back to the connection window.
        frames: list[Frame] = []
        increment = self._inbound_flow_control_window_manager.process_bytes(
            frame.flow_controlled_length
        )
        if increment:
            frames.append(WindowUpdateFrame(0, window_increment=increment))
        return frames, events

    def _malformed(
        self, stream: h2.stream.H2Stream, exc: h2.exceptions.ProtocolError
    ) -> list[h2.events.Event]:
        """A malformed request (RFC 9113 §8.1.1): RST_STREAM PROTOCOL_ERROR, this stream only."""
        try:
            self.reset_stream(stream.stream_id, PROTOCOL_ERROR)
        except h2.exceptions.ProtocolError:
            raise exc from None  # no stream left to reset: as h2 would have it
        error_log.info("HTTP/2 malformed request on stream %d: %s", stream.stream_id, exc)
        return [
            h2.events.StreamReset(
                stream_id=stream.stream_id, error_code=PROTOCOL_ERROR, remote_reset=False
            )
        ]

    def _refuse(self, frame: HeadersFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        """One stream over the limit: RST_STREAM REFUSED_STREAM (RFC 9113 §5.1.2)."""
        stream_id = frame.stream_id
        # The header block is decoded all the same: the HPACK table is the connection's
        # (RFC 9113 §4.3), and skipping one block would garble every later one.
        h2.connection._decode_headers(self.decoder, frame.data)
        self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_HEADERS)
        if stream_id <= self.highest_inbound_stream_id:
            # HEADERS on a closed stream opens nothing: what h2 does under the limit.
            raise h2.exceptions.StreamIDTooLowError(stream_id, self.highest_inbound_stream_id)
        # The id is used up (§5.1.1) and the stream closed by our RST_STREAM: DATA still
        # in flight on it is handled as on any stream h2 reset (the connection window
        # re-opened, RST_STREAM STREAM_CLOSED), later HEADERS on it likewise.
        self.highest_inbound_stream_id = stream_id
        self._closed_streams[stream_id] = h2.stream.StreamClosedBy.SEND_RST_STREAM
        event = h2.events.StreamReset(
            stream_id=stream_id, error_code=REFUSED_STREAM, remote_reset=False
        )
        return [RstStreamFrame(stream_id, error_code=REFUSED_STREAM)], [event]


def is_extended_connect(headers: list[tuple[bytes, bytes]]) -> bool:
    """An extended CONNECT (RFC 8441: ``:method`` CONNECT with ``:protocol``), e.g. WebSocket."""
    method = protocol = None
    for name, value in headers:
        if name == b":method":
            method = value
        elif name == b":protocol":
            protocol = value
    return method == b"CONNECT" and protocol is not None


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's ``content-length``, when it is a number."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


#: Length 8, type GOAWAY: the frame h2 queues on a connection error (no debug data).
_GOAWAY_HEAD = b"\x00\x00\x08\x07"


def connection_error_bytes(out: bytes, exc: h2.exceptions.ProtocolError) -> bytes:
    """What to send for a connection error: ``out`` (h2's pending bytes) ending in GOAWAY.

    h2 queues a GOAWAY with the exception's code, except for a bad client preface,
    which fails before h2 queues one (RFC 9113 §3.4); HPACK errors are
    COMPRESSION_ERROR (RFC 9113 §4.3), which h2 reports as PROTOCOL_ERROR.
    """
    if out[-17:-13] != _GOAWAY_HEAD:
        code = int(getattr(exc, "error_code", PROTOCOL_ERROR) or PROTOCOL_ERROR)
        out += _GOAWAY_HEAD + bytes(5) + bytes(4) + code.to_bytes(4, "big")
    cause = exc.__cause__
    if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
        out = out[:-4] + COMPRESSION_ERROR.to_bytes(4, "big")
    return out
