"""The pure parts of load shedding (``[limits]``): rate buckets, slots and the wait queue.

:class:`RateLimiter` keeps one token bucket per client IP (``[limits.rate]``) in an LRU
bounded by ``max_tracked_clients``, with an injected clock.  :class:`RequestLimit` is
the interface of the concurrency counter (``[limits] max_concurrent_requests``): the
daemon-wide one shared by all workers (``ServerState.request_limit``) or, without it,
:class:`LocalLimit`, counted in this worker.  :class:`WaitQueue` lets up to
``queue_size`` requests of this worker wait for a slot, for ``queue_timeout`` at most.

The ASGI wrapper that applies them is :mod:`pounce.asgi.edge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

#: While requests wait, how often a worker retries for a slot freed by another worker
#: (a slot this worker frees wakes its next waiter at once).
RETRY_INTERVAL = 0.01


class RateLimiter:
    """A token bucket per client key: ``rate`` tokens a second, up to ``burst`` saved up.

    At most ``max_clients`` buckets are kept; the least recently seen client is
    forgotten first (it comes back with a full bucket), so memory stays bounded
    however many addresses a flood comes from.
    """

    __slots__ = ("_buckets", "burst", "clock", "max_clients", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or max_clients < 1:
            raise ValueError("rate must be > 0 and max_clients >= 1")
        self.rate = rate
        # burst 0: the rate rounded up (at least one request can always be made).
        self.burst = float(burst if burst > 0 else max(1, math.ceil(rate)))
        self.max_clients = max_clients
        self.clock = clock
        # key -> [tokens, time of the last refill]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds until one is there."""
        now = self.clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_clients:
                buckets.popitem(last=False)
            bucket = buckets[key] = [self.burst, now]
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate


def retry_after_seconds(wait: float) -> int:
    """A ``Retry-After`` value for a wait of ``wait`` seconds: rounded up, at least 1."""
    return max(1, math.ceil(wait))


class RequestLimit(Protocol):
    """A counter of requests being answered: the daemon-wide one, or :class:`LocalLimit`."""

    def try_acquire(self) -> bool: ...
    def release(self) -> None: ...


class LocalLimit:
    """``max_concurrent_requests`` counted in this worker alone.

    The fallback when no daemon-wide counter is set (a worker run without the
    supervisor); with the supervisor the limit is shared by all workers.
    """

    __slots__ = ("in_use", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def try_acquire(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        if self.in_use > 0:
            self.in_use -= 1


#: Why a request got no slot (the reasons of ``pounce_requests_shed_total``).
FULL = "concurrency"
TIMED_OUT = "queue_timeout"


class WaitQueue:
    """Slots of a :class:`RequestLimit`, with up to ``size`` requests waiting for one.

    :meth:`acquire` takes a slot at once, or waits in line (first come, first
    served) for at most ``timeout`` seconds.  A slot released here goes straight to
    the next waiter; slots freed elsewhere (other workers share the counter) are not
    signalled, so while anyone waits the queue also retries every
    :data:`RETRY_INTERVAL` seconds.  Not thread-safe: one per worker event loop.
    """

    __slots__ = ("_poll", "_waiters", "limit", "loop", "size", "timeout")

    def __init__(
        self,
        limit: RequestLimit,
        size: int,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.limit = limit
        self.size = size
        self.timeout = timeout
        self.loop = loop
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._poll: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting now (including any that gave up but are not removed yet)."""
        return len(self._waiters)

    async def acquire(self) -> str | None:
        """Take a slot (None), or say why not: :data:`FULL` or :data:`TIMED_OUT`.

        A slot taken must be given back with :meth:`release`.  If the caller is
        cancelled while waiting, no slot is held.
        """
        if not self._waiters and self.limit.try_acquire():
            return None
        if len(self._waiters) >= self.size:
            return FULL
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append(waiter)
        self._arm()
        timer = self.loop.call_later(self.timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            return TIMED_OUT
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # granted just as the caller was cancelled: pass it on
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            self._forget(waiter)
        return None

    def release(self) -> None:
        """Give a slot back; it goes to the next waiter, if any."""
        self.limit.release()
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        """Hand free slots to the waiters at the head of the line."""
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            if head.done():  # timed out or cancelled
                waiters.popleft()
                continue
            if not self.limit.try_acquire():
                return
            waiters.popleft()
            head.set_result(None)

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters and waiters[0] is waiter:
            waiters.popleft()
        else:
            with contextlib.suppress(ValueError):  # (at most queue_size long)
                waiters.remove(waiter)
        if not waiters and self._poll is not None:
            self._poll.cancel()
            self._poll = None

    def _arm(self) -> None:
        if self._poll is None:
            self._poll = self.loop.call_later(RETRY_INTERVAL, self._retry)

    def _retry(self) -> None:
        self._poll = None
        self._grant()
        if self._waiters:
            self._arm()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
