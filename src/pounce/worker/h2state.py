"""``h2``'s connection state machine, with stream errors where RFC 9113 names them.

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
"""

from __future__ import annotations

import logging

import h2.connection
import h2.events
import h2.exceptions
import h2.stream
from hyperframe.frame import DataFrame, Frame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

error_log = logging.getLogger("pounce.error")

PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7


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
