"""Length-prefixed JSON frames, sans-I/O: the one codec of the control socket and the
worker link.

A frame is a 4-byte big-endian length followed by that many bytes of strict UTF-8
JSON (no NaN or Infinity), always a JSON object.  Nothing here touches a socket:
:func:`encode_frame` returns bytes to write, :class:`FrameDecoder` takes bytes as they
arrive and hands back whole payloads, :func:`decode_object` parses one payload.

Each protocol on top names its own error class (a :class:`~pounce.errors.FrameError`
subclass), so its callers catch what they know: the control socket raises
:class:`~pounce.errors.ControlProtocolError`, the link
:class:`~pounce.errors.LinkProtocolError`.  ``fatal`` is set only when the framing is
broken and the stream cannot be read on.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from pounce.errors import FrameError

_HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = _HEADER.size

JSONObject = dict[str, Any]


def encode_frame(
    message: Mapping[str, Any], *, max_size: int, error: type[FrameError] = FrameError
) -> bytes:
    """Serialize ``message`` as strict JSON and prefix its length.

    Raises ``error`` when it is not JSON-able (NaN included) or its payload is longer
    than ``max_size`` bytes.
    """
    try:
        text = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise error(f"message is not JSON-able: {exc}") from exc
    payload = text.encode("utf-8")
    if len(payload) > max_size:
        raise error(f"message too large: {len(payload)} bytes (limit {max_size})")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, then take whole payloads
    with :meth:`next_frame`.

    An announced length over ``max_size`` raises a fatal ``error`` as soon as the
    header is in, before any of the body is buffered.  Subclasses set ``error``.
    """

    error: ClassVar[type[FrameError]] = FrameError

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        self._buffer += data

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet returned as a frame."""
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        """The next whole payload, or None until more bytes are fed."""
        if len(self._buffer) < HEADER_SIZE:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self.max_size:
            raise self.error(
                f"message too large: {length} bytes (limit {self.max_size})", fatal=True
            )
        end = HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        return payload


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def decode_object(payload: bytes, error: type[FrameError] = FrameError) -> JSONObject:
    """Parse one payload into a JSON object, or raise ``error``."""
    try:
        value = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise error(f"message is not UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise error("message is nested too deeply") from exc
    except ValueError as exc:
        raise error(f"message is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise error(f"message must be a JSON object, not {json_type(value)}")
    return value


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return names.get(type(value), type(value).__name__)
