"""Fast unit tests of load shedding and request timing (asgi/limits.py, asgi/edge.py).

Token buckets and the throttled log run on a fake clock; the wait queue and the
wrapper run on a real event loop with fake ``send``/``receive`` (no sockets).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from pounce.asgi.edge import BUSY_BODY, RATE_BODY, Edge, wrap
from pounce.asgi.limits import (
    FULL,
    RETRY_INTERVAL,
    TIMED_OUT,
    LocalLimit,
    RateLimiter,
    WaitQueue,
    retry_after_seconds,
)
from pounce.config import load_config
from pounce.logs import ThrottledLog
from pounce.metrics import Collector
from pounce.types import Message, Scope

WAIT = 5.0  # every wait on the loop is bounded by this


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    """The records of a logger of its own (not propagated: other tests configure logging)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(request: pytest.FixtureRequest) -> Iterator[Records]:
    handler = Records(f"test.shedding.{request.node.name}")
    yield handler
    handler.logger.removeHandler(handler)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(WAIT):
            await main()

    asyncio.run(bounded())


# -- the token bucket ------------------------------------------------------------------------


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 3, 100, clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)
    # Refilling stops at the burst.
    clock.now += 100
    assert [limiter.take("a") for _ in range(4)][-1] > 0
    # Another client has its own bucket.
    assert limiter.take("b") == 0.0


def test_burst_zero_means_the_rate_rounded_up() -> None:
    assert RateLimiter(2.5, 0, 10).burst == 3
    assert RateLimiter(0.2, 0, 10).burst == 1
    assert RateLimiter(10, 4, 10).burst == 4


def test_retry_after_is_the_wait_rounded_up_and_at_least_one() -> None:
    clock = Clock()
    limiter = RateLimiter(0.2, 1, 10, clock)
    assert limiter.take("a") == 0.0
    wait = limiter.take("a")
    assert wait == pytest.approx(5.0)
    assert retry_after_seconds(wait) == 5
    assert retry_after_seconds(0.001) == 1
    assert retry_after_seconds(1.2) == 2
    assert retry_after_seconds(0.0) == 1


def test_tracked_clients_are_bounded_least_recently_seen_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, 100, clock)
    assert limiter.take("kept") == 0.0
    for i in range(10_000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
        if i % 50 == 0:
            limiter.take("kept")  # seen recently: never evicted
        assert len(limiter) <= 100
    assert len(limiter) == 100
    assert limiter.take("kept") > 0  # still tracked: its bucket is still empty
    # A forgotten client comes back with a full bucket.
    assert limiter.take("10.0.0.1") == 0.0


# -- the wait queue --------------------------------------------------------------------------


def test_queue_serves_waiters_in_order_when_this_worker_releases() -> None:
    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 2, 60.0, asyncio.get_running_loop())
        assert await queue.acquire() is None
        first = asyncio.ensure_future(queue.acquire())
        second = asyncio.ensure_future(queue.acquire())
        while queue.waiting < 2:
            await asyncio.sleep(0)
        # The queue is full: the next one is turned away at once.
        assert await queue.acquire() == FULL
        queue.release()
        assert await first is None
        assert not second.done()
        assert limit.in_use == 1
        queue.release()
        assert await second is None
        queue.release()
        assert limit.in_use == 0
        assert queue.waiting == 0

    run(main)


def test_queue_size_zero_answers_full_at_once() -> None:
    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 0, 60.0, asyncio.get_running_loop())
        assert await queue.acquire() is None
        assert await queue.acquire() == FULL
        queue.release()
        assert await queue.acquire() is None

    run(main)


def test_queue_timeout_gives_up_and_leaves_its_place() -> None:
    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 1, 0.05, asyncio.get_running_loop())
        assert await queue.acquire() is None
        assert await queue.acquire() == TIMED_OUT
        assert queue.waiting == 0
        assert limit.in_use == 1
        # Its place is free again: the next one may wait.
        queue.timeout = 60.0
        waiter = asyncio.ensure_future(queue.acquire())
        while queue.waiting < 1:
            await asyncio.sleep(0)
        queue.release()
        assert await waiter is None

    run(main)


def test_queue_retries_for_slots_freed_by_other_workers() -> None:
    async def main() -> None:
        shared = LocalLimit(1)  # stands in for the daemon-wide counter
        queue = WaitQueue(shared, 1, 60.0, asyncio.get_running_loop())
        assert shared.try_acquire()  # another worker holds the only slot
        waiter = asyncio.ensure_future(queue.acquire())
        while queue.waiting < 1:
            await asyncio.sleep(0)
        shared.release()  # ...and frees it: nobody tells this worker
        assert await waiter is None  # found by the retry (every RETRY_INTERVAL)
        assert shared.in_use == 1
        queue.release()
        assert queue._poll is None  # nobody waits: no more retries

    assert RETRY_INTERVAL <= 0.05
    run(main)


