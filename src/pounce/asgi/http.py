"""One HTTP/1.1 request/response cycle as ASGI: the response side, framed for HTTP/1.1.

The request side (``receive()``, running the app, recording) is
:class:`~pounce.asgi.exchange.Exchange`, shared with HTTP/2.  The cycle knows ASGI
messages and HTTP/1.1 framing, never sockets: it talks to its connection through
the small :class:`Sink` interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from time import perf_counter
from typing import Any, Protocol

from pounce.asgi.exchange import ASGIProtocolError as ASGIProtocolError
from pounce.asgi.exchange import Exchange, response_status
from pounce.asgi.requestid import log_suffix
from pounce.metrics import Collector
from pounce.protocols import http11
from pounce.types import Message, Scope

error_log = logging.getLogger("pounce.error")

_NO_BODY_STATUS = frozenset({204, 304})
# The head is written together with a body shorter than this (one write, one copy).
COALESCE_LIMIT = 256 * 1024
# Pause reading the socket when this much request body waits for the app.
BODY_HIGH_WATER = 256 * 1024
CRLF = b"\r\n"


class DefaultLines(Protocol):
    def __call__(self, lines: list[bytes] | None = None, id_line: bytes = b"", /) -> bytes: ...


class Sink(Protocol):
    """What a cycle needs from its connection."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def response_done(self, keep_alive: bool) -> None: ...
    def abort(self) -> None: ...
    def resume_reading(self) -> None: ...
    @property
    def request_body_pending(self) -> bool: ...
    def date_header(self) -> bytes: ...

    #: The request ID's header field and ": " (``b"x-request-id: "``), b"" without IDs.
    id_field: bytes

    #: The Date and Server header lines the app did not send (given its lines, and
    #: then the request ID's line too unless the app sent it), or both (given None).
    default_lines: DefaultLines


