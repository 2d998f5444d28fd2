"""The ASGI side of an HTTP/2 stream, against a recording sink (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from pounce.asgi.h2stream import H2Stream
from pounce.protocols.http2 import INTERNAL_ERROR


class Sink:
    def __init__(self) -> None:
        self.out: list[tuple[Any, ...]] = []

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        self.out.append(("headers", dict(headers), end))

    async def send_data(self, stream_id: int, data: bytes, end: bool) -> bool:
        self.out.append(("data", data, end))
        return True

    def reset_stream(self, stream_id: int, code: int) -> None:
        self.out.append(("reset", code))

    def consumed(self, stream_id: int, nbytes: int) -> None:
        self.out.append(("consumed", nbytes))

    def stream_done(self, stream_id: int) -> None:
        self.out.append(("done",))

    def date_header(self) -> bytes:
        return b"Thu, 01 Jan 1970 00:00:00 GMT"


def _scope(method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "http_version": "2",
        "headers": [],
        "client": None,
    }


def _run(app: Any, method: str = "GET", body: list[bytes] | None = None) -> list[tuple[Any, ...]]:
    sink = Sink()
    stream = H2Stream(sink, 1, _scope(method), access_log=False, metrics=None)
    for part in body or []:
        stream.feed_body(part, len(part))
    stream.end_body()
    asyncio.run(stream.run(app))
    return sink.out


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    headers = [(b"X-Test", b"1"), (b"Connection", b"close")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": message["body"]})


def test_body_is_read_and_acknowledged_and_answered() -> None:
    out = _run(_ok, "POST", [b"ab", b"cd"])
    assert out[0] == ("consumed", 4)
    kind, headers, end = out[1]
    assert kind == "headers" and not end
    assert headers[b":status"] == b"200"
    assert headers[b"x-test"] == b"1"  # lower-cased
    assert b"connection" not in headers  # connection-specific: dropped
    assert headers[b"content-length"] == b"4"
    assert out[2:] == [("data", b"abcd", True), ("done",)]


def test_empty_body_ends_with_the_headers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    out = _run(app)
    assert out[0][0] == "headers" and out[0][2] is True
    assert out[1:] == [("done",)]


def test_head_sends_no_body() -> None:
    out = _run(_ok, "HEAD", [b"xyz"])
    assert [o for o in out if o[0] == "data"] == []
    assert out[-2][0] == "headers" and out[-2][2] is True


def test_failure_before_start_is_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    out = _run(app)
    assert out[0][1][b":status"] == b"500"
    assert out[1] == ("data", b"Internal Server Error", True)
    assert out[-1] == ("done",)


def test_failure_after_the_head_resets_the_stream() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("late")

    out = _run(app)
    assert ("reset", INTERNAL_ERROR) in out
    assert out[-1] == ("done",)


def test_trailers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        await send({"type": "http.response.trailers", "headers": [(b"X-Sum", b"1")]})

    out = _run(app)
    assert b"content-length" not in out[0][1]
    assert out[1] == ("data", b"abc", False)
    assert out[2] == ("headers", {b"x-sum": b"1"}, True)
    assert out[3] == ("done",)


def test_disconnect_after_the_whole_body_waits_for_the_response() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
        seen.append((await receive())["type"])

    _run(app, "POST", [b"x"])
    assert seen == ["http.request", "http.disconnect"]


def test_app_running_on_after_a_reset_is_cancelled_after_the_disconnect_grace() -> None:
    """http.disconnect_grace: the stream's app gets http.disconnect, ignores it, and is
    cancelled once the grace is over (and counted)."""
    from pounce.metrics import Collector

    events: list[str] = []

    async def hang(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> Collector:
        metrics = Collector()
        tasks: set[asyncio.Task[None]] = set()
        stream = H2Stream(
            Sink(), 1, _scope(), access_log=False, metrics=metrics, tasks=tasks,
            disconnect_grace=0.05,
        )  # fmt: skip
        stream.end_body()
        task = asyncio.get_running_loop().create_task(stream.run(hang))
        tasks.add(task)
        await asyncio.sleep(0)  # the app starts and waits
        stream.disconnect()  # e.g. RST_STREAM from the client
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        assert not tasks  # no longer in flight
        return metrics

    metrics = asyncio.run(main())
    assert events == ["cancelled"]
    assert metrics.apps_cancelled == 1


def test_app_that_returns_within_the_disconnect_grace_is_not_cancelled() -> None:
    from pounce.metrics import Collector

    async def polite(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def main() -> Collector:
        metrics = Collector()
        stream = H2Stream(
            Sink(), 1, _scope(), access_log=False, metrics=metrics, disconnect_grace=0.0
        )
        stream.end_body()
        task = asyncio.get_running_loop().create_task(stream.run(polite))
        await asyncio.sleep(0)
        stream.disconnect()
        await asyncio.wait_for(task, 10)
        for _ in range(3):  # loop iterations: the grace timer (0 s) has run, found it done
            await asyncio.sleep(0)
        return metrics

    assert asyncio.run(main()).apps_cancelled == 0
