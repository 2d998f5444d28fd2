"""The control socket server: a Unix socket the supervisor serves ``pounce ctl`` on.

Security rests on two locks: the socket file is mode 0600 (in a 0700 directory when
the server creates it), and every connection's peer uid is read with
``SO_PEERCRED`` -- only the daemon's own uid and root get an answer.

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
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final

from pounce.control.handler import ControlHandler, Result
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

_CHUNK: Final = 65536
_PEERCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid

_Dispatch = Callable[[ControlHandler, Mapping[str, Any]], Awaitable[Result]]
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


def peer_credentials(sock: Any) -> tuple[int, int, int] | None:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket, or None
    where the platform has no ``SO_PEERCRED`` (the socket's 0600 mode still guards it)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


class ControlServer:
    """Serves ``handler`` on the Unix socket ``path``.

    ``await start()`` to listen and ``await close()`` to stop; or use it as an
    async context manager.  The supervisor should call :meth:`close` after the
    ``stop`` reply is sent: closing cancels the commands still running.
    """

    def __init__(
        self, path: str, handler: ControlHandler, *, idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        self.path = path
        self.handler = handler
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._identity: tuple[int, int] | None = None
        self._allowed_uids = frozenset({os.geteuid(), 0})
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def serving(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._server is not None

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
        if self._server is not None:
            raise ControlError(f"the control server on {self.path} is already started")
        self._prepare_directory()
        self._remove_stale_socket()
        sock = self._bind()
        try:
            self._server = await asyncio.start_unix_server(self._on_connection, sock=sock)
        except BaseException:
            sock.close()
            self._unlink()
            raise

    async def close(self) -> None:
        """Stop listening, unlink the socket and end every connection.

        Safe to call from inside a command (the calling connection is left to finish).
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._unlink()
        current = asyncio.current_task()
        tasks = [task for task in self._connections if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the socket file ------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(parent):
            return
        try:
            os.makedirs(parent, mode=0o700)
            os.chmod(parent, 0o700)  # makedirs' mode is subject to the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise ControlError(
                f"cannot create the control socket directory {parent}: {exc.strerror or exc}"
            ) from exc

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

    # -- connections ----------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if self._peer_allowed(writer):
                await self._serve(reader, writer)
            else:
                await _send(writer, encode_error("permission denied"))
        except (TimeoutError, ConnectionError):
            pass  # idle too long, or the client went away
        except asyncio.CancelledError:
            # close() ends open connections: end quietly, or asyncio's stream callback
            # would log the cancellation as an error.
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        creds = peer_credentials(writer.get_extra_info("socket"))
        if creds is None or creds[1] in self._allowed_uids:
            return True
        log.warning("control socket: refused pid %d uid %d: permission denied", *creds[:2])
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                payload = await self._read_payload(reader, decoder)
            except ControlProtocolError as exc:  # framing broken: answer, then hang up
                await _send(writer, encode_error(str(exc)))
                return
            if payload is None:
                return
            if not await _send(writer, await self._respond(payload)):
                return

    async def _read_payload(
        self, reader: asyncio.StreamReader, decoder: FrameDecoder
    ) -> bytes | None:
        """The next request payload, or None when the client closed the connection."""
        while (payload := decoder.next_frame()) is None:
            async with asyncio.timeout(self.idle_timeout):
                data = await reader.read(_CHUNK)
            if not data:
                return None
            decoder.feed(data)
        return payload

    async def _respond(self, payload: bytes) -> bytes:
        """The framed reply to one request payload; never raises for a bad request."""
        try:
            request = decode_request(payload)
        except ControlProtocolError as exc:
            return encode_error(str(exc))
        try:
            result = await self._run(request)
        except ControlCommandError as exc:
            return encode_error(exc.message, exc.details)
        except PounceError as exc:
            log.warning("control command %s failed: %s", request.cmd, exc)
            return encode_error(str(exc))
        except Exception as exc:
            log.exception("control command %s raised an unexpected error", request.cmd)
            return encode_error(f"internal error in {request.cmd}: {type(exc).__name__}: {exc}")
        try:
            return encode_result(result)
        except ControlProtocolError as exc:
            log.error(
                "control command %s returned a reply that cannot be sent: %s", request.cmd, exc
            )
            return encode_error(f"internal error in {request.cmd}: {exc}")

    async def _run(self, request: Request) -> Mapping[str, Any]:
        result = await DISPATCH[request.cmd](self.handler, request.args)
        if not isinstance(result, Mapping):
            raise TypeError(f"the handler returned {type(result).__name__}, not a mapping")
        return result


async def _send(writer: asyncio.StreamWriter, frame: bytes) -> bool:
    """Write one frame; False when the client is gone."""
    try:
        writer.write(frame)
        await writer.drain()
    except (ConnectionError, OSError):
        return False
    return True
