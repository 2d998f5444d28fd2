"""What every HTTP version shares of one ASGI ``http`` request: the bridge's common half.

HTTP/1.1 (:class:`~pounce.asgi.http.HTTPCycle`) and HTTP/2
(:class:`~pounce.asgi.h2stream.H2Stream`) feed the same events into an exchange:
``feed_body(data)``, ``end_body()``, ``disconnect()``.  The exchange turns them into
the app's ``receive()`` messages, runs the app with one error policy, and counts and
logs the request once.  Only the response side (framing a head and body into bytes
or into HEADERS/DATA frames) differs by version, in the subclasses.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from pounce.asgi.accesslog import access_log, log_request
from pounce.asgi.requestid import log_suffix
from pounce.metrics import Collector
from pounce.types import ASGIApp, Message, Scope

error_log = logging.getLogger("pounce.error")
_INFO = logging.INFO


class ASGIProtocolError(RuntimeError):
    """The app sent a message out of order or malformed."""


def response_status(message: Message) -> int:
    """The status of an ``http.response.start`` message, checked."""
    status = message["status"]
    if type(status) is not int:
        if not isinstance(status, int) or isinstance(status, bool):
            raise ASGIProtocolError(f"invalid status {status!r}")
        status = int(status)  # e.g. http.HTTPStatus.OK
    if not 100 <= status <= 999:
        raise ASGIProtocolError(f"invalid status {status!r}")
    return status


class Exchange:
    """One request's ASGI state: the request body side, running the app, recording it.

    Subclasses implement the response side (``send``) and the hooks:
    :meth:`_body_taken` (the app took buffered body bytes: read or open windows
    for more), :meth:`_before_wait` (e.g. ``100 Continue``), and :meth:`_failed` /
    :meth:`_cancelled` (what an app failure does to the response).
    """

    __slots__ = (
        "_body",
        "_sent_last_body",
        "_waiter",
        "access_log",
        "body_complete",
        "bytes_sent",
        "disconnected",
        "head_written",
        "metrics",
        "recorded",
        "response_complete",
        "response_started",
        "scope",
        "start_time",
        "task",
        "tasks",
    )

    def __init__(
        self,
        scope: Scope,
        access_log: bool,
        metrics: Collector | None,
        tasks: set[asyncio.Task[None]] | None = None,
    ) -> None:
        # (HTTPCycle repeats these assignments inline: keep the two in step)
        self.scope = scope
        self.access_log = access_log
        self.metrics = metrics
        self.tasks = tasks
        #: The Task running the app, once the connection made one (None if it finished eagerly).
        self.task: asyncio.Task[None] | None = None
        self.start_time = perf_counter()
        self._body: bytes | bytearray = b""  # the first piece as is, then a bytearray
        self.body_complete = False
        self._sent_last_body = False
        self._waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.response_started = False
        self.head_written = False
        self.response_complete = False
        self.recorded = False
        self.bytes_sent = 0

    # -- events from the connection ---------------------------------------------

    @property
    def buffered(self) -> int:
        """Request body bytes received and not yet taken by the app."""
        return len(self._body)

    def feed_body(self, data: bytes) -> None:
        body = self._body
        if not body:
            self._body = data  # kept as it came: a one-piece body is never copied
        elif type(body) is bytes:
            self._body = bytearray(body)
            self._body += data
        else:
            body += data  # (a bytearray: extended in place)
        self._wake()

    def end_body(self) -> None:
        self.body_complete = True
        if self._waiter is not None:
            self._wake()

    def disconnect(self) -> None:
        """The client went away (or reset the stream): the app gets ``http.disconnect``."""
        self.disconnected = True
        self._wake()

    def cancel_after(self, grace: float) -> None:
        """The client is gone: if the app is still running ``grace`` seconds from now, cancel it.

        The app got ``http.disconnect`` (from :meth:`disconnect`); one that never
        calls ``receive()`` or ignores it would otherwise hold its request in flight
        for ever.  Only an app that suspended has a :attr:`task` to cancel.
        """
        task = self.task
        if task is not None and not task.done():
            task.get_loop().call_later(grace, self._abandon, task, grace)

    def _abandon(self, task: asyncio.Task[None], grace: float) -> None:
        if self.task is not task or task.done() or task.cancelling():
            return  # it returned in time (or is being cancelled already)
        rid, extra = log_suffix(self.scope)
        error_log.warning(
            "ASGI application still running %.1fs after its client went away (%s %s%s): cancelled",
            grace,
            self.scope["method"],
            self.scope["path"],
            rid,
            extra=extra,
        )
        if self.metrics is not None:
            self.metrics.apps_cancelled += 1
        task.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- receive() ------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if self.body_complete and not self._body:
            if self._sent_last_body:
                # After the whole body: wait for the response to finish, then disconnect.
                await self._wait()
                return {"type": "http.disconnect"}
            self._sent_last_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self._body and not self.body_complete:
            self._before_wait()
            await self._wait()
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
        body = self._body
        self._body = b""
        if type(body) is not bytes:
            body = bytes(body)
        self._body_taken(len(body))
        more = not self.body_complete
        if not more:
            self._sent_last_body = True
        return {"type": "http.request", "body": body, "more_body": more}

    async def _wait(self) -> None:
        """Wait until the connection has something new for this request."""
        while True:
            if self.disconnected or self.response_complete:
                return
            if self._body or (self.body_complete and not self._sent_last_body):
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _before_wait(self) -> None:
        """The app waits for body bytes that are not here yet."""

    def _body_taken(self, nbytes: int) -> None:
        """The app took ``nbytes`` of buffered body: let more in."""

    # -- running the app ---------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app, turning its failures into a 500, a reset or a closed connection."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.response_complete:
                self._cancelled()
            raise
        except BaseException as exc:
            rid, extra = log_suffix(self.scope)
            error_log.error(
                "Exception in ASGI application (%s %s%s)",
                self.scope["method"],
                self.scope["path"],
                rid,
                exc_info=exc,
                extra=extra,
            )
            if not self.response_complete:
                await self._failed()
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.response_complete:
                if not self.disconnected:
                    rid, extra = log_suffix(self.scope)
                    error_log.error(
                        "ASGI application returned without completing the response (%s %s%s)",
                        self.scope["method"],
                        self.scope["path"],
                        rid,
                        extra=extra,
                    )
                await self._failed()
        finally:
            # The worker counts in-flight requests by their Tasks (and waits for them
            # on shutdown); a done callback would cost a loop round trip per request.
            task = self.task
            if task is not None:
                self.task = None  # the app returned: nothing left to cancel
                if self.tasks is not None:
                    self.tasks.discard(task)

    async def send(self, message: Message) -> None:
        raise NotImplementedError

    async def _failed(self) -> None:
        """The app failed (or returned) before completing its response."""
        raise NotImplementedError

    def _cancelled(self) -> None:
        """The app was cancelled (shutdown timeout) before completing its response."""
        raise NotImplementedError

    def _record(self, status: int) -> None:
        """Count the finished request and write its access-log line (once)."""
        if self.recorded:
            return
        self.recorded = True
        duration = perf_counter() - self.start_time
        if self.metrics is not None:
            self.metrics.observe(self.scope["method"], status, duration, self.bytes_sent)
        if self.access_log and access_log.isEnabledFor(_INFO):
            log_request(self.scope, status, self.bytes_sent, duration)
