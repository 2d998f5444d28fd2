"""A strict, sans-I/O HTTP/1.1 request parser and response serializer.

Bytes go in with :meth:`RequestParser.feed`; events come out of
:meth:`RequestParser.next_event`.  No sockets, no clocks, no asyncio: the
connection that owns a parser decides about time.

The parser is strict where leniency lets a request be read two ways by two
servers (request smuggling, RFC 9112 §11.2): every such case raises
:class:`~pounce.errors.ProtocolError` with the status to answer, and the
connection is closed after that answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from pounce.errors import ProtocolError

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §5.6.2: token = 1*tchar
TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN = TOKEN
# A header line: field-name ":" OWS field-value OWS (RFC 9112 §5); no space before ":".
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*")
# Control characters other than HTAB (CR and LF are checked separately).
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# RFC 3986 host: IP-literal / IPv4address / reg-name, then an optional port.
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25[0-9A-Za-z._~-]+)?\]|[0-9A-Za-z\-._~!$&'()*+,;=%]*)(?::[0-9]*)?"
)
_COMMON_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"))
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-val = token / quoted-string (RFC 9110 §5.6.4); no CTL but HTAB, no bare CR.
# One narrowing, as h11 (and so the h11 engine): no whitespace between the size and the
# first ";" ("5 ;a" is read two ways by two parsers: a smuggling vector).
_QUOTED = rb'"(?>[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*+"'
# (Possessive and atomic: the grammar never needs to give back, and a line that fails
# must fail in linear time, not by backtracking through every split of its ";a;a;a".)
_EXT = _TCHAR + rb"++(?>[ \t]*+=[ \t]*+(?:" + _TCHAR + rb"++|" + _QUOTED + rb"))?+"
_CHUNK_EXT = rb"(?>;[ \t]*+" + _EXT + rb"(?>[ \t]*+;[ \t]*+" + _EXT + rb")*+)?+"
# chunk-size [ chunk-ext ], then (as h11 allows) trailing whitespace.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})" + _CHUNK_EXT + rb"[ \t]*")
#: Longest chunk-size line (size and extensions, without its CRLF).
MAX_CHUNK_LINE: Final = 4096
#: Most bytes of chunk extensions (and whitespace after a size) in one request body.
MAX_CHUNK_EXTENSIONS: Final = 65536


@dataclass(slots=True)
class Request:
    """A complete request head."""

    method: bytes
    target: bytes
    http_version: str
    headers: Headers
    keep_alive: bool
    expect_continue: bool
    content_length: int | None
    chunked: bool
    #: The request has an ``Upgrade`` header (WebSocket, h2c): worth asking the hooks.
    upgrade: bool = False


@dataclass(slots=True)
class Data:
    """A piece of the request body."""

    data: bytes


class EndOfMessage:
    """The request body is complete."""

    __slots__ = ()


class NeedData:
    """More bytes are needed before another event can be produced."""

    __slots__ = ()


class Paused:
    """The current request is complete; call :meth:`RequestParser.start_next_cycle`."""

    __slots__ = ()


END_OF_MESSAGE: Final = EndOfMessage()
NEED_DATA: Final = NeedData()
PAUSED: Final = Paused()

Event = Request | Data | EndOfMessage | NeedData | Paused


class _State(Enum):
    HEAD = "head"
    BODY_LENGTH = "body-length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_CRLF = "chunk-crlf"
    TRAILERS = "trailers"
    DONE = "done"


# The states as module globals: an Enum member lookup costs ~70 ns on 3.11, a global ~6.
_S_HEAD: Final = _State.HEAD
_S_BODY_LENGTH: Final = _State.BODY_LENGTH
_S_CHUNK_SIZE: Final = _State.CHUNK_SIZE
_S_CHUNK_DATA: Final = _State.CHUNK_DATA
_S_CHUNK_CRLF: Final = _State.CHUNK_CRLF
_S_TRAILERS: Final = _State.TRAILERS
_S_DONE: Final = _State.DONE


class RequestParser:
    """Parses one connection's stream of requests, one request at a time."""

    __slots__ = (
        "_body_seen",
        "_buf",
        "_chunk_left",
        "_direct",
        "_ext_seen",
        "_length_left",
        "_state",
        "max_body_size",
        "max_header_size",
    )

    def __init__(self, *, max_header_size: int = 65536, max_body_size: int = 0) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size  # 0: no limit
        self._buf = bytearray()
        # Body bytes received while nothing else was buffered, kept as they came: a
        # Content-Length body goes out as Data without a copy.  When set, the state is
        # BODY_LENGTH with bytes left to read and _buf is empty.
        self._direct = b""
        self._state = _S_HEAD
        self._length_left = 0
        self._chunk_left = 0
        self._body_seen = 0
        self._ext_seen = 0  # bytes of chunk extensions in this body

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet turned into events."""
        return len(self._buf) + len(self._direct)

    @property
    def waiting_for_head(self) -> bool:
        return self._state is _S_HEAD

    @property
    def in_body(self) -> bool:
        """A request head was parsed and its body is not complete yet."""
        return self._state not in (_S_HEAD, _S_DONE)

    def feed(self, data: bytes) -> None:
        if self._direct:
            self._buf += self._direct
            self._direct = b""
        elif not self._buf and self._state is _S_BODY_LENGTH and self._length_left:
            self._direct = data
            return
        self._buf += data

    def feed_head(self, data: bytes) -> Request | None:
        """Feed ``data``; return its request at once when it starts with a whole head.

        This is the keep-alive fast path: with nothing buffered and ``data`` holding a
        complete request head (maybe followed by body bytes or by more requests), the
        request is returned without going through :meth:`next_event`.  A request
        without a body is then complete: the parser is paused, as after
        :data:`END_OF_MESSAGE`; otherwise its body events follow from
        :meth:`next_event`.  In every other case this is :meth:`feed` and returns None.
        Raises :class:`ProtocolError` for a malformed head.
        """
        if self._buf or self._state is not _S_HEAD or data.startswith(b"\r\n"):
            self.feed(data)
            return None
        end = data.find(b"\r\n\r\n")
        if end < 0 or end + 4 > self.max_header_size:
            self._buf += data  # next_event says what is wrong, or waits for more
            return None
        request = parse_head(data[:end])
        body_start = end + 4
        if request.chunked or request.content_length:
            self._begin_body(request)
            if body_start < len(data):
                self.feed(data[body_start:])
        else:
            self._state = _S_DONE
            if body_start < len(data):
                self._buf += data[body_start:]  # pipelined requests
        return request

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not parsed yet (they belong to an upgraded protocol)."""
        data = self._direct + self._buf
        self._direct = b""
        self._buf.clear()
        return bytes(data)

    def start_next_cycle(self) -> bool:
        """After a response is complete: go on to the next request.

        Returns whether bytes of it (pipelined) are already buffered.
        """
        if self._state is not _S_DONE:
            raise RuntimeError("the current request is not complete")
        self._state = _S_HEAD
        return bool(self._buf)

    def next_event(self) -> Event:
        """Return the next event, :data:`NEED_DATA` or :data:`PAUSED`.

        Raises :class:`ProtocolError` for a malformed request.
        """
        state = self._state
        if state is _S_HEAD:
            return self._parse_head()
        if state is _S_BODY_LENGTH:
            return self._read_length_body()
        if state is _S_DONE:
            return PAUSED
        return self._read_chunked()

    # -- head -----------------------------------------------------------------

    def _parse_head(self) -> Event:
        buf = self._buf
        if not buf:
            return NEED_DATA
        # RFC 9112 §2.2: a server SHOULD ignore empty lines before the request-line.
        while buf.startswith(b"\r\n"):
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_header_size:
                raise ProtocolError("request header section too large", 431)
            if b"\n\n" in buf or b"\r\r" in buf:
                raise ProtocolError("bare CR or LF in the request head")
            return NEED_DATA
        if end + 4 > self.max_header_size:
            raise ProtocolError("request header section too large", 431)
        head = bytes(buf[:end])
        del buf[: end + 4]
        request = parse_head(head)
        self._begin_body(request)
        return request

    def _begin_body(self, request: Request) -> None:
        self._body_seen = 0
        if request.chunked:
            self._state = _S_CHUNK_SIZE
            self._ext_seen = 0
        elif request.content_length:
            if self.max_body_size and request.content_length > self.max_body_size:
                raise ProtocolError("request body larger than max_body_size", 413)
            self._length_left = request.content_length
            self._state = _S_BODY_LENGTH
        else:
            self._length_left = 0
            self._state = _S_BODY_LENGTH

    # -- bodies ---------------------------------------------------------------

    def _read_length_body(self) -> Event:
        left = self._length_left
        if left == 0:
            self._state = _S_DONE
            return END_OF_MESSAGE
        direct = self._direct
        if direct:
            self._direct = b""
            if len(direct) > left:
                self._buf += direct[left:]  # what follows the body: the next request
                direct = direct[:left]
            self._length_left = left - len(direct)
            return Data(direct)
        buf = self._buf
        if not buf:
            return NEED_DATA
        if len(buf) <= left:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:left])
            del buf[:left]
        self._length_left = left - len(data)
        return Data(data)

    def _read_chunked(self) -> Event:
        buf = self._buf
        state = self._state
        if state is _S_CHUNK_SIZE:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE + 1:  # (+1: the CR of a line's CRLF)
                    raise ProtocolError("chunk size line too long")
                return NEED_DATA
            if end > MAX_CHUNK_LINE:
                raise ProtocolError("chunk size line too long")
            line = bytes(buf[:end])
            del buf[: end + 2]
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise ProtocolError("invalid chunk size")
            size_end = match.end(1)
            if size_end != end:  # extensions: bounded for the whole body
                self._ext_seen += end - size_end
                if self._ext_seen > MAX_CHUNK_EXTENSIONS:
                    raise ProtocolError("chunk extensions too large")
            size = int(match.group(1), 16)
            if size == 0:
                self._state = _S_TRAILERS
                return self._read_chunked()
            self._body_seen += size
            if self.max_body_size and self._body_seen > self.max_body_size:
                raise ProtocolError("request body larger than max_body_size", 413)
            self._chunk_left = size
            self._state = _S_CHUNK_DATA
            return self._read_chunked()
        if state is _S_CHUNK_DATA:
            if not buf:
                return NEED_DATA
            left = self._chunk_left
            data = bytes(buf[:left])
            del buf[:left]
            self._chunk_left = left - len(data)
            if self._chunk_left == 0:
                self._state = _S_CHUNK_CRLF
            return Data(data)
        if state is _S_CHUNK_CRLF:
            if len(buf) < 2:
                if buf and buf[0] != 13:  # not CR: wrong already (as h11 says at once)
                    raise ProtocolError("chunk data not followed by CRLF")
                return NEED_DATA
            if buf[:2] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            del buf[:2]
            self._state = _S_CHUNK_SIZE
            return self._read_chunked()
        return self._read_trailers()

    def _read_trailers(self) -> Event:
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]
            self._state = _S_DONE
            return END_OF_MESSAGE
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_header_size:
                raise ProtocolError("trailer section too large", 431)
            return NEED_DATA
        block = bytes(buf[:end])
        del buf[: end + 4]
        check_trailers(block)
        self._state = _S_DONE
        return END_OF_MESSAGE