def test_a_cancelled_waiter_holds_no_slot() -> None:
    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 2, 60.0, asyncio.get_running_loop())
        assert await queue.acquire() is None
        gone = asyncio.ensure_future(queue.acquire())
        later = asyncio.ensure_future(queue.acquire())
        while queue.waiting < 2:
            await asyncio.sleep(0)
        # Granted and cancelled in the same pass: the slot goes on to the next waiter.
        queue.release()
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await later is None
        assert limit.in_use == 1
        queue.release()
        assert limit.in_use == 0

    run(main)


# -- the wrapper -----------------------------------------------------------------------------


class Sent:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def headers(self, index: int = 0) -> list[tuple[bytes, bytes]]:
        return list(self.messages[index]["headers"])


async def no_receive() -> Message:
    raise AssertionError("receive() was not expected")


def http_scope(client: str | None = "10.1.1.1", path: str = "/x") -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "client": (client, 4000) if client else None,
        "extensions": {},
    }


async def ok_app(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_wrap_returns_the_app_itself_when_every_feature_is_off() -> None:
    async def main() -> None:
        config = load_config(env={}, overrides={"app": "x:app"})
        assert wrap(ok_app, config, Collector()) is ok_app
        on = load_config(env={}, overrides={"app": "x:app", "http.server_timing": True})
        assert isinstance(wrap(ok_app, on, Collector()), Edge)

    run(main)


def test_rate_limited_request_gets_429_with_retry_after_and_is_counted(
    records: Records,
) -> None:
    clock = Clock()
    metrics = Collector()
    edge = Edge(ok_app, metrics, rate=RateLimiter(0.5, 1, 10, clock), log=records.logger)

    async def main() -> None:
        first, second, other, unix = Sent(), Sent(), Sent(), Sent()
        await edge(http_scope(), no_receive, first)
        await edge(http_scope(), no_receive, second)
        await edge(http_scope("10.2.2.2"), no_receive, other)
        for _ in range(3):  # no client address (Unix socket): not rate limited
            await edge(http_scope(None), no_receive, unix)
        assert first.messages[0]["status"] == 200
        assert other.messages[0]["status"] == 200
        assert [m["status"] for m in unix.messages if "status" in m] == [200] * 3
        start, body = second.messages
        assert start == {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(RATE_BODY)),
                (b"retry-after", b"2"),  # 2 s until the bucket has a token again
            ],
        }
        assert body == {"type": "http.response.body", "body": RATE_BODY}

    run(main)
    assert metrics.shed == {"rate_limit": 1}
    assert len(records.records) == 1
    assert "rate_limit" in records.records[0].getMessage()


def test_busy_request_gets_503_with_the_configured_retry_after(records: Records) -> None:
    metrics = Collector()

    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 0, 60.0, asyncio.get_running_loop())
        release = asyncio.Event()

        async def slow_app(scope: Scope, receive: Any, send: Any) -> None:
            await release.wait()
            await ok_app(scope, receive, send)

        edge = Edge(slow_app, metrics, queue=queue, retry_after=7, log=records.logger)
        held, busy = Sent(), Sent()
        running = asyncio.ensure_future(edge(http_scope(), no_receive, held))
        while limit.in_use < 1:
            await asyncio.sleep(0)
        await edge(http_scope(), no_receive, busy)
        assert busy.messages[0]["status"] == 503
        assert (b"retry-after", b"7") in busy.headers()
        assert busy.messages[1]["body"] == BUSY_BODY
        release.set()
        await running
        assert held.messages[0]["status"] == 200
        assert limit.in_use == 0  # released when the app returned

    run(main)
    assert metrics.shed == {"concurrency": 1}


def test_queue_timeout_gets_503_counted_as_queue_timeout() -> None:
    metrics = Collector()

    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 5, 0.05, asyncio.get_running_loop())
        edge = Edge(ok_app, metrics, queue=queue, retry_after=3)
        assert limit.try_acquire()  # held elsewhere for the whole test
        sent = Sent()
        await edge(http_scope(), no_receive, sent)
        assert sent.messages[0]["status"] == 503
        assert (b"retry-after", b"3") in sent.headers()

    run(main)
    assert metrics.shed == {"queue_timeout": 1}


def test_slot_is_released_when_the_app_fails_or_is_cancelled() -> None:
    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 0, 60.0, asyncio.get_running_loop())
        started = asyncio.Event()

        async def failing(scope: Scope, receive: Any, send: Any) -> None:
            raise RuntimeError("boom")

        async def hanging(scope: Scope, receive: Any, send: Any) -> None:
            started.set()
            await asyncio.Event().wait()

        with pytest.raises(RuntimeError):
            await Edge(failing, Collector(), queue=queue)(http_scope(), no_receive, Sent())
        assert limit.in_use == 0
        task = asyncio.ensure_future(
            Edge(hanging, Collector(), queue=queue)(http_scope(), no_receive, Sent())
        )
        await started.wait()
        assert limit.in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limit.in_use == 0

    run(main)


