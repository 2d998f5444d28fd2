"""The reference HTTP/1.1 engine: h11 parses, Pounce's strictness checks run on top.

It has the same interface and events as :class:`~pounce.protocols.http11.RequestParser`
(``http.parser = "h11"``).  h11 alone accepts some requests Pounce must refuse (a
duplicate or malformed Host, an absurd chunk size, ...), so every request head is also
checked with :func:`~pounce.protocols.http11.parse_head` before h11's events are used,
every chunk-size line with :func:`~pounce.protocols.http11.check_chunk_line` and the
trailer section with :func:`~pounce.protocols.http11.check_trailers` before h11 reads
them.  Where the two differ in what they hand on, the app gets what the fast
parser gives: the absolute-form target made origin-form with its authority as Host
(RFC 9112 §3.2.2), ``Transfer-Encoding`` as sent (h11 lower-cases it).
"""

from __future__ import annotations

from typing import Any

import h11

from pounce.errors import ProtocolError
from pounce.protocols import http11

# Fields whose value the h11 engine takes from the checked head (see the module doc).
_CHECKED_FIELDS = (b"host", b"transfer-encoding")


class H11RequestParser:
    """A drop-in for :class:`~pounce.protocols.http11.RequestParser` built on h11."""

    def __init__(self, *, max_header_size: int = 65536, max_body_size: int = 0) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._conn = self._new_connection()
        self._head = bytearray()
        self._in_head = True
        self._done = False
        self._request: http11.Request | None = None
        self._body_seen = 0
        self._ext_seen = 0

    def _new_connection(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_size)

    @property
    def buffered(self) -> int:
        return len(self._head) if self._in_head else len(self._conn.trailing_data[0])

    @property
    def waiting_for_head(self) -> bool:
        return self._in_head

    @property
    def in_body(self) -> bool:
        return not self._in_head and not self._done

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._in_head:
            self._head += data  # h11 gets the head once our checks passed
        else:
            self._conn.receive_data(data)

    def feed_head(self, data: bytes) -> http11.Request | None:
        """:meth:`feed` (h11 has no fast path to offer)."""
        self.feed(data)
        return None

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not parsed yet (they belong to an upgraded protocol)."""
        if self._in_head:
            data = bytes(self._head)
            self._head.clear()
            return data
        data = bytes(self._conn.trailing_data[0])
        self._conn = self._new_connection()
        self._done = True
        return data

    def start_next_cycle(self) -> bool:
        if not self._done:
            raise RuntimeError("the current request is not complete")
        leftover, _closed = self._conn.trailing_data
        self._conn = self._new_connection()
        self._head = bytearray(leftover)
        self._in_head = True
        self._done = False
        self._request = None
        return bool(leftover)

    def next_event(self) -> http11.Event:
        if self._done:
            return http11.PAUSED
        if self._in_head and self._request is None:
            if self._check_head() is None:
                return http11.NEED_DATA
            # RFC 9112 §2.2: empty lines before the request-line are ignored (h11 refuses them).
            self._conn.receive_data(_after_empty_lines(self._head))
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            # h11's message quotes the peer's bytes (a bytearray repr): the log gets it,
            # the peer a fixed text.
            status = exc.error_status_hint
            message = (
                "malformed request"
                if status == 400
                else http11.STATUS_PHRASES.get(status, b"Error").decode()
            )
            raise ProtocolError(message, status, hint=f"h11: {exc}") from None
        return self._translate(event)

    def _check_head(self) -> http11.Request | None:
        """Our strictness checks on the raw head, once it is complete."""
        head = _after_empty_lines(self._head)
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > self.max_header_size:
                raise ProtocolError("request header section too large", 431)
            if b"\n\n" in head or b"\r\r" in head:
                raise ProtocolError("bare CR or LF in the request head")
            return None
        if end + 4 > self.max_header_size:
            raise ProtocolError("request header section too large", 431)
        request = http11.parse_head(bytes(head[:end]))
        if (
            self.max_body_size
            and request.content_length is not None
            and request.content_length > self.max_body_size
        ):
            raise ProtocolError("request body larger than max_body_size", 413)
        self._request = request
        return request

    def _translate(self, event: Any) -> http11.Event:
        if event is h11.NEED_DATA:
            return http11.NEED_DATA
        if isinstance(event, h11.Request):
            checked = self._request
            assert checked is not None
            self._in_head = False
            self._head.clear()
            self._body_seen = 0
            if checked.chunked:
                self._check_chunk_lines()
            return http11.Request(
                method=bytes(event.method),
                target=checked.target,  # origin-form, as h11's is unless absolute-form
                http_version=event.http_version.decode("ascii"),
                headers=_with_checked_values(event.headers, checked.headers),
                keep_alive=checked.keep_alive,
                expect_continue=checked.expect_continue,
                content_length=checked.content_length,
                chunked=checked.chunked,
                upgrade=checked.upgrade,
            )
        if isinstance(event, h11.Data):
            self._body_seen += len(event.data)
            if self.max_body_size and self._body_seen > self.max_body_size:
                raise ProtocolError("request body larger than max_body_size", 413)
            return http11.Data(bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            self._done = True
            return http11.END_OF_MESSAGE
        if isinstance(event, h11.ConnectionClosed):
            return http11.NEED_DATA
        raise ProtocolError(f"unexpected h11 event {type(event).__name__}")

    def _check_chunk_lines(self) -> None:
        """Have every chunk-size line checked before h11's chunked reader reads it."""
        reader = self._conn._reader
        if type(reader).__name__ == "ChunkedReader":
            self._ext_seen = 0
            self._conn._reader = _CheckedChunks(reader, self)

    def chunk_line(self, line: bytes) -> tuple[int, int]:
        """Check a chunk-size line (without its CRLF) by the fast parser's rules: its
        size and the length of its extensions.

        Pure: the same line may be checked again while its trailers arrive."""
        size, extensions = http11.check_chunk_line(line)
        if extensions and self._ext_seen + extensions > http11.MAX_CHUNK_EXTENSIONS:
            raise ProtocolError("chunk extensions too large")
        if self.max_body_size and self._body_seen + size > self.max_body_size:
            raise ProtocolError("request body larger than max_body_size", 413)
        return size, extensions

    def trailers_ready(self, rest: bytes) -> bool:
        """Whether the trailer section at the start of ``rest`` is complete (and good).

        h11 also ends it at a bare LF and folds lines: checked here first, as the fast
        parser reads it."""
        if rest[:2] == b"\r\n":
            return True
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            if len(rest) > self.max_header_size:
                raise ProtocolError("trailer section too large", 431)
            return False
        http11.check_trailers(rest[:end])
        return True