def check_chunk_line(line: bytes) -> tuple[int, int]:
    """The size in a chunk-size ``line`` (without its CRLF) and the length of its extensions.

    The rules of :class:`RequestParser`, for the h11 engine: raises
    :class:`ProtocolError` for a line longer than :data:`MAX_CHUNK_LINE` or not
    ``chunk-size [ chunk-ext ]`` (RFC 9112 §7.1.1).
    """
    if len(line) > MAX_CHUNK_LINE:
        raise ProtocolError("chunk size line too long")
    match = _CHUNK_SIZE.fullmatch(line)
    if match is None:
        raise ProtocolError("invalid chunk size")
    return int(match.group(1), 16), len(line) - match.end(1)


def check_trailers(block: bytes) -> None:
    """Refuse a trailer section (without its final blank line) :class:`RequestParser`
    would refuse: the rules of a header section (RFC 9112 §7.1.2), and no framing
    field (RFC 9110 §6.5.1: a peer that merged one would frame the message anew)."""
    for name, _ in _parse_fields(block.split(b"\r\n"), block):
        if name in (b"content-length", b"transfer-encoding"):
            raise ProtocolError("framing field in the trailer section")


def _check_block(block: bytes) -> None:
    if _CTL.search(block):
        raise ProtocolError("control character in request head")
    crlf = block.count(b"\r\n")
    if block.count(b"\r") != crlf or block.count(b"\n") != crlf:
        raise ProtocolError("bare CR or LF in request head")