def test_websocket_is_denied_through_the_denial_response_extension() -> None:
    metrics = Collector()
    clock = Clock()

    async def ws_app(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def main() -> None:
        limit = LocalLimit(1)
        assert limit.try_acquire()
        queue = WaitQueue(limit, 0, 60.0, asyncio.get_running_loop())
        edge = Edge(ws_app, metrics, queue=queue, rate=RateLimiter(1, 1, 10, clock))
        scope = {"type": "websocket", "path": "/ws", "client": ("10.3.3.3", 1), "extensions": {}}
        busy, limited = Sent(), Sent()
        await edge(scope, no_receive, busy)  # has a token, but no slot
        await edge(scope, no_receive, limited)  # no token
        assert [m["type"] for m in busy.messages] == [
            "websocket.http.response.start",
            "websocket.http.response.body",
        ]
        assert busy.messages[0]["status"] == 503
        assert limited.messages[0]["status"] == 429
        assert (b"retry-after", b"1") in limited.headers()

    run(main)
    assert metrics.shed == {"concurrency": 1, "rate_limit": 1}


def test_lifespan_passes_straight_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def main() -> None:
        limit = LocalLimit(1)
        assert limit.try_acquire()  # no slot free: lifespan is not a request
        queue = WaitQueue(limit, 0, 60.0, asyncio.get_running_loop())
        edge = Edge(app, Collector(), queue=queue, rate=RateLimiter(1, 1, 1))
        await edge({"type": "lifespan"}, no_receive, Sent())

    run(main)
    assert seen == ["lifespan"]


def test_a_thousand_sheds_in_a_second_log_one_line(records: Records) -> None:
    clock = Clock()
    metrics = Collector()
    edge = Edge(ok_app, metrics, rate=RateLimiter(1, 1, 10, clock), log=records.logger)
    edge.shed_log = ThrottledLog(records.logger, clock=clock)

    async def main() -> None:
        for _ in range(1001):  # one served, then 1000 shed within the same second
            await edge(http_scope(), no_receive, Sent())
            clock.now += 0.0005
        clock.now += 1.0  # a second later, the next shed logs again, saying how many were left out
        await edge(http_scope("10.9.9.9"), no_receive, Sent())  # (a fresh client: served)
        await edge(http_scope("10.9.9.9"), no_receive, Sent())

    run(main)
    assert metrics.shed == {"rate_limit": 1001}
    messages = [r.getMessage() for r in records.records]
    assert len(messages) == 2, messages
    assert "999 more like this" in messages[1], messages


# -- Server-Timing and the slow-request log ---------------------------------------------------


def test_server_timing_is_added_as_its_own_line(records: Records) -> None:
    clock = Clock()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        clock.now += 0.0125
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"server-timing", b"db;dur=3")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    edge = Edge(app, Collector(), server_timing=True, clock=clock, log=records.logger)
    sent = Sent()
    run(lambda: edge(http_scope(), no_receive, sent))
    assert sent.headers() == [(b"server-timing", b"db;dur=3"), (b"server-timing", b"app;dur=12.5")]
    assert records.records == []  # no slow log: off


def test_server_timing_reports_the_queue_wait() -> None:
    clock = Clock()

    async def main() -> None:
        limit = LocalLimit(1)
        queue = WaitQueue(limit, 1, 60.0, asyncio.get_running_loop())
        edge = Edge(ok_app, Collector(), queue=queue, server_timing=True, clock=clock)
        assert await queue.acquire() is None
        sent = Sent()
        task = asyncio.ensure_future(edge(http_scope(), no_receive, sent))
        while queue.waiting < 1:
            await asyncio.sleep(0)
        clock.now += 0.25
        queue.release()
        await task
        assert (b"server-timing", b"queue;dur=250.0, app;dur=250.0") in sent.headers()

    run(main)


def test_slow_request_is_logged_once_with_its_fields(records: Records) -> None:
    clock = Clock()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        clock.now += 2.5
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        clock.now += 10  # work after the response does not count, nor log again

    edge = Edge(app, Collector(), slow_threshold=1.0, clock=clock, log=records.logger)
    scope = http_scope(path="/slow")
    scope["extensions"]["request_id"] = "abc123"
    sent = Sent()
    run(lambda: edge(scope, no_receive, sent))
    assert all(name != b"server-timing" for name, _ in sent.headers())  # timing is off
    assert len(records.records) == 1
    record = records.records[0]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for part in ("GET", "/slow", "201", "2.500s", "abc123"):
        assert part in message, message
    fields = record.__dict__
    assert (fields["method"], fields["path"], fields["status"]) == ("GET", "/slow", 201)
    assert fields["duration_ms"] == 2500.0
    assert fields["request_id"] == "abc123"


def test_fast_requests_are_not_logged_and_no_response_still_is(records: Records) -> None:
    clock = Clock()

    async def silent(scope: Scope, receive: Any, send: Any) -> None:
        clock.now += 3.0  # returns without a response (the server answers 500)

    fast = Edge(ok_app, Collector(), slow_threshold=1.0, clock=clock, log=records.logger)
    run(lambda: fast(http_scope(), no_receive, Sent()))
    assert records.records == []
    slow = Edge(silent, Collector(), slow_threshold=1.0, clock=clock, log=records.logger)
    run(lambda: slow(http_scope(), no_receive, Sent()))
    assert len(records.records) == 1
    message = records.records[0].getMessage()
    assert "-> - in 3.000s" in message and "request id -" in message, message
