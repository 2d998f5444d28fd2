"""Sans-I/O WebSocket (RFC 6455): the opening handshake and a session over wsproto.

:func:`check_upgrade` validates an HTTP/1.1 upgrade request (RFC 6455 §4.2.1) and
returns a :class:`Handshake` that renders the 101, or a denial response.  A
:class:`Session` then turns received bytes into events (:class:`Message`,
:class:`Closed`) and messages into bytes, answering pings itself and enforcing the
largest message size.  No asyncio, sockets or clocks: bytes in, events out.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, generate_accept_token

from pounce.errors import ProtocolError
from pounce.protocols import http11
from pounce.protocols.ws_deflate import BoundedPerMessageDeflate

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TOO_BIG",
    "Closed",
    "Handshake",
    "Message",
    "Session",
    "UpgradeError",
    "check_upgrade",
    "is_websocket_upgrade",
    "negotiate_extensions",
    "offers",
]

WEBSOCKET_VERSION = b"13"
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006  # never sent on the wire: the connection dropped
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012


class UpgradeError(ProtocolError):
    """An invalid WebSocket upgrade request; ``headers`` go into the error response."""

    def __init__(
        self, message: str, status: int = 400, headers: http11.Headers | None = None
    ) -> None:
        super().__init__(message, status)
        self.headers = headers or []

    def response(self) -> bytes:
        """The complete close-delimited error response."""
        body = self.message.encode() + b"\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            *self.headers,
            (b"connection", b"close"),
        ]
        return http11.serialize_head(self.status, headers) + body


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message from the peer: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is closing (or closed) with ``code``; ``by_peer`` when it started it."""

    code: int
    reason: str = ""
    by_peer: bool = True


def _tokens(headers: http11.Headers, name: bytes) -> list[bytes]:
    """The lower-cased items of the comma-separated field ``name``, as bytes.

    Compared as bytes, never decoded: a byte above 0x7f is no token, not an error here
    (the parser refuses it in ``Upgrade`` and ``Connection`` already).
    """
    out: list[bytes] = []
    for key, value in headers:
        if key == name:
            out += [t.lower() for piece in value.split(b",") if (t := piece.strip(b" \t"))]
    return out


def is_websocket_upgrade(headers: http11.Headers) -> bool:
    """True when an ``Upgrade`` header asks for ``websocket`` (not e.g. ``h2c``)."""
    return b"websocket" in _tokens(headers, b"upgrade")


def offers(headers: http11.Headers) -> tuple[list[str], list[str]]:
    """The subprotocols and the extension offers of a handshake's headers, in order
    (``Sec-WebSocket-Protocol``, ``Sec-WebSocket-Extensions``; HTTP/1.1 and HTTP/2 alike)."""
    subprotocols: list[str] = []
    extensions: list[str] = []
    for key, value in headers:
        if key == b"sec-websocket-protocol":
            subprotocols += _items(value)
        elif key == b"sec-websocket-extensions":
            extensions += _items(value)
    return subprotocols, extensions


def _items(value: bytes) -> list[str]:
    return [item for piece in value.decode("latin-1").split(",") if (item := piece.strip())]


def negotiate_extensions(
    extension_offers: list[str], *, max_message_size: int
) -> tuple[bytes | None, list[Extension]]:
    """Agree on permessage-deflate (RFC 7692) when offered: the
    ``Sec-WebSocket-Extensions`` answer (None: no extension) and the extensions
    for the :class:`Session`, whose inflation stops past ``max_message_size``."""
    if not extension_offers:
        return None, []
    offered: list[Extension] = [BoundedPerMessageDeflate(max_message_size)]
    agreed = server_extensions_handshake(extension_offers, offered)
    if agreed is None:
        return None, []
    return agreed, [e for e in offered if e.enabled()]


@dataclass(slots=True)
class Handshake:
    """A valid upgrade request, waiting for the app to accept or deny it."""

    key: bytes
    subprotocols: list[str]
    extension_offers: list[str]

    def accept(
        self,
        subprotocol: str | None,
        headers: http11.Headers,
        *,
        extensions: bytes | None,
        date: bytes,
    ) -> bytes:
        """The ``101 Switching Protocols`` head (RFC 6455 §4.2.2); ``extensions`` is
        the agreed ``Sec-WebSocket-Extensions`` (:func:`negotiate_extensions`)."""
        out: http11.Headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", generate_accept_token(self.key)),
        ]
        if subprotocol is not None:
            out.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        if extensions is not None:
            out.append((b"sec-websocket-extensions", extensions))
        names = {name for name, _ in out}
        has_date = has_server = False
        for name, value in headers:
            lname = name.lower()
            if lname in names or lname in (b"content-length", b"transfer-encoding"):
                continue  # the handshake's own headers are ours to write
            has_date = has_date or lname == b"date"
            has_server = has_server or lname == b"server"
            out.append((name, value))
        if not has_date:
            out.append((b"date", date))
        if not has_server:
            out.append((b"server", b"pounce"))
        return http11.serialize_head(101, out)


_ASCII_VALUE = re.compile(rb"[\t\x20-\x7e]*")


def _token_list(value: bytes) -> bool:
    """``#token`` (RFC 9110 §5.6.1), element by element (linear in the value)."""
    for piece in value.split(b","):
        piece = piece.strip(b" \t")
        if piece and http11.TOKEN.fullmatch(piece) is None:
            return False
    return True