class HTTPCycle(Exchange):
    """One HTTP/1.1 request: the :class:`~pounce.asgi.exchange.Exchange` plus HTTP/1.1 framing.

    This is the per-request hot path: the response head's header lines are checked
    and rendered once, when ``http.response.start`` arrives, and written together
    with the first body bytes.
    """

    __slots__ = (
        "_chunked",
        "_continue_sent",
        "_expected_length",
        "_lines",
        "_no_body",
        "_sent",
        "_status",
        "conn",
        "expect_continue",
        "keep_alive",
        "request_id",
    )

    def __init__(
        self,
        conn: Sink,
        scope: Scope,
        keep_alive: bool,
        expect_continue: bool,
        access_log: bool,
        metrics: Collector | None = None,
        tasks: set[asyncio.Task[None]] | None = None,
        request_id: bytes = b"",
    ) -> None:
        # Exchange.__init__, said inline: this runs once per request.
        self.scope = scope
        self.access_log = access_log
        self.metrics = metrics
        self.tasks = tasks
        self.task: asyncio.Task[None] | None = None
        self.start_time = perf_counter()
        self._body = b""
        self.body_complete = False
        self._sent_last_body = False
        self._waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.response_started = False
        self.head_written = False
        self.response_complete = False
        self.recorded = False
        self.bytes_sent = 0
        self.conn = conn
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        #: The request's ID (``[request_id]``) as ASCII bytes, b"" without one.
        self.request_id = request_id
        self._continue_sent = False
        self._status = 0
        self._lines = b""
        self._no_body = False
        self._chunked = False
        self._expected_length: int | None = None
        self._sent = 0

    # -- receive() hooks ---------------------------------------------------------------

    def _before_wait(self) -> None:
        if self.expect_continue and not self._continue_sent and not self.response_started:
            # RFC 9110 §10.1.1: the app wants the body, so ask the client for it.
            self._continue_sent = True
            self.conn.write(http11.CONTINUE)

    def _body_taken(self, nbytes: int) -> None:
        self.conn.resume_reading()

    # -- send() ------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.response_started:
                raise ASGIProtocolError("http.response.body sent before http.response.start")
            if self.response_complete:
                if self.disconnected:
                    return
                raise ASGIProtocolError("http.response.body sent after the response completed")
            if self.disconnected:
                return
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = bytes(body)
            if message.get("more_body", False):
                self._body_message(body, True)
                await self.conn.drain()
            else:
                self._body_message(body, False)
        elif kind == "http.response.start":
            if self.response_started:
                raise ASGIProtocolError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 100 <= status <= 999:
                status = response_status(message)
            headers = message.get("headers", ())
            if type(headers) is not list and type(headers) is not tuple:
                headers = list(headers)  # read it once: a retry below reads it again
            try:
                self._render(headers)
            except (TypeError, ValueError):
                # An odd shape (not 2-tuples of bytes): normalize it, saying what is wrong.
                self._render(_as_header_list(headers))
            self.response_started = True
            self._status = status
        else:
            raise ASGIProtocolError(f"unexpected ASGI message {kind!r} for an HTTP request")

    def _render(self, headers: Iterable[Any]) -> None:
        """Check the app's header lines and render them, framing fields aside."""
        lines: list[bytes] = []
        add = lines.append
        names = _CHECKED_NAMES
        defaults = True  # neither Date nor Server from the app
        for name, value in headers:
            lname = names.get(name)
            if lname is None:
                lname = _check_name(name)
            if lname in _RESPONSE_SPECIAL:
                if lname == b"content-length":
                    if not value.strip().isdigit():
                        raise ASGIProtocolError(f"invalid Content-Length {value!r}")
                    self._expected_length = int(value)
                    continue
                if lname == b"connection" or lname == b"transfer-encoding":
                    if lname == b"connection" and b"close" in value.lower():
                        self.keep_alive = False
                    continue  # framing and connection fields are ours to write
                defaults = False  # Date, Server or the request ID's field
            add(b"".join((name, b": ", value, b"\r\n")))
        block = b"".join(lines)
        n = len(lines)
        if block.count(b"\r") != n or block.count(b"\n") != n or b"\x00" in block:
            for line in lines:
                if line.count(b"\r") != 1 or line.count(b"\n") != 1 or b"\x00" in line:
                    name = line.partition(b":")[0].decode("latin-1")
                    raise ASGIProtocolError(f"response header {name!r} contains CR, LF or NUL")
        rid = self.request_id
        if not defaults:
            self._lines = block + self.conn.default_lines(lines, self._id_line())
        elif rid:  # (one join: the ID's line is never made on its own)
            self._lines = b"".join(
                (block, self.conn.default_lines(), self.conn.id_field, rid, CRLF)
            )
        else:
            self._lines = block + self.conn.default_lines()

    def _id_line(self) -> bytes:
        """The request ID's header line, b"" without an ID."""
        rid = self.request_id
        return self.conn.id_field + rid + CRLF if rid else b""

    def _body_message(self, body: bytes, more_body: bool) -> None:
        out = b"" if self.head_written else self._head(body, more_body)
        if out and len(body) >= COALESCE_LIMIT:
            # A large body goes out on its own: copying it behind the head costs more
            # than a second write (a 1 MiB download: +40% req/s, p99 370 -> 35 ms).
            self.conn.write(out)
            self.bytes_sent += len(out)
            out = b""
        if body and not self._no_body:
            sent = self._sent = self._sent + len(body)
            if self._expected_length is not None and sent > self._expected_length:
                if out:  # the head goes out: the client sees the status, then the close
                    self.conn.write(out)
                    self.bytes_sent += len(out)
                self._fail_framing("the app sent more bytes than its Content-Length")
                return
            if self._chunked:
                out += http11.chunk(body)
            else:
                out += body
        if more_body:
            if out:
                self.conn.write(out)
                self.bytes_sent += len(out)
            return
        if self._chunked:
            out += http11.LAST_CHUNK
        self.response_complete = True
        if out:
            self.conn.write(out)
            self.bytes_sent += len(out)
        if self._waiter is not None:
            self._wake()
        if self._expected_length is not None and self._sent < self._expected_length:
            self._fail_framing("the app sent fewer bytes than its Content-Length")
            return
        self._record(self._status)
        self.conn.response_done(self.keep_alive)

    def _head(self, body: bytes, more_body: bool) -> bytes:
        """Decide the framing and return the head bytes (RFC 9112 §6)."""
        status = self._status
        length = self._expected_length
        scope = self.scope
        if status == 200 and scope["method"] != "HEAD":
            # The common case, said once: a body is allowed and its framing is ours.
            if length is not None:
                framing = b"content-length: %d\r\n" % length
            elif not more_body:
                framing = b"content-length: %d\r\n" % len(body)
                self._expected_length = len(body)
            else:
                framing = self._open_ended()
        else:
            framing = self._framing(status, length, body, more_body)
        if not self.body_complete and self.conn.request_body_pending:
            # The app answered before reading the whole request body: rather than read
            # and discard an unknown amount, close after this response.
            self.keep_alive = False
        self.head_written = True
        if not self.keep_alive:
            end = b"connection: close\r\n\r\n"
        elif scope["http_version"] == "1.0":
            end = b"connection: keep-alive\r\n\r\n"
        else:
            end = b"\r\n"
        line = http11.STATUS_LINES.get(status) or http11.status_line(status)
        return line + self._lines + framing + end

    def _framing(self, status: int, length: int | None, body: bytes, more_body: bool) -> bytes:
        """The framing field of any status but 200, and of a HEAD response."""
        is_head = self.scope["method"] == "HEAD"
        self._no_body = is_head or status in _NO_BODY_STATUS
        if status < 200 or status == 204:
            # No Content-Length in a 1xx or 204 response (RFC 9110 §8.6), and no body.
            self._expected_length = None
            return b""
        if length is not None:
            if is_head or status == 304:
                self._expected_length = None  # the length of what a GET would send
            return b"content-length: %d\r\n" % length
        if status == 304 or is_head:
            return b""
        if not more_body:
            self._expected_length = len(body)
            return b"content-length: %d\r\n" % len(body)
        return self._open_ended()

    def _open_ended(self) -> bytes:
        """A body of unknown length: chunked on HTTP/1.1, else close-delimited."""
        if self.scope["http_version"] == "1.1":
            self._chunked = True
            return b"transfer-encoding: chunked\r\n"
        self.keep_alive = False
        return b""

    def _fail_framing(self, why: str) -> None:
        self._record(self._status)
        rid, extra = log_suffix(self.scope)
        error_log.error(
            "%s %s: %s; closing the connection%s",
            self.scope["method"],
            self.scope["path"],
            why,
            rid,
            extra=extra,
        )
        self.response_complete = True
        self.keep_alive = False
        # The connection is closed: later messages of the app are dropped quietly
        # (logged once, here), and receive() says http.disconnect.
        self.disconnected = True
        self._wake()
        self.conn.abort()

    def request_timed_out(self) -> None:
        """The request body stalled (``http.request_timeout``): answer 408, or reset.

        The app gets ``http.disconnect``; an app already responding has its
        connection reset, as the client will not read the rest of the exchange.
        """
        self.keep_alive = False
        self.disconnected = True
        self._wake()
        if self.response_complete:
            return
        self.response_complete = True
        if self.head_written:
            self._record(self._status)
            self.conn.abort()
            return
        response = http11.error_response(408, "Request Timeout", self._id_line())
        self.conn.write(response)
        self.bytes_sent += len(response)
        self._record(408)
        self.conn.response_done(False)

    # -- failures ------------------------------------------------------------------

    async def _failed(self) -> None:
        self._fail()

    def _cancelled(self) -> None:
        self._fail()

    def _fail(self) -> None:
        """A 500 if no head was written yet, else close the connection mid-response."""
        self.response_complete = True
        self.keep_alive = False
        self._wake()
        if self.disconnected:
            return
        if self.head_written:
            self._record(self._status)
            self.conn.abort()
            return
        response = http11.error_response(500, "Internal Server Error", self._id_line())
        self.conn.write(response)
        self.bytes_sent += len(response)
        self._record(500)
        self.conn.response_done(False)


