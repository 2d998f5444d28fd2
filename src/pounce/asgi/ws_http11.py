"""A WebSocket over an HTTP/1.1 connection (RFC 6455): a transport for the bridge.

:class:`HTTP11WebSocket` answers the handshake in HTTP/1.1 bytes (the ``101
Switching Protocols``, or a denial response after which the connection closes)
and hands frames, flow control and closing to the connection that took the
socket over, through :class:`ConnectionSink` (the worker's
``WebSocketConnection``).
"""

from __future__ import annotations

from typing import Protocol

from pounce.asgi.http import ASGIProtocolError
from pounce.asgi.websocket import Headers
from pounce.protocols import http11
from pounce.protocols.websocket import Handshake


class ConnectionSink(Protocol):
    """What an HTTP/1.1 WebSocket needs from its connection."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def finish(self) -> None:
        """Our FIN after what is written; the peer's is awaited (bounded)."""

    def hang_up(self) -> None:
        """Close after what is written, not waiting for the peer (bounded too)."""

    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def date_header(self) -> bytes: ...


class HTTP11WebSocket:
    """:class:`~pounce.asgi.websocket.WebSocketTransport` over an upgraded connection."""

    method = "GET"
    accept_status = 101

    def __init__(self, conn: ConnectionSink, handshake: Handshake) -> None:
        self.conn = conn
        self.handshake = handshake
        self.bytes_sent = 0
        self._chunked = False  # the denial's body is chunked

    def write(self, data: bytes) -> None:
        if data:
            self.bytes_sent += len(data)
            self.conn.write(data)

    async def drain(self) -> None:
        await self.conn.drain()

    def accepted(self) -> None:
        pass  # the transport is read at full speed all along

    def end(self) -> None:
        self.conn.finish()

    def hang_up(self) -> None:
        self.conn.hang_up()

    def abort(self) -> None:
        self.conn.abort()

    def pause_reading(self) -> None:
        self.conn.pause_reading()

    def resume_reading(self) -> None:
        self.conn.resume_reading()

    def send_accept(
        self, subprotocol: str | None, extensions: bytes | None, headers: Headers
    ) -> None:
        date = self.conn.date_header()
        self.write(self.handshake.accept(subprotocol, headers, extensions=extensions, date=date))

    async def send_response(
        self, status: int, headers: Headers, body: bytes, *, more_body: bool
    ) -> None:
        """The head (Content-Length, or chunked when the body comes in parts) and the
        first body; ``Connection: close``, since the upgrade did not happen."""
        out: Headers = []
        length: bytes | None = None
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = value.strip()
                if not length.isdigit():
                    raise ASGIProtocolError(f"invalid Content-Length {value!r}")
            elif lname not in (b"transfer-encoding", b"connection"):
                out.append((name, value))
        if length is not None:
            out.append((b"content-length", length))
        elif more_body:
            self._chunked = True
            out.append((b"transfer-encoding", b"chunked"))
        else:
            out.append((b"content-length", b"%d" % len(body)))
        names = {name.lower() for name, _ in out}
        if b"date" not in names:
            out.append((b"date", self.conn.date_header()))
        if b"server" not in names:
            out.append((b"server", b"pounce"))
        out.append((b"connection", b"close"))
        self.write(http11.serialize_head(status, out) + self._framed(body, more_body))
        if more_body:
            await self.conn.drain()

    async def send_body(self, body: bytes, *, more_body: bool) -> None:
        self.write(self._framed(body, more_body))
        if more_body:
            await self.conn.drain()

    def _framed(self, body: bytes, more_body: bool) -> bytes:
        if not self._chunked:
            return body
        out = http11.chunk(body) if body else b""
        return out if more_body else out + http11.LAST_CHUNK
