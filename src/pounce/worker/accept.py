"""Accepting connections (on asyncio and uvloop), pausing when the process runs out of fds.

asyncio's own accept loop (CPython 3.11) meets ``EMFILE`` with a traceback through
the loop's exception handler and a retry *per pending connection* in the backlog,
each of which schedules another retry: with ``ulimit -n 1024`` and 3,000 clients it
logged 262,000 tracebacks in 20 s at 100% CPU.  :class:`Acceptor` does what nginx
does instead: on ``EMFILE``/``ENFILE`` (or ``ENOBUFS``/``ENOMEM``) it stops accepting
for :data:`ACCEPT_PAUSE` seconds, logs one line for that pause with the counts,
counts it in the worker's metrics, then accepts again.  The connections it accepts
are made exactly as asyncio's server makes them (``connect_accepted_socket``).

uvloop's accept loop (libuv's) meets ``EMFILE`` by accepting and closing the
waiting clients with nothing logged, so it is not used either: on uvloop too the
connections are accepted here and handed to ``connect_accepted_socket``, which
measured faster than uvloop's own server for new connections (15,000 against
10,900 connections/s, one worker, ``wrk -H "Connection: close"``).

Several workers share one listening socket; the first to wake used to take a whole
burst of connections (wrk's 64 all went to one of two workers).  With
``per_wakeup=1`` a worker accepts one connection per readiness event, so the kernel
wakes the others for the next ones.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Sized

from pounce.metrics import Collector

log = logging.getLogger("pounce.error")

#: How long accepting stops when the process (or system) is out of file descriptors.
ACCEPT_PAUSE = 0.5
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class Acceptor:
    """Accepts on one listening socket and hands each connection to ``factory``'s protocol."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
        backlog: int,
        metrics: Collector,
        connections: Sized,
        *,
        per_wakeup: int = 0,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self.backlog = max(1, backlog)
        #: How many connections one readiness event accepts (0: up to the backlog).  With
        #: several workers on one socket, 1 lets the kernel wake the others for the next
        #: ones, instead of the first worker to wake taking a whole burst (wrk's 64
        #: connections all went to one of two workers).
        self.per_wakeup = per_wakeup or self.backlog
        self.metrics = metrics
        self.connections = connections
        self.closed = False
        self.pauses = 0
        self._resume: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close this process's copy of the socket (as asyncio.Server does)."""
        if self.closed:
            return
        self.closed = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        else:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    async def settled(self) -> None:
        """Wait until every connection accepted so far is set up (or failed to be): from
        then on each is in the worker's connections."""
        if self._pending:
            await asyncio.wait(list(self._pending))

    def _accept(self) -> None:
        sock = self.sock
        for _ in range(self.per_wakeup):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                self._pause(exc)
                return
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn, ssl=self.ssl_context)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            # e.g. a failed TLS handshake, or a client that reset at once
            log.debug("connection not set up: %r", exc)
            conn.close()

    def _pause(self, exc: OSError) -> None:
        """Out of fds (or buffers): stop accepting for ACCEPT_PAUSE seconds, log it once."""
        self.loop.remove_reader(self.sock.fileno())
        self.pauses += 1
        self.metrics.accept_pauses += 1
        what = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if exc.errno in _OUT_OF_RESOURCES:
            reason = f"out of resources ({what})"
        else:
            reason = f"accept() failed ({what}: {exc.strerror})"
        log.warning(
            "%s with %d connection(s) open: accepting paused for %.1fs (pause %d)",
            reason,
            len(self.connections),
            ACCEPT_PAUSE,
            self.pauses,
        )
        self._resume = self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)