def _with_checked_values(h11_headers: Any, checked: http11.Headers) -> http11.Headers:
    """h11's headers, with the Host and Transfer-Encoding values of the checked head."""
    values = [(n, v) for n, v in checked if n in _CHECKED_FIELDS]
    headers: http11.Headers = []
    for name, value in h11_headers:
        if name in _CHECKED_FIELDS and values:
            headers.append(values.pop(0))
        else:
            headers.append((bytes(name), bytes(value)))
    headers += values  # a Host added for an absolute-form HTTP/1.0 request
    return headers


class _CheckedChunks:
    """h11's chunked reader, with each chunk-size line checked before it reads it."""

    def __init__(self, reader: Any, parser: H11RequestParser) -> None:
        self._reader = reader
        self._parser = parser

    def __call__(self, buf: Any) -> Any:
        reader = self._reader
        parser = self._parser
        if reader._reading_trailer:
            if not parser.trailers_ready(bytes(buf._data)):
                return None  # (h11 would end them at a bare LF)
        elif reader._bytes_in_chunk == 0:
            # A chunk-size line comes next (after the CRLF that ends the last chunk).
            start = len(reader._bytes_to_discard)
            data = bytes(buf._data[: start + http11.MAX_CHUNK_LINE + 2])
            end = data.find(b"\r\n", start)
            if end < 0:
                if len(data) - start > http11.MAX_CHUNK_LINE + 1:
                    raise ProtocolError("chunk size line too long")
            else:
                size, extensions = parser.chunk_line(data[start:end])
                # After the last chunk h11 reads the trailers in the same call.
                if size == 0 and not parser.trailers_ready(bytes(buf._data[end + 2 :])):
                    return None
                parser._ext_seen += extensions
        return reader(buf)

    def read_eof(self) -> Any:
        return self._reader.read_eof()


def _after_empty_lines(head: bytearray) -> bytes:
    """``head`` without the empty lines (CRLF) before its request-line, as the fast
    parser skips them: whole CRLFs only, so a bare CR there is still refused."""
    start = 0
    while head.startswith(b"\r\n", start):
        start += 2
    return bytes(head[start:])