def _parse_fields(lines: list[bytes], block: bytes | None) -> Headers:
    if block is not None:
        _check_block(block)
    headers: Headers = []
    append = headers.append
    match = _HEADER_LINE.fullmatch
    for line in lines:
        m = match(line)
        if m is None:
            if line[:1] in (b" ", b"\t"):
                raise ProtocolError("obsolete line folding is not accepted")
            raise ProtocolError("malformed header line")
        append((m.group(1).lower(), m.group(2)))
    return headers


# The whole head in one match: request-line (an ASCII target), then field lines with no control
# characters but HTAB, no bare CR or LF, no space before ":", no obs-fold.  A head
# that fails it goes through the step-by-step checks below, which say what is wrong.
_HEAD = re.compile(
    rb"(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/1\.([01])"
    rb"((?:\r\n" + _TCHAR + rb"+:[\t\x20-\x7e\x80-\xff]*)*)"
)
# Fields whose presence changes framing or the connection: they take _interpret's
# general path.  A head with none of them (and one valid Host) is read without it.
_SPECIAL_FIELDS = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade")
)
_GOOD_HOSTS: set[bytes] = set()  # Host values already checked (bounded)


def parse_head(head: bytes) -> Request:
    """Parse a request head (without its final blank line) into a :class:`Request`."""
    m = _HEAD.fullmatch(head)
    if m is None:
        return _parse_head_strictly(head)
    method, target, minor, block = m.groups()
    absolute = False
    if target[0] != 47:  # not origin-form ("/...")
        absolute = _check_target(method, target)
    headers: Headers = []
    append = headers.append
    hosts = 0
    host = b""
    special = False
    for line in block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        append((name, value))
        if name == b"host":
            hosts += 1
            host = value
        elif name in _SPECIAL_FIELDS:
            special = True
    if special or hosts != 1 or minor == b"0" or absolute:
        request = _interpret(method, target, _VERSIONS[minor], headers)
        return _absolute_form(request) if absolute else request
    if host not in _GOOD_HOSTS:
        if _HOST.fullmatch(host) is None:
            raise ProtocolError("malformed Host header")
        if len(_GOOD_HOSTS) < 1024:
            _GOOD_HOSTS.add(host)
    # HTTP/1.1 without a body or any framing or connection field: RFC 9112 §6.3 (7).
    return Request(method, target, "1.1", headers, True, False, None, False)


