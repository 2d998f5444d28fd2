"""The worker <-> supervisor link, sans-I/O: every message, its fields, its codec.

Each message is one frame of the codec the control socket uses
(:mod:`pounce.protocols.framing`): a JSON object whose ``"t"`` names its
:class:`Kind`, the other keys its fields.

Worker to supervisor (:data:`WorkerMessage`):

=================  ===========================================================
``ready``          accepting connections (``pid``)
``hb``             heartbeat with a metrics snapshot (``stats``)
``snapshot``       the answer to ``snapshot_req`` (``id``, ``stats``)
``metrics_req``    a /metrics request on a public port wants the total (``id``)
``boot_failed``    the app could not be imported or started (``error``, ``code``,
                   ``traceback``: the app's frames or null)
``bye``            final snapshot before a clean exit (``stats``)
=================  ===========================================================

Supervisor to worker (:data:`SupervisorMessage`):

=================  ===========================================================
``state``          ``ready``: a generation is ready, not draining; ``live``: false
                   while the supervisor cannot start workers.  Also proves it alive.
``stop``           finish in-flight requests and exit; ``grace``: how long idle
                   keep-alive connections may still send one request (null: default)
``snapshot_req``   send a ``snapshot`` now (``id``)
``metrics``        the answer to ``metrics_req`` (``id``, ``text``)
=================  ===========================================================

:func:`encode` turns a message into bytes to write; :class:`LinkDecoder` takes bytes
and hands back whole payloads; :func:`decode_from_worker` and
:func:`decode_from_supervisor` check a payload and return the message, or raise
:class:`~pounce.errors.LinkProtocolError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, Final, cast

from pounce.errors import LinkProtocolError
from pounce.metrics import Snapshot
from pounce.protocols import framing
from pounce.protocols.framing import json_type

MAX_LINK_MESSAGE_SIZE: Final = 64 * 1024 * 1024
"""The largest payload either side accepts: the /metrics text of many workers fits."""

KIND_KEY: Final = "t"


class Kind(StrEnum):
    """Every message kind on the link, as written in ``"t"``."""

    # worker -> supervisor
    READY = "ready"
    HEARTBEAT = "hb"
    SNAPSHOT = "snapshot"
    METRICS_REQUEST = "metrics_req"
    BOOT_FAILED = "boot_failed"
    BYE = "bye"
    # supervisor -> worker
    STATE = "state"
    STOP = "stop"
    SNAPSHOT_REQUEST = "snapshot_req"
    METRICS = "metrics"


# -- worker -> supervisor -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    kind: ClassVar[Kind] = Kind.READY
    pid: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    kind: ClassVar[Kind] = Kind.HEARTBEAT
    stats: Snapshot


@dataclass(frozen=True, slots=True)
class SnapshotReply:
    kind: ClassVar[Kind] = Kind.SNAPSHOT
    id: int
    stats: Snapshot


@dataclass(frozen=True, slots=True)
class MetricsRequest:
    kind: ClassVar[Kind] = Kind.METRICS_REQUEST
    id: int


@dataclass(frozen=True, slots=True)
class BootFailed:
    kind: ClassVar[Kind] = Kind.BOOT_FAILED
    error: str
    code: int
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Bye:
    kind: ClassVar[Kind] = Kind.BYE
    stats: Snapshot


# -- supervisor -> worker -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateUpdate:
    kind: ClassVar[Kind] = Kind.STATE
    ready: bool
    live: bool


@dataclass(frozen=True, slots=True)
class Stop:
    kind: ClassVar[Kind] = Kind.STOP
    grace: float | None


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    kind: ClassVar[Kind] = Kind.SNAPSHOT_REQUEST
    id: int


@dataclass(frozen=True, slots=True)
class MetricsReply:
    kind: ClassVar[Kind] = Kind.METRICS
    id: int
    text: str


WorkerMessage = Ready | Heartbeat | SnapshotReply | MetricsRequest | BootFailed | Bye
SupervisorMessage = StateUpdate | Stop | SnapshotRequest | MetricsReply
Message = WorkerMessage | SupervisorMessage

WORKER_MESSAGES: Final[tuple[type[WorkerMessage], ...]] = (
    Ready,
    Heartbeat,
    SnapshotReply,
    MetricsRequest,
    BootFailed,
    Bye,
)
SUPERVISOR_MESSAGES: Final[tuple[type[SupervisorMessage], ...]] = (
    StateUpdate,
    Stop,
    SnapshotRequest,
    MetricsReply,
)


# -- field checks -------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _same(value: Any) -> Any:
    return value


def _to_float(value: Any) -> Any:
    return None if value is None else float(value)


_TYPES: Final[Mapping[str, tuple[str, Callable[[object], bool], Callable[[Any], Any]]]] = {
    "int": ("an integer", _is_int, _same),
    "bool": ("a boolean", lambda v: isinstance(v, bool), _same),
    "str": ("a string", lambda v: isinstance(v, str), _same),
    "Snapshot": ("an object", lambda v: isinstance(v, dict), _same),
    "str | None": ("a string or null", lambda v: v is None or isinstance(v, str), _same),
    "float | None": ("a number or null", lambda v: v is None or _is_number(v), _to_float),
}
"""Each field annotation used above: its name in errors, its check, its conversion."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    what: str
    check: Callable[[object], bool]
    convert: Callable[[Any], Any]
    required: bool


