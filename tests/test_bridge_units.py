"""Fast unit tests (no sockets, no processes) of the HTTP bridge.

``HTTPConnection`` is driven over a fake transport (``helpers.fakes``) on a real event
loop made by ``asyncio.run``, with the worker context built as ``benchmarks/hotpath.py``
builds it; ``HTTPCycle`` / ``Exchange`` are also driven directly over a fake sink.
Every connection test runs on both request parsers (``http.parser`` fast and h11).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers.fakes import Bridge, FakeSink, settle, split_responses, wait_until
from helpers.fakes import run_loop as run
from pounce.asgi.exchange import ASGIProtocolError
from pounce.asgi.http import BODY_HIGH_WATER, HTTPCycle
from pounce.types import Message, Receive, Scope, Send

PARSERS = pytest.mark.parametrize("parser", ["fast", "h11"])

GET = b"GET /hello HTTP/1.1\r\nHost: example\r\n\r\n"


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- HTTPConnection over a fake transport ------------------------------------------------


@PARSERS
def test_get_is_answered(parser: str) -> None:
    async def main() -> None:
        b = Bridge(hello, **{"http.parser": parser})
        b.feed(GET)
        data = await b.response()
        [(status, headers, body)] = split_responses(data)
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"content-type"] == b"text/plain"
        assert headers[b"content-length"] == b"6"
        assert headers[b"server"] == b"pounce"
        assert b"date" in headers
        assert body == b"/hello"
        assert not b.transport.closed  # keep-alive by default in HTTP/1.1

    run(main)


@PARSERS
def test_keep_alive_then_second_request(parser: str) -> None:
    async def main() -> None:
        b = Bridge(hello, **{"http.parser": parser})
        b.feed(GET)
        await b.response(1)
        b.feed(b"GET /second HTTP/1.1\r\nHost: example\r\n\r\n")
        data = await b.response(2)
        bodies = [body for _, _, body in split_responses(data)]
        assert bodies == [b"/hello", b"/second"]
        assert b.conn.requests == 2
        assert not b.transport.closed

    run(main)


@PARSERS
def test_connection_close_request_closes_after_response(parser: str) -> None:
    async def main() -> None:
        b = Bridge(hello, **{"http.parser": parser})
        b.feed(b"GET /bye HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
        await b.closed()
        [(status, headers, body)] = split_responses(b.transport.data)
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"connection"] == b"close"
        assert body == b"/bye"

    run(main)


@PARSERS
def test_pipelined_pair_in_one_read(parser: str) -> None:
    async def main() -> None:
        b = Bridge(hello, **{"http.parser": parser})
        b.feed(
            b"GET /one HTTP/1.1\r\nHost: example\r\n\r\nGET /two HTTP/1.1\r\nHost: example\r\n\r\n"
        )
        data = await b.response(2)
        assert [body for _, _, body in split_responses(data)] == [b"/one", b"/two"]
        assert not b.transport.closed

    run(main)


@PARSERS
def test_request_body_arrives_in_pieces(parser: str) -> None:
    async def main() -> None:
        messages: list[Message] = []

        async def echo(scope: Scope, receive: Receive, send: Send) -> None:
            body = b""
            while True:
                message = await receive()
                messages.append(message)
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})

        b = Bridge(echo, **{"http.parser": parser})
        b.feed(b"POST /up HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\n\r\nhello")
        await wait_until(lambda: len(messages) == 1, "first body piece")
        assert messages[0] == {"type": "http.request", "body": b"hello", "more_body": True}
        b.feed(b" ")
        await wait_until(lambda: len(messages) == 2, "second body piece")
        assert messages[1] == {"type": "http.request", "body": b" ", "more_body": True}
        b.feed(b"world")
        data = await b.response()
        assert messages[2] == {"type": "http.request", "body": b"world", "more_body": False}
        [(status, _, body)] = split_responses(data)
        assert status == b"HTTP/1.1 200 OK"
        assert body == b"hello world"

    run(main)


@PARSERS
def test_chunked_request_body(parser: str) -> None:
    async def main() -> None:
        got: list[bytes] = []

        async def collect(scope: Scope, receive: Receive, send: Send) -> None:
            while True:
                message = await receive()
                got.append(message["body"])
                if not message["more_body"]:
                    break
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body"})

        b = Bridge(collect, **{"http.parser": parser})
        b.feed(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        await wait_until(lambda: b"HTTP/1.1 204" in b.transport.data, "204")
        assert b"".join(got) == b"abcde"

    run(main)


@PARSERS
@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n"],
    ids=["request-line", "header-line"],
)
def test_malformed_request_gets_400_and_close(parser: str, request_bytes: bytes) -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    async def main() -> None:
        b = Bridge(app, **{"http.parser": parser})
        b.feed(request_bytes)
        await b.closed()
        [(status, headers, body)] = split_responses(b.transport.data)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert headers[b"connection"] == b"close"
        assert headers[b"content-type"] == b"text/plain; charset=utf-8"
        assert body.endswith(b"\n")
        assert not b.transport.aborted
        assert called == []

    run(main)


@PARSERS
def test_app_exception_is_a_500_and_close(parser: str) -> None:
    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the app broke")

    async def main() -> None:
        b = Bridge(boom, **{"http.parser": parser})
        b.feed(GET)
        await b.closed()
        [(status, headers, body)] = split_responses(b.transport.data)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert headers[b"connection"] == b"close"
        assert body == b"Internal Server Error\n"  # a fixed text, not the exception's
        assert b.state.tasks == set()

    run(main)


@PARSERS
def test_app_exception_after_head_aborts(parser: str) -> None:
    async def half(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
        )
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise RuntimeError("half way")

    async def main() -> None:
        b = Bridge(half, **{"http.parser": parser})
        b.feed(GET)
        await wait_until(lambda: b.transport.aborted, "abort")
        assert b.transport.data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b.transport.data.endswith(b"\r\n\r\n12345")
        assert b"500" not in b.transport.data

    run(main)


@PARSERS
def test_client_disconnect_gives_http_disconnect(parser: str) -> None:
    async def main() -> None:
        received: list[Message] = []
        finished = asyncio.Event()

        async def waiter(scope: Scope, receive: Receive, send: Send) -> None:
            received.append(await receive())  # the body is not all here: waits
            finished.set()

        b = Bridge(waiter, **{"http.parser": parser})
        b.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        await wait_until(lambda: b.conn.cycle is not None and b.conn.cycle._waiter is not None)
        assert received == []
        b.lose(ConnectionResetError())
        await wait_until(finished.is_set, "the app returned")
        assert received == [{"type": "http.disconnect"}]
        assert b.transport.data == b""  # nothing is written to a gone client
        assert b.conn not in b.state.connections

    run(main)


@PARSERS
def test_large_unread_body_pauses_reading(parser: str) -> None:
    size = 2 * BODY_HIGH_WATER

    async def main() -> None:
        read_now = asyncio.Event()
        total = 0

        async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal total
            await read_now.wait()
            while True:
                message = await receive()
                total += len(message["body"])
                if not message["more_body"]:
                    break
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body"})

        b = Bridge(slow_reader, **{"http.parser": parser})
        b.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        b.feed(b"a" * (BODY_HIGH_WATER + 1))
        await wait_until(lambda: not b.transport.reading, "pause_reading")
        assert b.transport.pauses == 1
        await settle()
        assert not b.transport.reading  # stays paused while the app does not read
        read_now.set()
        await wait_until(lambda: b.transport.reading, "resume_reading")
        b.feed(b"a" * (size - BODY_HIGH_WATER - 1))
        await wait_until(lambda: b"HTTP/1.1 204" in b.transport.data, "204")
        assert total == size
        assert b.transport.resumes >= 1

    run(main)


@PARSERS
def test_write_backpressure_makes_send_wait(parser: str) -> None:
    async def main() -> None:
        sent: list[int] = []

        async def streamer(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
                sent.append(i)
            await send({"type": "http.response.body", "body": b""})

        b = Bridge(streamer, **{"http.parser": parser})
        b.conn.pause_writing()  # the transport's buffer is full
        b.feed(GET)
        await wait_until(lambda: b.conn.cycle is not None and b.conn.cycle.response_started)
        await settle()
        assert sent == []  # the first send() with more_body waits for the transport
        b.conn.resume_writing()
        await wait_until(lambda: b"0\r\n\r\n" in b.transport.data, "last chunk")
        assert sent == [0, 1, 2]
        assert b"transfer-encoding: chunked" in b.transport.data
        assert b.conn._write_timer is None

    run(main)


# -- HTTPCycle / Exchange over a fake sink -------------------------------------------


def _cycle(sink: FakeSink, *, keep_alive: bool = True, expect_continue: bool = False) -> HTTPCycle:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "http_version": "1.1"}
    return HTTPCycle(sink, scope, keep_alive, expect_continue, False)


def test_cycle_receive_joins_fed_pieces_then_disconnect() -> None:
    async def main() -> None:
        sink = FakeSink()
        cycle = _cycle(sink)
        cycle.feed_body(b"ab")
        cycle.feed_body(b"cd")
        assert cycle.buffered == 4
        assert await cycle.receive() == {"type": "http.request", "body": b"abcd", "more_body": True}
        assert sink.resumes == 1  # the body was taken: the connection may read on
        later = asyncio.ensure_future(cycle.receive())
        await settle(5)
        assert not later.done()
        cycle.feed_body(b"e")
        cycle.end_body()
        assert await later == {"type": "http.request", "body": b"e", "more_body": False}
        cycle.disconnect()
        assert await cycle.receive() == {"type": "http.disconnect"}

    run(main)


def test_cycle_expect_continue_sent_once_when_app_waits() -> None:
    async def main() -> None:
        sink = FakeSink()
        cycle = _cycle(sink, expect_continue=True)
        pending = asyncio.ensure_future(cycle.receive())
        await settle(5)
        assert sink.data == b"HTTP/1.1 100 Continue\r\n\r\n"
        cycle.feed_body(b"x")
        cycle.end_body()
        assert (await pending)["body"] == b"x"
        assert sink.data.count(b"100 Continue") == 1

    run(main)


def test_cycle_send_frames_response_and_ends_it() -> None:
    async def main() -> None:
        sink = FakeSink()
        cycle = _cycle(sink)
        cycle.end_body()
        await cycle.send(
            {"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]}
        )
        assert sink.data == b""  # the head waits for the first body bytes
        await cycle.send({"type": "http.response.body", "body": b"done"})
        [(status, headers, body)] = split_responses(sink.data)
        assert status == b"HTTP/1.1 201 Created"
        assert headers[b"x-a"] == b"1"
        assert headers[b"content-length"] == b"4"
        assert body == b"done"
        assert sink.done == [True]
        assert cycle.response_complete

    run(main)


def test_cycle_rejects_body_before_start() -> None:
    async def main() -> None:
        cycle = _cycle(FakeSink())
        with pytest.raises(ASGIProtocolError):
            await cycle.send({"type": "http.response.body", "body": b"x"})

    run(main)


def test_cycle_run_turns_an_app_error_into_500() -> None:
    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("no")

    async def main() -> None:
        sink = FakeSink()
        cycle = _cycle(sink)
        await cycle.run(boom)
        [(status, headers, body)] = split_responses(sink.data)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert headers[b"connection"] == b"close"
        assert body == b"Internal Server Error\n"
        assert sink.done == [False]
        assert cycle.keep_alive is False

    run(main)


def test_cycle_send_waits_on_drain() -> None:
    async def main() -> None:
        sink = FakeSink()
        sink.writable.clear()
        cycle = _cycle(sink)
        await cycle.send({"type": "http.response.start", "status": 200, "headers": []})
        sending = asyncio.ensure_future(
            cycle.send({"type": "http.response.body", "body": b"x", "more_body": True})
        )
        await settle(5)
        assert not sending.done()
        assert sink.data.startswith(b"HTTP/1.1 200 OK\r\n")  # written, then waiting
        sink.writable.set()
        await asyncio.wait_for(sending, 5)

    run(main)