_VERSIONS = {b"1": "1.1", b"0": "1.0"}


def _parse_head_strictly(head: bytes) -> Request:
    """The slow path: parse step by step, raising the precise error."""
    _check_block(head)  # control characters, bare CR or LF: anywhere in the head
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise ProtocolError("malformed request line")
    method, target, version = parts
    if method not in _COMMON_METHODS and _TOKEN.fullmatch(method) is None:
        raise ProtocolError("invalid method")
    if version == b"HTTP/1.1":
        http_version = "1.1"
    elif version == b"HTTP/1.0":
        http_version = "1.0"
    elif re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version):
        raise ProtocolError("HTTP version not supported", 505)
    else:
        raise ProtocolError("malformed HTTP version")
    absolute = _check_target(method, target)
    headers = _parse_fields(lines[1:], None) if len(lines) > 1 else []
    request = _interpret(method, target, http_version, headers)
    return _absolute_form(request) if absolute else request


def _check_target(method: bytes, target: bytes) -> bool:
    """Refuse a malformed request-target; return whether it is in absolute-form."""
    # (control characters were refused for the whole head already; RFC 9112 §3.2: the
    # target is a URI, ASCII only: bytes above 0x7f are refused as h11 and peers do)
    if not target or b"\t" in target or not target.isascii():
        raise ProtocolError("invalid request target")
    first = target[:1]
    if first == b"/":
        return False
    if target == b"*" and method == b"OPTIONS":
        return False
    if method == b"CONNECT":
        return False
    if b"://" in target:
        return True
    raise ProtocolError("invalid request target")


