"""A blocking control client: plain sockets, no event loop, so ``pounce ctl`` starts fast.

One client holds one connection, opened on the first call and reused by the next
ones; use it as a context manager or call :meth:`ControlClient.close`.

Before sending anything, the client checks who answers: the process listening on
the socket must run as the client's own uid or as root (``SO_PEERCRED``), so that
another local user who got to the socket path first cannot pose as the daemon.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from types import TracebackType
from typing import Any

from pounce.control.protocol import (
    FrameDecoder,
    JSONObject,
    Reply,
    decode_reply,
    encode_request,
)
from pounce.errors import ControlCommandFailed, ControlError, DaemonNotRunning

DEFAULT_TIMEOUT = 10.0
_CHUNK = 65536
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket, or None
    where the platform has no ``SO_PEERCRED`` (the socket's 0600 mode still guards it)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


class ControlClient:
    """Talks to the daemon's control socket at ``path``.

    ``timeout`` bounds connecting and the wait for each reply, in seconds; None
    waits as long as the daemon takes (a ``reload`` replies only when it is done).
    """

    def __init__(self, path: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, if one is open."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._decoder = FrameDecoder()

    def call(self, cmd: str, **args: Any) -> JSONObject:
        """Run ``cmd`` with ``args`` and return its result.

        Raises :class:`DaemonNotRunning` when no daemon listens on the socket,
        :class:`ControlCommandFailed` when the daemon answers with an error, and
        :class:`ControlError` for anything else (timeout, broken reply).
        """
        frame = encode_request(cmd, args)
        sock = self._connect()
        try:
            try:
                sock.sendall(frame)
            except OSError as exc:
                # The daemon may have answered and hung up unread ("permission denied").
                reply = self._leftover_reply()
                if reply is None:
                    raise ControlError(f"control socket {self.path}: cannot send: {exc}") from exc
            else:
                reply = decode_reply(self._receive())
        except ControlError:
            self.close()
            raise
        if not reply.ok:
            raise ControlCommandFailed(reply.error, reply.details)
        return reply.result

    def send(self, cmd: str, **args: Any) -> None:
        """Send a request without waiting for its reply (``reload --no-wait``).

        The daemon still runs the command to its end; only its reply goes unread.
        Close the client afterwards: the unread reply would answer the next call.
        """
        frame = encode_request(cmd, args)
        sock = self._connect()
        try:
            sock.sendall(frame)
        except OSError as exc:
            self.close()
            raise ControlError(f"control socket {self.path}: cannot send: {exc}") from exc

    def _leftover_reply(self) -> Reply | None:
        try:
            return decode_reply(self._receive())
        except ControlError:
            return None

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise _connect_error(self.path, exc) from exc
        try:
            self._check_server(sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock

    def _check_server(self, sock: socket.socket) -> None:
        """Refuse a server that runs as neither our uid nor root."""
        try:
            creds = peer_credentials(sock)
        except OSError as exc:
            raise ControlError(
                f"control socket {self.path}: cannot tell who serves it: {exc}"
            ) from exc
        if creds is None:
            return
        pid, uid, _ = creds
        if uid not in (os.geteuid(), 0):
            raise ControlError(
                f"control socket {self.path} is served by pid {pid} of uid {uid}, not by "
                f"this user (uid {os.geteuid()}) or root: refusing to talk to it",
                hint="another user may have taken the socket path; check its directory",
            )

    def _receive(self) -> bytes:
        assert self._sock is not None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while (payload := self._decoder.next_frame()) is None:
            if deadline is not None:
                self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self._sock.recv(_CHUNK)
            except TimeoutError as exc:
                raise ControlError(
                    f"no reply from the daemon within {self.timeout:g}s", hint="see --timeout"
                ) from exc
            except OSError as exc:
                raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from exc
            if not data:
                raise ControlError("the daemon closed the connection without a reply")
            self._decoder.feed(data)
        return payload


def _connect_error(path: str, exc: OSError) -> ControlError:
    """The error to raise for a failed connect: the daemon is not running, or worse."""
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        why = "no socket there" if isinstance(exc, FileNotFoundError) else "connection refused"
        return DaemonNotRunning(
            f"no pounce daemon at {path}: {why}",
            hint="is it running? pass --socket or -c to point at another one",
        )
    if isinstance(exc, PermissionError):
        return ControlError(
            f"permission denied on control socket {path}",
            hint="run as the daemon's user or as root",
        )
    if isinstance(exc, TimeoutError):
        return ControlError(f"control socket {path}: connect timed out")
    return ControlError(f"control socket {path}: {exc.strerror or exc}")
