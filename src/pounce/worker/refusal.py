"""A connection over ``[limits] max_connections``: told so, then closed; never just dropped.

The worker keeps accepting (so the client is told rather than left in the backlog),
and a connection that finds the daemon-wide count at the limit gets :class:`Refusal`
in place of HTTP/1.1.  It is not counted.  It answers:

* HTTP/1.1: it reads the request head (at most :data:`HEAD_LIMIT` bytes, for at most
  ``http.header_timeout`` or :data:`READ_TIMEOUT`, whichever is shorter), then
  ``503 Service Unavailable`` with ``Retry-After: [limits] retry_after`` and
  ``Connection: close``;
* HTTP/2 (TLS ALPN chose ``h2``, or, with ``http2.h2c`` on, the first bytes are the
  prior-knowledge preface):
  the server's SETTINGS preface and a GOAWAY with last stream id 0 and ``NO_ERROR``
  (RFC 9113 §6.8: streams above the last stream id were not processed and may be
  retried on another connection, §8.7; the client did nothing wrong, so no error code;
  ``REFUSED_STREAM`` is a stream's code, for RST_STREAM).

Then it closes gracefully: FIN after the answer (TLS: close_notify at the close),
what the client still sends is read and dropped until it closes or
:data:`LINGER` seconds pass, so the client reads the answer rather than a reset.
Each refusal counts in ``pounce_requests_shed_total{reason="max_connections"}`` and
is logged at most once a second.
"""

from __future__ import annotations

import asyncio
import logging

from pounce.logs import ThrottledLog
from pounce.worker.context import ServerState

log = logging.getLogger("pounce.error")
throttled = ThrottledLog(log)

#: Bytes of a request head read before answering anyway.
HEAD_LIMIT = 8 * 1024
#: Longest wait for the request head (``http.header_timeout`` if shorter).
READ_TIMEOUT = 1.0
#: Longest wait, after the answer, for the client to close before the server does.
LINGER = 1.0

BODY = b"Service Unavailable: too many connections\n"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DEBUG = b"connection limit reached"
#: An empty SETTINGS frame (the server's preface, RFC 9113 §3.4), then GOAWAY
#: (type 0x7, stream 0): last stream id 0, NO_ERROR, debug data (RFC 9113 §6.8).
H2_GOAWAY = (
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    + (8 + len(_DEBUG)).to_bytes(3, "big")
    + b"\x07\x00\x00\x00\x00\x00"
    + b"\x00\x00\x00\x00"  # last stream id
    + b"\x00\x00\x00\x00"  # error code: NO_ERROR
    + _DEBUG
)


def response_503(retry_after: int) -> bytes:
    """The fixed HTTP/1.1 answer of a refused connection."""
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\n"
        b"retry-after: %d\r\n"
        b"connection: close\r\n\r\n" % (len(BODY), retry_after)
    ) + BODY


def refuse(state: ServerState, transport: asyncio.BaseTransport) -> None:
    """Hand ``transport`` (over the limit, not counted) to a :class:`Refusal`."""
    state.metrics.count_shed("max_connections")
    throttled.warning(
        "max_connections",
        "[limits] max_connections (%d) reached: new connections get 503 (HTTP/2: GOAWAY)",
        state.config.limits.max_connections,
    )
    refusal = Refusal(state)
    transport.set_protocol(refusal)
    refusal.connection_made(transport)


class Refusal(asyncio.Protocol):
    """Reads a little, answers 503 or GOAWAY, closes gracefully."""

    def __init__(self, state: ServerState) -> None:
        self.loop = state.loop
        self.retry_after = state.config.limits.retry_after
        # HTTP/2 with prior knowledge is on (http2.h2c, and h2 installed)
        self.h2c = state.hooks.on_first_bytes is not None
        self.read_timeout = min(state.config.http.header_timeout, READ_TIMEOUT)
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._answer(H2_GOAWAY)
        else:
            self.timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return  # lingering: dropped
        head = self.head = self.head + data
        if self.h2c and head[:3] == H2_PREFACE[:3] and H2_PREFACE.startswith(head[:16]):
            self._answer(H2_GOAWAY)
        elif b"\r\n\r\n" in head or len(head) >= HEAD_LIMIT:
            self._answer(response_503(self.retry_after))

    def eof_received(self) -> bool | None:
        if not self.answered:
            self._answer(response_503(self.retry_after))
        self._close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.transport = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.answered:
            self._close()  # the linger is over
        else:
            self._answer(response_503(self.retry_after))

    def _answer(self, data: bytes) -> None:
        self.answered = True
        self.head = b""
        self._cancel_timer()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.can_write_eof():
            transport.write_eof()  # FIN once written; reads go on until the client closes
        self.timer = self.loop.call_later(LINGER, self._timed_out)

    def _close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