# absolute-form: scheme "://" authority, then path-abempty [ "?" query ].
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://([^/?#]*)(.*)")


def _absolute_form(request: Request) -> Request:
    """RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host.

    The target becomes origin-form (``http://b/x?y`` -> ``/x?y``) and the Host field
    (added for HTTP/1.0 without one) says ``b``: the app sees one host, the one the
    request was routed by.  An empty authority or one with userinfo is refused
    (RFC 9110 §4.2.1, §4.2.4).
    """
    match = _ABSOLUTE.fullmatch(request.target)
    if match is None:
        raise ProtocolError("invalid request target")
    authority, rest = match.groups()
    if not authority or _HOST.fullmatch(authority) is None:
        raise ProtocolError("invalid request target")
    request.target = rest if rest[:1] == b"/" else b"/" + rest
    headers = request.headers
    for i, (name, _) in enumerate(headers):
        if name == b"host":
            headers[i] = (b"host", authority)
            break
    else:
        headers.append((b"host", authority))
    return request


# RFC 9110 §7.6.1 Connection = #token, §7.8 Upgrade = #( token [ "/" token ] ): lists
# with optional whitespace and empty elements.  Anything else (a non-ASCII byte, ...)
# is refused, so tokens are compared as ASCII bytes.
_PROTOCOL = re.compile(_TCHAR + rb"+(?:/" + _TCHAR + rb"+)?")
_GOOD_LISTS: set[bytes] = set()  # Connection and Upgrade values already checked (bounded)


def _check_list(value: bytes, element: re.Pattern[bytes], what: str) -> None:
    # Element by element: linear in the value (one regex for the whole list would
    # backtrack quadratically on ", , , ...\xff").
    for piece in value.split(b","):
        piece = piece.strip(b" \t")
        if piece and element.fullmatch(piece) is None:
            raise ProtocolError(f"malformed {what} header")
    if len(_GOOD_LISTS) < 1024:
        _GOOD_LISTS.add(value)


