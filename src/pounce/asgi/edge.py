"""The server's own ASGI layer around the app: limits, Server-Timing, the slow-request log.

:func:`wrap` puts an :class:`Edge` around the app only when one of its features is
configured (``[limits] max_concurrent_requests``, ``[limits.rate]``,
``http.server_timing``, ``logging.slow_request_threshold``); with all of them off
the app is not wrapped and costs nothing more.  It sees the ``http`` and
``websocket`` scopes of every protocol (HTTP/1.1, HTTP/2, WebSocket over either):

1. rate limit: a token bucket per client IP (``scope["client"]``, after ``[proxy]``);
   over it ``429`` with ``Retry-After`` (seconds until a token is back).  A client
   with no IP (a Unix-socket peer not rewritten by ``[proxy]``) is not rate limited.
2. concurrency: a slot of ``max_concurrent_requests`` (daemon-wide), or a place in
   this worker's wait queue, or ``503`` with ``Retry-After: [limits] retry_after``.
   A WebSocket session holds its slot for its whole life.
3. the app, timed: ``Server-Timing`` on ``http.response.start`` and one warning per
   request slower than ``logging.slow_request_threshold`` (``http`` scopes only).

A WebSocket turned away gets its ``503``/``429`` through the WebSocket Denial Response
extension.  Health and metrics paths never get here: the worker answers them first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter

from pounce.asgi.limits import (
    LocalLimit,
    RateLimiter,
    RequestLimit,
    WaitQueue,
    retry_after_seconds,
)
from pounce.config import Config
from pounce.logs import ThrottledLog
from pounce.metrics import Collector
from pounce.types import ASGIApp, Message, Receive, Scope, Send

error_log = logging.getLogger("pounce.error")

TEXT_PLAIN = b"text/plain; charset=utf-8"
BUSY_BODY = b"Service Unavailable: the server is busy, retry later.\n"
RATE_BODY = b"Too Many Requests: slow down, retry later.\n"


def wrap(
    app: ASGIApp,
    config: Config,
    metrics: Collector,
    request_limit: RequestLimit | None = None,
) -> ASGIApp:
    """``app`` inside an :class:`Edge` when a feature of it is on, else ``app`` itself.

    ``request_limit`` is the daemon-wide counter of ``max_concurrent_requests``; without
    it (a worker run on its own) the limit is counted in this worker.
    """
    limits = config.limits
    rate = limits.rate
    rate_limiter = None
    if rate.requests_per_second > 0:
        rate_limiter = RateLimiter(rate.requests_per_second, rate.burst, rate.max_tracked_clients)
    queue = None
    if limits.max_concurrent_requests > 0:
        limit = request_limit
        if limit is None:
            limit = LocalLimit(limits.max_concurrent_requests)
        loop = asyncio.get_running_loop()
        queue = WaitQueue(limit, limits.queue_size, limits.queue_timeout, loop)
    timing = config.http.server_timing
    slow = config.logging.slow_request_threshold
    if rate_limiter is None and queue is None and not timing and not slow:
        return app
    return Edge(
        app,
        metrics,
        rate=rate_limiter,
        queue=queue,
        retry_after=limits.retry_after,
        server_timing=timing,
        slow_threshold=slow,
    )


class Edge:
    """The ASGI wrapper (see the module docstring); ``clock`` and ``log`` are injected."""

    __slots__ = (
        "app",
        "clock",
        "metrics",
        "queue",
        "rate",
        "retry_after",
        "server_timing",
        "shed_log",
        "slow_log",
        "slow_threshold",
        "timed",
    )

    def __init__(
        self,
        app: ASGIApp,
        metrics: Collector,
        *,
        rate: RateLimiter | None = None,
        queue: WaitQueue | None = None,
        retry_after: int = 1,
        server_timing: bool = False,
        slow_threshold: float = 0.0,
        clock: Callable[[], float] = perf_counter,
        log: logging.Logger = error_log,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.rate = rate
        self.queue = queue
        self.retry_after = retry_after
        self.server_timing = server_timing
        self.slow_threshold = slow_threshold
        self.timed = server_timing or slow_threshold > 0
        self.clock = clock
        self.slow_log = log
        self.shed_log = ThrottledLog(log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # lifespan
            await self.app(scope, receive, send)
            return
        start = self.clock()
        rate = self.rate
        if rate is not None:
            client = scope.get("client")
            if client:  # (no IP: a Unix-socket peer, not rate limited)
                wait = rate.take(client[0])
                if wait:
                    await self._shed(scope, send, "rate_limit", 429, retry_after_seconds(wait))
                    return
        queue = self.queue
        if queue is None:
            await self._run(scope, receive, send, start, None)
            return
        queued = None
        if queue.waiting or not queue.limit.try_acquire():
            reason = await queue.acquire()
            if reason is not None:
                await self._shed(scope, send, reason, 503, self.retry_after)
                return
            queued = self.clock() - start
        try:
            await self._run(scope, receive, send, start, queued)
        finally:  # (also when the app was cancelled: its client left)
            queue.release()

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, start: float, queued: float | None
    ) -> None:
        if not self.timed or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timed = _TimedSend(self, scope, send, start, queued)
        try:
            await self.app(scope, receive, timed)
        finally:
            if not timed.complete:
                timed.finish()

    async def _shed(self, scope: Scope, send: Send, reason: str, status: int, retry: int) -> None:
        """Answer ``status`` with ``Retry-After``, count and log (throttled) the shed."""
        self.metrics.count_shed(reason)
        client = scope.get("client")
        self.shed_log.warning(
            reason,
            "request shed (%s): %s %s from %s answered %d",
            reason,
            scope.get("method", "WEBSOCKET"),
            scope.get("path", ""),
            client[0] if client else "unix socket",
            status,
        )
        body = RATE_BODY if status == 429 else BUSY_BODY
        headers = [
            (b"content-type", TEXT_PLAIN),
            (b"content-length", b"%d" % len(body)),
            (b"retry-after", b"%d" % retry),
        ]
        prefix = "websocket.http.response" if scope["type"] == "websocket" else "http.response"
        await send({"type": prefix + ".start", "status": status, "headers": headers})
        await send({"type": prefix + ".body", "body": body})


def _ms(seconds: float) -> bytes:
    return b"%.1f" % (seconds * 1000.0)


class _TimedSend:
    """The app's ``send`` for one timed request: adds ``Server-Timing``, logs it if slow."""

    __slots__ = ("complete", "edge", "queued", "scope", "send", "start", "status")

    def __init__(
        self, edge: Edge, scope: Scope, send: Send, start: float, queued: float | None
    ) -> None:
        self.edge = edge
        self.scope = scope
        self.send = send
        self.start = start
        self.queued = queued
        self.status: int | None = None
        self.complete = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message.get("status")
            if self.edge.server_timing:
                message = self._with_timing(message)
        elif (
            kind == "http.response.body"
            and not message.get("more_body", False)
            and not self.complete
        ):
            self.finish()
        await self.send(message)

    def _with_timing(self, message: Message) -> Message:
        """A copy of the start message with our ``Server-Timing`` line added (the app's
        own lines, if any, stay: the field may be repeated, RFC 9110 §5.3)."""
        elapsed = self.edge.clock() - self.start
        value = b"app;dur=" + _ms(elapsed)
        if self.queued is not None:
            value = b"queue;dur=" + _ms(self.queued) + b", " + value
        headers = list(message.get("headers") or ())
        headers.append((b"server-timing", value))
        out = dict(message)
        out["headers"] = headers
        return out

    def finish(self) -> None:
        """The response is complete (or the app returned): log it if it was slow."""
        self.complete = True
        edge = self.edge
        threshold = edge.slow_threshold
        if not threshold:
            return
        duration = edge.clock() - self.start
        if duration <= threshold:
            return
        scope = self.scope
        request_id = (scope.get("extensions") or {}).get("request_id") or "-"
        method = scope.get("method", "-")
        path = scope.get("path", "-")
        status = self.status if self.status is not None else "-"
        edge.slow_log.warning(
            "slow request: %s %s -> %s in %.3fs (threshold %gs, request id %s)",
            method,
            path,
            status,
            duration,
            threshold,
            request_id,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration * 1000.0, 1),
                "request_id": request_id,
            },
        )
