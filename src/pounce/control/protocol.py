"""The control protocol, sans-I/O: framing, message encoding and request validation.

Every message is a 4-byte big-endian length followed by that many bytes of UTF-8
JSON (the shape of gunicorn's ``ctl`` protocol), framed by the codec it shares with
the worker link (:mod:`pounce.protocols.framing`).  A request is
``{"v": 1, "cmd": "status", "args": {...}}``; a reply is
``{"v": 1, "ok": true, "result": {...}}`` or
``{"v": 1, "ok": false, "error": "text", "details": ["..."]}``.

Nothing here touches a socket: :class:`FrameDecoder` takes bytes and hands back
whole payloads, the ``encode_*`` functions return bytes to write, and the
``decode_*`` functions turn a payload into a checked :class:`Request` or
:class:`Reply`.  Problems raise :class:`~pounce.errors.ControlProtocolError`;
``fatal`` is set only when the framing is broken and the stream cannot be read on.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pounce.errors import ControlProtocolError
from pounce.protocols import framing
from pounce.protocols.framing import HEADER_SIZE as HEADER_SIZE
from pounce.protocols.framing import JSONObject as JSONObject
from pounce.protocols.framing import json_type

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_SIZE: Final = 1024 * 1024
"""The largest payload (JSON bytes, without the 4-byte header) either side accepts."""


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a command: its JSON type, default and lower bound.

    ``kind`` is ``bool``, ``int`` or ``float`` (a float argument also takes an
    integer).  ``required`` arguments have no default; ``nullable`` ones accept null.
    """

    kind: type[bool] | type[int] | type[float]
    default: bool | int | float | None = None
    required: bool = False
    nullable: bool = False
    minimum: int | float | None = None


COMMANDS: Final[Mapping[str, Mapping[str, Arg]]] = {
    "status": {},
    "reload": {},
    "drain": {
        "wait": Arg(bool, default=False),
        "timeout": Arg(float, default=None, nullable=True, minimum=0),
    },
    "resume": {},
    "stop": {"now": Arg(bool, default=False)},
    "scale": {"workers": Arg(int, required=True, minimum=1)},
    "workers": {},
}
"""Every command the daemon understands and the arguments each one takes."""


@dataclass(frozen=True, slots=True)
class Request:
    """A checked request: a known command and its arguments, defaults filled in."""

    cmd: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """A checked reply.  ``result`` is set when ``ok``; ``error`` and ``details`` otherwise."""

    ok: bool
    result: JSONObject = field(default_factory=dict)
    error: str = ""
    details: tuple[str, ...] = ()


# -- framing (the shared codec, raising ControlProtocolError) ----------------------------


def encode_frame(message: Mapping[str, Any], *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """Serialize ``message`` as strict JSON and prefix its length.

    Raises :class:`ControlProtocolError` when it is not JSON-able (NaN included)
    or longer than ``max_size`` bytes.
    """
    return framing.encode_frame(message, max_size=max_size, error=ControlProtocolError)


class FrameDecoder(framing.FrameDecoder):
    """The shared incremental decoder, raising :class:`ControlProtocolError`."""

    error = ControlProtocolError

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        super().__init__(max_size)


# -- messages -----------------------------------------------------------------------------


def encode_request(cmd: str, args: Mapping[str, Any] | None = None) -> bytes:
    """A framed request.  It is not checked here: the daemon is the judge."""
    return encode_frame({"v": PROTOCOL_VERSION, "cmd": cmd, "args": dict(args or {})})


def encode_result(result: Mapping[str, Any]) -> bytes:
    """A framed success reply carrying ``result``."""
    return encode_frame({"v": PROTOCOL_VERSION, "ok": True, "result": dict(result)})


def encode_error(error: str, details: Sequence[str] = ()) -> bytes:
    """A framed error reply; ``details`` are extra lines such as config errors.

    Details are dropped, then the error text cut, should the reply outgrow the limit.
    """
    message = {"v": PROTOCOL_VERSION, "ok": False, "error": error, "details": list(details)}
    try:
        return encode_frame(message)
    except ControlProtocolError:
        return encode_frame({**message, "error": error[:4096], "details": []})


def decode_payload(payload: bytes) -> JSONObject:
    """Parse one payload into a JSON object, or raise :class:`ControlProtocolError`."""
    value = framing.decode_object(payload, ControlProtocolError)
    _check_version(value)
    return value


def _check_version(message: Mapping[str, Any]) -> None:
    version = message.get("v")
    if version is None:
        raise ControlProtocolError('message has no protocol version ("v")')
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ControlProtocolError(
            f"unsupported protocol version {version!r} (this side speaks {PROTOCOL_VERSION})"
        )


def decode_request(payload: bytes) -> Request:
    """Parse and check a request payload: version, known command, valid arguments."""
    message = decode_payload(payload)
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise ControlProtocolError('request has no command ("cmd" must be a string)')
    spec = COMMANDS.get(cmd)
    if spec is None:
        raise ControlProtocolError(f"unknown command {cmd!r}{_did_you_mean(cmd, COMMANDS)}")
    args = message.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlProtocolError(f'"args" must be a JSON object, not {json_type(args)}')
    return Request(cmd, check_args(cmd, spec, args))


def check_args(cmd: str, spec: Mapping[str, Arg], args: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``args`` against ``spec``; return them with defaults filled in."""
    unknown = sorted(set(args) - set(spec))
    if unknown and not spec:
        raise ControlProtocolError(f"{cmd} takes no arguments, got {unknown[0]!r}")
    if unknown:
        hint = _did_you_mean(unknown[0], spec)
        raise ControlProtocolError(f"{cmd}: unknown argument {unknown[0]!r}{hint}")
    checked: dict[str, Any] = {}
    for name, arg in spec.items():
        if name not in args:
            if arg.required:
                raise ControlProtocolError(f"{cmd}: missing argument {name!r}")
            checked[name] = arg.default
            continue
        checked[name] = _check_value(f"{cmd}: {name}", arg, args[name])
    return checked


def _check_value(where: str, arg: Arg, value: Any) -> Any:
    if value is None:
        if arg.nullable:
            return None
        raise ControlProtocolError(f"{where} must not be null")
    if arg.kind is bool:
        ok = isinstance(value, bool)
    elif arg.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ControlProtocolError(
            f"{where} must be {arg.kind.__name__}, not {json_type(value)} {value!r}"
        )
    if arg.minimum is not None and value < arg.minimum:
        raise ControlProtocolError(f"{where} must be at least {arg.minimum}, not {value!r}")
    return float(value) if arg.kind is float else value


def decode_reply(payload: bytes) -> Reply:
    """Parse and check a reply payload."""
    message = decode_payload(payload)
    ok = message.get("ok")
    if not isinstance(ok, bool):
        raise ControlProtocolError('reply has no "ok" flag')
    if ok:
        result = message.get("result", {})
        if not isinstance(result, dict):
            raise ControlProtocolError(f'"result" must be a JSON object, not {json_type(result)}')
        return Reply(True, result=result)
    error = message.get("error")
    details = message.get("details", [])
    if not isinstance(error, str):
        raise ControlProtocolError('error reply has no "error" text')
    if not isinstance(details, list) or not all(isinstance(d, str) for d in details):
        raise ControlProtocolError('"details" must be a list of strings')
    return Reply(False, error=error, details=tuple(details))


def _did_you_mean(name: str, choices: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(choices)})"
