"""The ASGI side of a WebSocket (``WebSocketCycle`` over ``HTTP11WebSocket``) against a
fake connection: message order, the bounded receive queue and send backpressure."""

from __future__ import annotations

import asyncio
from typing import Any

from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from pounce.asgi.websocket import QUEUE_HIGH_WATER, WebSocketCycle
from pounce.asgi.ws_http11 import HTTP11WebSocket
from pounce.protocols import http11
from pounce.protocols.websocket import check_upgrade


class FakeSink:
    def __init__(self) -> None:
        self.out = b""
        self.paused = False
        self.finished = False
        self.writable = asyncio.Event()
        self.writable.set()

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        await self.writable.wait()

    def finish(self) -> None:
        self.finished = True

    def hang_up(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.finished = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def date_header(self) -> bytes:
        return b"Thu, 01 Jan 2026 00:00:00 GMT"


def make_cycle() -> tuple[WebSocketCycle, FakeSink]:
    headers = [
        (b"host", b"x"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ]
    request = http11.Request(b"GET", b"/", "1.1", headers, True, False, None, False)
    sink = FakeSink()
    scope: dict[str, Any] = {"type": "websocket", "path": "/", "query_string": b""}
    handshake = check_upgrade(request)
    cycle = WebSocketCycle(
        HTTP11WebSocket(sink, handshake),
        scope,
        handshake.extension_offers,
        max_message_size=1 << 20,
        per_message_deflate=False,
        access_log=False,
    )
    return cycle, sink


def test_queue_is_bounded_and_send_waits_for_drain() -> None:
    async def main() -> None:
        cycle, sink = make_cycle()
        assert await cycle.receive() == {"type": "websocket.connect"}
        await cycle.send({"type": "websocket.accept"})
        assert sink.out.startswith(b"HTTP/1.1 101 ")
        client = Connection(ConnectionType.CLIENT)
        for i in range(QUEUE_HIGH_WATER):
            cycle.data_received(client.send(TextMessage(f"m{i}")))
        assert sink.paused  # the app is slow: stop reading the socket
        for i in range(QUEUE_HIGH_WATER):
            assert await cycle.receive() == {"type": "websocket.receive", "text": f"m{i}"}
        assert not sink.paused
        sink.writable.clear()  # the transport is paused: send() waits
        sending = asyncio.ensure_future(cycle.send({"type": "websocket.send", "text": "x"}))
        await asyncio.sleep(0)
        assert not sending.done()
        sink.writable.set()
        await asyncio.wait_for(sending, 5)
        cycle.data_received(client.send(CloseConnection(1000)))
        assert await cycle.receive() == {
            "type": "websocket.disconnect",
            "code": 1000,
            "reason": "",
        }
        assert sink.finished

    asyncio.run(main())


def test_close_before_accept_is_403() -> None:
    async def main() -> None:
        cycle, sink = make_cycle()
        await cycle.receive()
        await cycle.send({"type": "websocket.close"})
        assert sink.out.startswith(b"HTTP/1.1 403 ")
        assert sink.finished

    asyncio.run(main())


def test_drain_before_accept_closes_right_after_accept() -> None:
    async def main() -> None:
        cycle, sink = make_cycle()
        await cycle.receive()
        cycle.close(1001, "going away")  # the worker drains while the app decides
        assert sink.out == b""
        await cycle.send({"type": "websocket.accept"})
        head, _, frames = sink.out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        client = Connection(ConnectionType.CLIENT)
        client.receive_data(frames)
        (close,) = client.events()
        assert isinstance(close, CloseConnection) and close.code == 1001
        message = await cycle.receive()
        assert (message["type"], message["code"]) == ("websocket.disconnect", 1001)

    asyncio.run(main())