def _spec(cls: type[Message]) -> tuple[_Field, ...]:
    out = []
    for f in fields(cls):
        what, check, convert = _TYPES[str(f.type)]
        out.append(_Field(f.name, what, check, convert, f.default is MISSING))
    return tuple(out)


_SPECS: Final[dict[type[Message], tuple[_Field, ...]]] = {
    cls: _spec(cls) for cls in (*WORKER_MESSAGES, *SUPERVISOR_MESSAGES)
}
_BY_KIND: Final[dict[str, type[Message]]] = {cls.kind: cls for cls in _SPECS}


# -- codec --------------------------------------------------------------------------------


class LinkDecoder(framing.FrameDecoder):
    """The shared incremental frame decoder, raising :class:`LinkProtocolError`."""

    error = LinkProtocolError

    def __init__(self, max_size: int = MAX_LINK_MESSAGE_SIZE) -> None:
        super().__init__(max_size)


def encode(message: Message) -> bytes:
    """One framed message, ready to write."""
    body: dict[str, Any] = {KIND_KEY: message.kind.value}
    for f in _SPECS[type(message)]:
        body[f.name] = getattr(message, f.name)
    return framing.encode_frame(body, max_size=MAX_LINK_MESSAGE_SIZE, error=LinkProtocolError)


def decode_from_worker(payload: bytes) -> WorkerMessage:
    """Check one payload the supervisor received; raise :class:`LinkProtocolError`."""
    return cast(WorkerMessage, _decode(payload, WORKER_MESSAGES))


def decode_from_supervisor(payload: bytes) -> SupervisorMessage:
    """Check one payload a worker received; raise :class:`LinkProtocolError`."""
    return cast(SupervisorMessage, _decode(payload, SUPERVISOR_MESSAGES))


def _decode(payload: bytes, allowed: tuple[type[Message], ...]) -> Message:
    body = framing.decode_object(payload, LinkProtocolError)
    name = body.get(KIND_KEY)
    cls = _BY_KIND.get(name) if isinstance(name, str) else None  # a StrEnum key is a str
    if cls is None or cls not in allowed:
        raise LinkProtocolError(f"unexpected message kind {name!r}")
    spec = _SPECS[cls]
    unknown = sorted(set(body) - {KIND_KEY} - {f.name for f in spec})
    if unknown:
        raise LinkProtocolError(f"{cls.kind}: unknown field {unknown[0]!r}")
    values: dict[str, Any] = {}
    for f in spec:
        if f.name not in body:
            if f.required:
                raise LinkProtocolError(f"{cls.kind}: missing field {f.name!r}")
            continue
        value = body[f.name]
        if not f.check(value):
            raise LinkProtocolError(
                f"{cls.kind}: {f.name} must be {f.what}, not {json_type(value)}"
            )
        values[f.name] = f.convert(value)
    return cls(**values)
