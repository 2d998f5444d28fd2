"""A permessage-deflate bomb over a real socket: one small compressed frame that would
inflate to 100 MiB.  The worker refuses it with 1009 having inflated at most
``max_message_size + 1`` bytes, so its peak memory (VmHWM) barely moves."""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.procs import children_of
from helpers.server import Server, wait_for
from helpers.ws import RawReader, upgrade_request

pytestmark = pytest.mark.slow

APP = "apps.ws_echo:app"
MiB = 1 << 20


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) * 1024


def _deflated_zeros(size: int) -> bytes:
    """``size`` zero bytes as one permessage-deflate payload (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    chunk = bytes(MiB)
    data = b"".join(compressor.compress(chunk) for _ in range(size // MiB))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def _compressed_binary_frame(payload: bytes) -> bytes:
    """One final, masked binary frame with RSV1 (compressed), 64-bit length."""
    mask = os.urandom(4)
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return struct.pack("!BBQ", 0x80 | 0x40 | 0x2, 0x80 | 127, n) + mask + masked


def test_a_deflate_bomb_closes_1009_without_inflating_it(serve: Callable[..., Server]) -> None:
    server = serve(APP, env={"POUNCE_WEBSOCKET_MAX_MESSAGE_SIZE": str(MiB)})
    assert wait_for(lambda: len(children_of(server.proc.pid)) == 1), server.output
    (worker,) = children_of(server.proc.pid)
    payload = _deflated_zeros(100 * MiB)
    assert len(payload) < 200 * 1024  # ~100 KiB on the wire
    with server.connect(timeout=10) as sock:
        sock.sendall(upgrade_request(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        reader = RawReader(sock)
        head = reader.head()
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"sec-websocket-extensions: permessage-deflate" in head.lower()
        before = _peak_rss(worker)
        sock.sendall(_compressed_binary_frame(payload))
        opcode, close = reader.frame() or (0, b"")
        assert opcode == 0x8, (opcode, close)
        assert struct.unpack("!H", close[:2])[0] == 1009
        assert close[2:] == b"message too big"
        grown = _peak_rss(worker) - before
    # Unbounded, the 100 MiB (and a copy of it) would be in memory at once.
    assert grown < 50 * MiB, f"VmHWM grew by {grown / MiB:.1f} MiB"
    assert "Traceback" not in server.output, server.output
