"""Raw-socket HTTP/1.1 client helpers shared by test_http11, test_malformed and test_limits.

Not an ASGI app: it lives here because ``apps`` is the importable package next to the
tests.  ``Wire`` wraps a connected socket with a read buffer so that several responses
(pipelining) can be read one by one, and so that "the server closed the connection" can
be asserted with a bounded wait.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 10.0


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""
    chunked: bool = False
    close_delimited: bool = False

    def header(self, name: str) -> str | None:
        """Value of the header ``name`` (several lines joined with ", "), or None."""
        values = self.header_all(name)
        return ", ".join(values) if values else None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    def connection_tokens(self) -> set[str]:
        value = self.header("connection") or ""
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    @property
    def status_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}".rstrip()


class Wire:
    """A raw client connection with its own buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    @classmethod
    def open(cls, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> Wire:
        return cls(socket.create_connection((host, port), timeout=timeout))

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, but tolerate the server having closed already (returns False then)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    # -- low-level reading -------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; False on EOF/reset.  Raises TimeoutError."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            raise
        except OSError as exc:  # pragma: no cover - platform specific resets
            if isinstance(exc, socket.timeout):
                raise TimeoutError from exc
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _fail(self, what: str) -> AssertionError:
        return AssertionError(f"{what}; bytes received so far: {self.buf[:2000]!r}")

    def read_until(self, sep: bytes, deadline: float) -> bytes:
        while sep not in self.buf:
            try:
                if not self._fill(deadline):
                    raise self._fail(f"connection closed before {sep!r}")
            except TimeoutError:
                raise self._fail(f"timed out waiting for {sep!r}") from None
        data, _, self.buf = self.buf.partition(sep)
        return data + sep

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            try:
                if not self._fill(deadline):
                    raise self._fail(f"connection closed before {n} body bytes")
            except TimeoutError:
                raise self._fail(f"timed out waiting for {n} body bytes") from None
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_eof(self, deadline: float) -> bytes:
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            raise self._fail(
                "timed out waiting for the server to close (close-delimited body)"
            ) from None
        data, self.buf = self.buf, b""
        return data

    # -- HTTP ------------------------------------------------------------------------

    def read_head(self, timeout: float = DEFAULT_TIMEOUT) -> Response:
        """Read a status line and header section (no body)."""
        deadline = time.monotonic() + timeout
        head = self.read_until(b"\r\n\r\n", deadline)
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise AssertionError(f"malformed status line {status_line!r} in {head!r}")
        response = Response(
            version=parts[0], status=int(parts[1]), reason=parts[2] if len(parts) > 2 else ""
        )
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise AssertionError(f"malformed response header line {line!r} in {head!r}")
            response.headers.append(
                (name.decode("latin-1").strip().lower(), value.decode("latin-1").strip())
            )
        response.raw = head
        return response

    def read_response(
        self, *, head: bool = False, timeout: float = DEFAULT_TIMEOUT, skip_interim: bool = False
    ) -> Response:
        """Read one full response: status line, headers and the body however delimited.

        ``head=True`` for the answer to a HEAD request (no body whatever the headers).
        1xx responses are returned as such unless ``skip_interim``.
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self.read_head(max(deadline - time.monotonic(), 0.001))
            if skip_interim and 100 <= response.status < 200 and response.status != 101:
                continue
            break
        raw = response.raw
        if head or 100 <= response.status < 200 or response.status in (204, 304):
            return response
        te = response.header("transfer-encoding")
        cl = response.header_all("content-length")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] != "chunked":
                raise AssertionError(f"response transfer-encoding not ending in chunked: {raw!r}")
            response.chunked = True
            body = b""
            while True:
                size_line = self.read_until(b"\r\n", deadline)
                raw += size_line
                size_text = size_line[:-2].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise AssertionError(
                        f"bad chunk size line {size_line!r} after {raw!r}"
                    ) from None
                if size == 0:
                    # trailer section up to the empty line
                    while True:
                        line = self.read_until(b"\r\n", deadline)
                        raw += line
                        if line == b"\r\n":
                            break
                    break
                data = self.read_exact(size + 2, deadline)
                raw += data
                if data[-2:] != b"\r\n":
                    raise AssertionError(f"chunk data not followed by CRLF: {raw!r}")
                body += data[:-2]
            response.body = body
        elif cl:
            if len(set(cl)) != 1:
                raise AssertionError(f"response with differing content-length: {raw!r}")
            body = self.read_exact(int(cl[0]), deadline)
            raw += body
            response.body = body
        else:
            response.close_delimited = True
            body = self.read_to_eof(deadline)
            raw += body
            response.body = body
        response.raw = raw
        return response

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """True once the server closed (EOF or reset); raises if unexpected bytes arrive.

        False if the connection is still open after ``timeout`` seconds.
        """
        if self.buf:
            raise AssertionError(f"unexpected bytes after the response: {self.buf[:2000]!r}")
        deadline = time.monotonic() + timeout
        try:
            if self._fill(deadline):
                raise AssertionError(
                    f"expected the connection to be closed, got bytes: {self.buf[:2000]!r}"
                )
        except TimeoutError:
            return False
        return True

    def pending(self) -> bytes:
        """Bytes already delivered by the kernel, without waiting at all."""
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return self.buf
        except ConnectionResetError:
            self.eof = True
            return self.buf
        finally:
            self.sock.settimeout(timeout)
        if not chunk:
            self.eof = True
        self.buf += chunk
        return self.buf


def request(
    method: str = "GET",
    target: str = "/echo",
    *,
    host: str | None = "x",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    content_length: bool = True,
) -> bytes:
    """Build a well-formed request (content-length added when there is a body)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body and content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailers: bytes = b"") -> bytes:
    """Encode ``parts`` as a chunked body (the final zero chunk included)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n" + trailers + b"\r\n"


def assert_serving(server: object, timeout: float = DEFAULT_TIMEOUT) -> None:
    """A fresh, well-formed request on a new connection gets a 200 (server still serving)."""
    proc = getattr(server, "proc", None)
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"server exited {proc.returncode}:\n{getattr(server, 'output', '')}")
    with Wire.open(server.host, server.port, timeout) as wire:  # type: ignore[attr-defined]
        wire.send(request("GET", "/fixed"))
        response = wire.read_response(timeout=timeout)
    assert response.status == 200, response.raw
    assert response.body == b"hello world", response.raw