def _interpret(method: bytes, target: bytes, http_version: str, headers: Headers) -> Request:
    """Apply the framing and semantic rules of RFC 9112 §6 and RFC 9110 §7.2."""
    content_length: int | None = None
    transfer_codings: list[bytes] = []
    hosts = 0
    connection: list[bytes] = []
    expect_continue = False
    upgrade = False
    for name, value in headers:
        if name == b"content-length":
            for item in value.split(b","):
                item = item.strip(b" \t")
                if not item.isdigit() or len(item) > 18:
                    raise ProtocolError("invalid Content-Length")
                length = int(item)
                if content_length is not None and content_length != length:
                    raise ProtocolError("conflicting Content-Length headers")
                content_length = length
        elif name == b"transfer-encoding":
            transfer_codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif name == b"host":
            hosts += 1
            if _HOST.fullmatch(value) is None:
                raise ProtocolError("malformed Host header")
        elif name == b"connection":
            if value not in _GOOD_LISTS:
                _check_list(value, TOKEN, "Connection")
            connection.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
        elif name == b"upgrade":
            if value not in _GOOD_LISTS:
                _check_list(value, _PROTOCOL, "Upgrade")
            upgrade = True
    if hosts > 1:
        raise ProtocolError("more than one Host header")
    if content_length is not None and (
        sum(n == b"content-length" for n, _ in headers) > 1
        or any(n == b"content-length" and b"," in v for n, v in headers)
    ):
        # Identical duplicates (RFC 9110 §8.6): keep one, normalized, as h11 does.
        first = next(i for i, (n, _) in enumerate(headers) if n == b"content-length")
        headers[:] = [h for h in headers if h[0] != b"content-length"]
        headers.insert(first, (b"content-length", b"%d" % content_length))
    if hosts == 0 and http_version == "1.1":
        raise ProtocolError("missing Host header")
    chunked = False
    if transfer_codings:
        if content_length is not None:
            raise ProtocolError("both Content-Length and Transfer-Encoding")
        if http_version == "1.0":
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        if transfer_codings[-1] != b"chunked" or transfer_codings.count(b"chunked") != 1:
            raise ProtocolError("Transfer-Encoding must end with a single chunked")
        if len(transfer_codings) > 1:
            raise ProtocolError("unsupported transfer coding", 501)
        chunked = True
    if http_version == "1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    return Request(
        method=method,
        target=target,
        http_version=http_version,
        headers=headers,
        keep_alive=keep_alive,
        expect_continue=expect_continue and http_version == "1.1",
        content_length=content_length,
        chunked=chunked,
        upgrade=upgrade,
    )


# -- responses -------------------------------------------------------------------

STATUS_PHRASES: Final[dict[int, bytes]] = {}


def _phrases() -> None:
    from http import HTTPStatus

    for status in HTTPStatus:
        STATUS_PHRASES[status.value] = status.phrase.encode("ascii")


_phrases()
STATUS_LINES: Final[dict[int, bytes]] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in STATUS_PHRASES.items()
}


def status_line(status: int) -> bytes:
    """The pre-encoded status line for ``status``."""
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES.get(status, b""))
    return line


_GOOD_NAMES: set[bytes] = set()  # response header names already checked (bounded)


def check_response_headers(headers: Headers) -> str | None:
    """Return why ``headers`` can't be written, or None when they are fine."""
    for name, value in headers:
        if name not in _GOOD_NAMES:
            if _TOKEN.fullmatch(name) is None:
                return f"invalid response header name {name!r}"
            if len(_GOOD_NAMES) < 1024:
                _GOOD_NAMES.add(name)
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            return f"response header {name.decode('latin-1')!r} contains CR, LF or NUL"
    return None


def serialize_head(status: int, headers: Headers) -> bytes:
    """Status line and header section, ending with the blank line."""
    parts = [status_line(status)]
    parts.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
    parts.append(b"\r\n")
    return b"".join(parts)


def error_response(status: int, message: str = "", extra: bytes = b"") -> bytes:
    """A complete close-delimited error response with a short text body.

    ``extra``: header lines to add, each ending in CRLF (e.g. the request ID's).
    """
    body = (message or STATUS_PHRASES.get(status, b"Error").decode()).encode() + b"\n"
    head = serialize_head(
        status,
        [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ],
    )
    if extra:
        head = head[:-2] + extra + b"\r\n"
    return head + body


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one chunk (RFC 9112 §7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