def check_upgrade(request: http11.Request) -> Handshake:
    """Validate an upgrade request (RFC 6455 §4.2.1); raise :class:`UpgradeError`."""
    headers = request.headers
    if request.http_version != "1.1":
        raise UpgradeError("WebSocket needs HTTP/1.1")
    if request.method != b"GET":
        raise UpgradeError("a WebSocket upgrade must be a GET request")
    if b"upgrade" not in _tokens(headers, b"connection"):
        raise UpgradeError('a WebSocket upgrade needs "Connection: Upgrade"')
    versions = [v for k, v in headers if k == b"sec-websocket-version"]
    if versions != [WEBSOCKET_VERSION]:
        # RFC 6455 §4.4: answer with the versions we speak.
        raise UpgradeError(
            "unsupported Sec-WebSocket-Version",
            426,
            [(b"sec-websocket-version", WEBSOCKET_VERSION)],
        )
    keys = [v for k, v in headers if k == b"sec-websocket-key"]
    if len(keys) != 1:
        raise UpgradeError("a WebSocket upgrade needs one Sec-WebSocket-Key")
    try:
        decoded = base64.b64decode(keys[0].strip(), validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise UpgradeError("invalid Sec-WebSocket-Key")
    for key, value in headers:
        # RFC 6455 §4.3: Sec-WebSocket-Protocol = 1#token; extensions are ASCII too.
        if key == b"sec-websocket-protocol" and not _token_list(value):
            raise UpgradeError("invalid Sec-WebSocket-Protocol")
        if key == b"sec-websocket-extensions" and _ASCII_VALUE.fullmatch(value) is None:
            raise UpgradeError("invalid Sec-WebSocket-Extensions")
    subprotocols, extension_offers = offers(headers)
    return Handshake(keys[0].strip(), subprotocols, extension_offers)


class Session:
    """An open WebSocket connection, server side.

    :meth:`receive` returns the events in the bytes given and the bytes to answer
    with (pongs, close replies); the caller writes them.  A message larger than
    ``max_message_size`` closes the connection with 1009.
    """

    def __init__(self, extensions: list[Extension], max_message_size: int) -> None:
        self._conn = Connection(ConnectionType.SERVER, extensions)
        self.max_message_size = max_message_size
        self._parts: list[str | bytes] = []
        self._size = 0
        self.closed: Closed | None = None
        self.pong_payloads: list[bytes] = []

    @property
    def open(self) -> bool:
        """Messages can still be sent."""
        return self._conn.state is ConnectionState.OPEN

    @property
    def done(self) -> bool:
        """Both closing frames went (or the connection failed): close the transport."""
        return self._conn.state is ConnectionState.CLOSED

    def receive(self, data: bytes | None) -> tuple[list[Message | Closed], bytes]:
        """Feed received bytes (``None`` at EOF)."""
        if self._conn.state is ConnectionState.CLOSED:
            return [], b""
        self._conn.receive_data(data)
        events: list[Message | Closed] = []
        out = b""
        for event in self._conn.events():
            produced, reply = self._handle(event)
            out += reply
            if produced is not None:
                events.append(produced)
            if self.done:
                break
        return events, out

    def _handle(self, event: Event) -> tuple[Message | Closed | None, bytes]:
        if isinstance(event, TextMessage | BytesMessage):
            if self.closed is not None:
                return None, b""  # after we started closing (RFC 6455 §5.5.1): dropped
            self._size += len(event.data)
            if self._size > self.max_message_size:
                return self._fail(CLOSE_TOO_BIG, "message too big")
            self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
            if not event.message_finished:
                return None, b""
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, TextMessage):
                return Message("".join(p for p in parts if isinstance(p, str))), b""
            return Message(b"".join(p for p in parts if isinstance(p, bytes))), b""
        if isinstance(event, Ping):
            return None, self._send(event.response())
        if isinstance(event, Pong):
            self.pong_payloads.append(bytes(event.payload))
            return None, b""
        assert isinstance(event, CloseConnection)
        if self._conn.state is ConnectionState.OPEN:
            # wsproto reports a protocol violation this way (1002, 1007, ...): we close;
            # 1009 is a compressed message inflating past the limit (ws_deflate).
            if event.code == CLOSE_TOO_BIG:
                return self._fail(CLOSE_TOO_BIG, "message too big")
            return self._fail(event.code, event.reason or "")
        if self._conn.state is ConnectionState.REMOTE_CLOSING:
            code = event.code
            reply = self._send(event.response())
            if self.closed is None:
                self.closed = Closed(code, event.reason or "", by_peer=True)
                return self.closed, reply
            return None, reply
        # The peer answered our close (or the connection dropped).
        if self.closed is None:
            self.closed = Closed(event.code, event.reason or "", by_peer=True)
            return self.closed, b""
        return None, b""

    def _fail(self, code: int, reason: str) -> tuple[Closed, bytes]:
        out = self.close(code, reason)
        self._conn._state = ConnectionState.CLOSED  # read no more (RFC 6455 §7.1.7)
        assert self.closed is not None
        return self.closed, out

    def _send(self, event: Event) -> bytes:
        try:
            return self._conn.send(event)
        except LocalProtocolError:
            return b""

    def send(self, data: str | bytes) -> bytes:
        """One complete message; ``b""`` once closing."""
        if not self.open:
            return b""
        if isinstance(data, str):
            return self._conn.send(TextMessage(data=data))
        return self._conn.send(BytesMessage(data=data))

    def ping(self, payload: bytes) -> bytes:
        return self._send(Ping(payload=payload)) if self.open else b""

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
        """Start (or answer) the closing handshake with ``code``."""
        if self.closed is None:
            self.closed = Closed(code, reason, by_peer=False)
        if code in (CLOSE_ABNORMAL, CloseReason.NO_STATUS_RCVD):
            code = CLOSE_NORMAL  # reserved codes never go on the wire (RFC 6455 §7.4.1)
        return self._send(CloseConnection(code=code, reason=reason or None))