# Response fields the cycle interprets rather than copies (RFC 9112 §6, RFC 9110 §6.6),
# and the request-ID fields (note_default_field): the app's own one replaces ours.
_RESPONSE_SPECIAL = {b"content-length", b"transfer-encoding", b"connection", b"date", b"server"}


def note_default_field(lname: bytes) -> None:
    """Have an app's ``lname`` header (lower-case) checked against the default lines.

    A worker's request-ID field (``[request_id] header``): an app that sends it
    takes the slower path of :meth:`HTTPCycle._render` (``default_lines(lines, ...)``),
    which leaves out our line.  Names only accumulate (a worker thread of another
    generation may use another one); an extra name only costs that slower path.
    """
    _RESPONSE_SPECIAL.add(lname)


# Response header names already checked, by their spelling: the lower-case form.
_CHECKED_NAMES: dict[bytes, bytes] = {}


def _check_name(name: bytes) -> bytes:
    """Check one response header name (a token, RFC 9110 §5.1); return it lower-cased."""
    if type(name) is not bytes:
        raise TypeError("not bytes")  # the caller normalizes and retries
    if http11.TOKEN.fullmatch(name) is None:
        raise ASGIProtocolError(f"invalid response header name {name!r}")
    lname = name.lower()
    if len(_CHECKED_NAMES) < 1024:
        _CHECKED_NAMES[name] = lname
    return lname


def _as_header_list(raw: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for item in raw:
        if type(item) is tuple and len(item) == 2:  # the common case, checked cheaply
            name, value = item
            if type(name) is bytes and type(value) is bytes:
                headers.append(item)
                continue
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ASGIProtocolError(f"invalid header {item!r}") from None
        if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
            raise ASGIProtocolError(f"header names and values must be bytes, got {item!r}")
        headers.append((bytes(name), bytes(value)))
    return headers
