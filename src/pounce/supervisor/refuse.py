"""Refusing connections while no worker accepts them.

The supervisor keeps every listening socket open for its whole life (a reload's
queued connections must survive).  So when no worker accepts on them (after a
drain, during a stop) the kernel would still complete new TCP handshakes and queue
the connections, and their clients would hang until the daemon exits.  Instead the
supervisor accepts them itself and resets them at once: a client fails fast
(``Connection reset by peer``) and a load balancer tries another backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterable

from pounce.net.listeners import Listener

log = logging.getLogger("pounce.error")

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, not FIN
_BATCH = 128  # connections accepted per readiness event, so the loop stays responsive


class Refuser:
    """While on, every new connection on the listeners is accepted and reset at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._fds: list[int] = []
        self.refused = 0

    @property
    def on(self) -> bool:
        return bool(self._fds)

    def start(self, listeners: Iterable[Listener]) -> None:
        if self._fds:
            return
        for listener in listeners:
            sock = listener.sock
            if sock.fileno() < 0:
                continue
            sock.setblocking(False)
            self.loop.add_reader(sock.fileno(), self._refuse, sock)
            self._fds.append(sock.fileno())
        # Connections queued before this call are accepted at the first readiness event.

    def stop(self) -> None:
        for fd in self._fds:
            self.loop.remove_reader(fd)
        self._fds = []

    def _resume(self, sock: socket.socket) -> None:
        if sock.fileno() in self._fds:
            self.loop.add_reader(sock.fileno(), self._refuse, sock)

    def _refuse(self, sock: socket.socket) -> None:
        for _ in range(_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE and the like: pause, as asyncio's accept does
                log.warning("refusing a connection failed: %s", exc)
                self.loop.remove_reader(sock.fileno())
                self.loop.call_later(1.0, self._resume, sock)
                return
            with contextlib.suppress(OSError):
                if conn.family in (socket.AF_INET, socket.AF_INET6):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                conn.close()
            self.refused += 1
