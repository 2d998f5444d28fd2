"""The control socket server: a Unix socket the supervisor serves ``pounce ctl`` on.

Security rests on three locks: the socket's directory must belong to the daemon's
uid (or root) and not be writable by others (it is created 0700 when missing; a
configured one that others may write to is only warned about); the
socket file is mode 0600; and every connection's peer uid is read with
``SO_PEERCRED`` -- only the daemon's own uid and root get an answer.  Each command
is logged with the caller's pid and uid (an audit trail).

The server bounds what clients can take from the daemon: at most
:data:`MAX_CONNECTIONS` connections at once (more are answered "too many control
connections" and closed at once), a request must arrive whole within
:data:`FRAME_TIMEOUT` seconds, and a few reserve file descriptors let it shed a
connection even when the process has run out of descriptors.

Each connection may send several requests; they are answered in order.  Nothing a
client sends can disturb the server: a bad message gets an error reply (and the
connection is closed when the framing itself is broken), a failing command gets an
error reply, and an unexpected exception is logged and answered as an internal
error.  Connections are served concurrently, so ``status`` answers during a
``reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final

from pounce.control.client import peer_credentials
from pounce.control.handler import AfterReply, ControlHandler, Result
from pounce.control.protocol import (
    FrameDecoder,
    Request,
    decode_request,
    encode_error,
    encode_result,
)
from pounce.errors import ControlCommandError, ControlError, ControlProtocolError, PounceError

log = logging.getLogger("pounce.error")

IDLE_TIMEOUT: Final = 300.0
"""Seconds a connection may sit idle between requests before it is closed."""

FRAME_TIMEOUT: Final = 5.0
"""Seconds within which a request must arrive whole: counted from the connection's
start for its first request, from the first byte for the next ones."""

MAX_CONNECTIONS: Final = 64
"""Control connections served at once; more are refused at once."""

BACKLOG: Final = 1024
"""Listen backlog of the control socket (the kernel may clamp it to somaxconn)."""

RESERVE_FDS: Final = 2
"""File descriptors held in reserve, released to shed a connection on EMFILE."""

AUDITED: Final = frozenset({"reload", "drain", "resume", "stop", "scale"})
"""Commands logged at INFO with their caller; the others at DEBUG."""

_CHUNK: Final = 65536
_ACCEPTS_PER_WAKEUP: Final = 64
_WARN_EVERY: Final = 10.0  # seconds between two warnings about refused connections
_PAUSE: Final = 1.0  # seconds accepting pauses when even the reserve does not help

_Dispatch = Callable[[ControlHandler, Mapping[str, Any]], Awaitable[Result | AfterReply]]
DISPATCH: Final[Mapping[str, _Dispatch]] = {
    "status": lambda h, a: h.status(),
    "reload": lambda h, a: h.reload(),
    "drain": lambda h, a: h.drain(wait=a["wait"], timeout=a["timeout"]),
    "resume": lambda h, a: h.resume(),
    "stop": lambda h, a: h.stop(now=a["now"]),
    "scale": lambda h, a: h.scale(workers=a["workers"]),
    "workers": lambda h, a: h.workers(),
}
"""Each command of :data:`~pounce.control.protocol.COMMANDS` to its handler method."""


__all__ = ["DISPATCH", "ControlServer", "peer_credentials"]


class ControlServer:
    """Serves ``handler`` on the Unix socket ``path``.

    ``await start()`` to listen and ``await close()`` to stop; or use it as an
    async context manager.  The supervisor should call :meth:`close` after the
    ``stop`` reply is sent: closing cancels the commands still running.
    """

    def __init__(
        self,
        path: str,
        handler: ControlHandler,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        frame_timeout: float = FRAME_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        backlog: int = BACKLOG,
        strict_directory: bool = True,
    ) -> None:
        self.path = path
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.max_connections = max_connections
        self.backlog = backlog
        self.strict_directory = strict_directory
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None
        self._allowed_uids = frozenset({os.geteuid(), 0})
        self._connections: set[asyncio.Task[Any]] = set()
        self._reserve: list[int] = []
        self._refused = 0
        self._warned_at = -_WARN_EVERY

    @property
    def serving(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._listener is not None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the directory if needed, replace a stale socket, bind (0600) and listen.

        Raises :class:`~pounce.errors.ControlError` when another process listens on
        the path, the path is not a socket, or it cannot be bound.
        """
        if self._listener is not None:
            raise ControlError(f"the control server on {self.path} is already started")
        self._prepare_directory()
        self._remove_stale_socket()
        sock = self._bind()
        try:
            sock.setblocking(False)
            sock.listen(self.backlog)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        self._listener = sock
        self._fill_reserve()

    async def close(self) -> None:
        """Stop listening, unlink the socket and end every connection.

        Safe to call from inside a command (the calling connection is left to finish).
        """
        sock, self._listener = self._listener, None
        if sock is None:
            return
        asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        self._unlink()
        for fd in self._reserve:
            os.close(fd)
        self._reserve.clear()
        current = asyncio.current_task()
        tasks = [task for task in self._connections if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the socket file ------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            try:
                os.makedirs(parent, mode=0o700)
                os.chmod(parent, 0o700)  # makedirs' mode is subject to the umask
            except FileExistsError:
                pass
            except OSError as exc:
                raise ControlError(
                    f"cannot create the control socket directory {parent}: {exc.strerror or exc}"
                ) from exc
        problem = check_directory(parent, self._allowed_uids, strict=self.strict_directory)
        if problem:
            log.warning("%s; pounce ctl checks the server's uid before it sends anything", problem)

    def _remove_stale_socket(self) -> None:
        """Unlink a socket file nobody listens on; refuse to touch a live one."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        hint = "stop the other daemon or set another [control] socket"
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket", hint=hint)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            os.unlink(self.path)  # left behind by a daemon that died
            return
        except OSError as exc:  # busy (backlog full) or unreachable: not ours to remove
            raise ControlError(
                f"cannot tell whether {self.path} is in use: {exc.strerror or exc}", hint=hint
            ) from exc
        finally:
            probe.close()
        raise ControlError(f"another process is listening on {self.path}", hint=hint)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            raise ControlError(
                f"cannot bind the control socket {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            # Before listen(), connects are refused: no window with a wider mode.
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise ControlError(f"cannot secure the control socket {self.path}: {exc}") from exc
        self._identity = (st.st_dev, st.st_ino)
        return sock

    def _unlink(self) -> None:
        """Remove the socket file, unless another daemon has replaced it since."""
        identity, self._identity = self._identity, None
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == identity:
                os.unlink(self.path)

    # -- accepting ----------------------------------------------------------------------

    def _fill_reserve(self) -> None:
        while len(self._reserve) < RESERVE_FDS:
            try:
                self._reserve.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def _accept(self) -> None:
        """Accept what is pending (a bounded number per wakeup), refusing past the cap."""
        sock = self._listener
        if sock is None:
            return
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._shed(sock, exc)
                else:
                    self._note_refused(f"accept failed: {exc.strerror or exc}")
                return
            if len(self._connections) >= self.max_connections:
                _refuse(conn, "too many control connections")
                self._note_refused(f"more than {self.max_connections} connections at once")
                continue
            task = asyncio.get_running_loop().create_task(self._on_connection(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        self._fill_reserve()

    def _shed(self, sock: socket.socket, exc: OSError) -> None:
        """Out of descriptors: release the reserve, accept and close what waits, re-reserve.

        If that frees nothing, stop accepting for a moment rather than spin.
        """
        for fd in self._reserve:
            os.close(fd)
        self._reserve.clear()
        shed = 0
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = sock.accept()
            except OSError:
                break
            _refuse(conn, "the daemon is out of file descriptors")
            shed += 1
        self._fill_reserve()
        self._note_refused(f"out of file descriptors ({exc.strerror or exc})")
        if shed == 0 or len(self._reserve) < RESERVE_FDS:
            loop = asyncio.get_running_loop()
            loop.remove_reader(sock.fileno())
            loop.call_later(_PAUSE, self._resume_accepting, sock)

    def _resume_accepting(self, sock: socket.socket) -> None:
        if self._listener is sock:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)

    def _note_refused(self, why: str) -> None:
        """Count a refused connection; warn at most once per ``_WARN_EVERY`` seconds."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            log.warning("control socket: refused %d connection(s): %s", self._refused, why)
            self._refused = 0
            self._warned_at = now

    # -- connections ----------------------------------------------------------------------

    async def _on_connection(self, conn: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            creds = peer_credentials(conn)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
            if self._peer_allowed(creds):
                await self._serve(reader, writer, creds)
            else:
                await _send(writer, encode_error("permission denied"))
        except (TimeoutError, ConnectionError):
            pass  # idle too long, too slow to send a request, or the client went away
        except asyncio.CancelledError:
            # close() ends open connections: end quietly.
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            if writer is None:
                conn.close()
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    def _peer_allowed(self, creds: tuple[int, int, int] | None) -> bool:
        if creds is None or creds[1] in self._allowed_uids:
            return True
        log.warning("control socket: refused pid %d uid %d: permission denied", *creds[:2])
        return False

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        creds: tuple[int, int, int] | None,
    ) -> None:
        decoder = FrameDecoder()
        loop = asyncio.get_running_loop()
        # The first request must arrive whole soon after connecting.
        deadline: float | None = loop.time() + min(self.frame_timeout, self.idle_timeout)
        while True:
            try:
                payload = await self._read_payload(reader, decoder, deadline)
            except ControlProtocolError as exc:  # framing broken: answer, then hang up
                await _send(writer, encode_error(str(exc)))
                return
            if payload is None:
                return
            frame, after_reply = await self._respond(payload, creds)
            sent = await _send(writer, frame)
            if after_reply is not None:
                after_reply()  # (stop: the reply is written, the daemon may act)
            if not sent:
                return
            deadline = loop.time() + self.frame_timeout if decoder.buffered else None

    async def _read_payload(
        self, reader: asyncio.StreamReader, decoder: FrameDecoder, deadline: float | None
    ) -> bytes | None:
        """The next request payload, or None when the client closed the connection.

        Raises TimeoutError when the connection idles longer than ``idle_timeout``, or
        when the request is not whole by ``deadline`` (set at its first byte if None).
        """
        loop = asyncio.get_running_loop()
        while (payload := decoder.next_frame()) is None:
            when = loop.time() + self.idle_timeout if deadline is None else deadline
            async with asyncio.timeout_at(when):
                data = await reader.read(_CHUNK)
            if not data:
                return None
            decoder.feed(data)
            if deadline is None:
                deadline = loop.time() + self.frame_timeout
        return payload

    async def _respond(
        self, payload: bytes, creds: tuple[int, int, int] | None = None
    ) -> tuple[bytes, Callable[[], object] | None]:
        """The framed reply to one request payload, and what to do once it is sent;
        never raises for a bad request."""
        try:
            request = decode_request(payload)
        except ControlProtocolError as exc:
            return encode_error(str(exc)), None
        caller = _caller(creds)
        audit = logging.INFO if request.cmd in AUDITED else logging.DEBUG
        log.log(audit, "control: %s%s by %s", request.cmd, _describe_args(request.args), caller)
        try:
            result, after_reply = await self._run(request)
        except ControlCommandError as exc:
            log.log(audit, "control: %s by %s failed: %s", request.cmd, caller, exc.message)
            return encode_error(exc.message, exc.details), None
        except PounceError as exc:
            log.warning("control command %s failed: %s", request.cmd, exc)
            return encode_error(str(exc)), None
        except Exception as exc:
            log.exception("control command %s raised an unexpected error", request.cmd)
            text = f"internal error in {request.cmd}: {type(exc).__name__}: {exc}"
            return encode_error(text), None
        try:
            return encode_result(result), after_reply
        except ControlProtocolError as exc:
            log.error(
                "control command %s returned a reply that cannot be sent: %s", request.cmd, exc
            )
            return encode_error(f"internal error in {request.cmd}: {exc}"), after_reply

    async def _run(self, request: Request) -> tuple[Mapping[str, Any], Callable[[], object] | None]:
        answer = await DISPATCH[request.cmd](self.handler, request.args)
        after_reply = None
        if isinstance(answer, AfterReply):
            result, after_reply = answer.result, answer.then
        else:
            result = answer
        if not isinstance(result, Mapping):
            raise TypeError(f"the handler returned {type(result).__name__}, not a mapping")
        return result, after_reply


def _caller(creds: tuple[int, int, int] | None) -> str:
    """``pid 123 uid 1000``, the caller as the audit log names it."""
    if creds is None:
        return "pid ? uid ?"
    return f"pid {creds[0]} uid {creds[1]}"


def _describe_args(args: Mapping[str, Any]) -> str:
    """`` workers=3 now=True``: the arguments as the audit log shows them."""
    return "".join(f" {key}={value}" for key, value in sorted(args.items()))


def check_directory(path: str, allowed_uids: frozenset[int], *, strict: bool = True) -> str:
    """Refuse a socket directory another user could control (as tmux does).

    It must belong to one of ``allowed_uids`` (the daemon's uid, root) and not be
    writable by group or others, unless sticky (as ``/tmp`` is, where no one may
    remove or rename another's file).  Not ``strict`` (a directory the operator
    configured, such as a Kubernetes ``emptyDir``, which is 0777), a writable
    directory is returned as a warning text instead; otherwise the text is empty.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ControlError(f"cannot check the control socket directory {path}: {exc}") from exc
    hint = (
        "remove it, or set [control] socket to a directory of your own "
        "(mode 0700, owned by the daemon's user)"
    )
    if st.st_uid not in allowed_uids:
        raise ControlError(
            f"the control socket directory {path} belongs to uid {st.st_uid}, "
            f"not to the daemon's uid {os.geteuid()}",
            hint=hint,
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        problem = (
            f"the control socket directory {path} is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o})"
        )
        if strict:
            raise ControlError(problem, hint=hint)
        return problem
    return ""


def _refuse(conn: socket.socket, text: str) -> None:
    """Answer ``text`` as an error, if the socket takes it at once, and close."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(encode_error(text))
    conn.close()


async def _send(writer: asyncio.StreamWriter, frame: bytes) -> bool:
    """Write one frame; False when the client is gone."""
    try:
        writer.write(frame)
        await writer.drain()
    except (ConnectionError, OSError):
        return False
    return True
