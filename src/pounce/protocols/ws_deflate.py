"""permessage-deflate (RFC 7692) that never inflates more than a message may hold.

wsproto's :class:`~wsproto.extensions.PerMessageDeflate` inflates each received
payload in full (``decompress(data)`` without ``max_length``), and only then does
the message size check see it: a 100 KiB frame of compressed zeros becomes
100 MiB in memory before it is refused (a decompression bomb).  Here each call
inflates at most what is left of ``max_message_size`` plus one byte, so going
over the limit is noticed with at most ``max_message_size + 1`` bytes inflated
for the whole message, and the frame fails with 1009 (message too big) as an
uncompressed one does.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

# The empty stored block the sender strips from each message (RFC 7692 §7.2.2).
_TAIL = b"\x00\x00\xff\xff"


class BoundedPerMessageDeflate(PerMessageDeflate):
    """``PerMessageDeflate`` with inflation bounded per message (server side)."""

    def __init__(self, max_message_size: int) -> None:
        super().__init__()
        self.max_message_size = max_message_size
        self._inflated = 0  # bytes inflated so far of the message being received

    def _inflate(self, data: bytes, *, last: bool = False) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None
        # At least 1: max_length 0 would mean "no limit" to zlib.
        budget = self.max_message_size - self._inflated + 1
        try:
            out = decompressor.decompress(data, budget)
            if last and len(out) < budget:
                # Under budget, so no input is left over: flush() only hands out
                # what zlib still holds of this message.
                out += decompressor.flush()
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_message_size:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if not opcode.iscontrol():
            return super().frame_inbound_header(proto, opcode, rsv, payload_length)
        # A control frame, perhaps between the fragments of a message (RFC 6455 §5.4),
        # leaves that message as it began (wsproto would forget it is compressed).
        compressed = self._inbound_compressed
        result = super().frame_inbound_header(proto, opcode, rsv, payload_length)
        self._inbound_compressed = compressed
        return result

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not self._inbound_is_compressible:
            return None  # a control frame: see frame_inbound_header
        if not fin:
            return None
        compressed, self._inbound_compressed = self._inbound_compressed, None
        inflated, self._inflated = self._inflated, 0
        if not compressed:
            return None
        self._inflated = inflated
        data = self._inflate(_TAIL, last=True)
        self._inflated = 0
        no_takeover = (
            self.server_no_context_takeover if proto.client else self.client_no_context_takeover
        )
        if no_takeover:
            self._decompressor = None
        return data
