"""Fakes for the fast unit layer of the HTTP bridge: no sockets, no processes.

:class:`FakeTransport` stands in for an asyncio transport and records what the
connection does to it; :class:`Bridge` builds the per-worker context the way
``benchmarks/hotpath.py`` does (``load_config`` + ``ServerState`` on the running
loop) and drives one :class:`~pounce.worker.connection.HTTPConnection` over a fake
transport; :class:`FakeSink` is the connection side of an
:class:`~pounce.asgi.http.HTTPCycle` built directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pounce.config import load_config
from pounce.types import ASGIApp
from pounce.worker.connection import HTTPConnection
from pounce.worker.context import ServerState

# Every wait of this layer is bounded: in loop passes, and in wall-clock seconds.
MAX_PASSES = 10_000
WAIT_SECONDS = 5.0


class FakeTransport(asyncio.Transport):
    """Records write()/close()/abort() and the reading state; never touches a socket."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.pauses = 0
        self.resumes = 0
        self.extra: dict[str, Any] = {
            "peername": ("127.0.0.1", 5555),
            "sockname": ("127.0.0.1", 8000),
        }
        if extra:
            self.extra.update(extra)

    @property
    def data(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.chunks)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.chunks.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True
        self.resumes += 1

    def is_reading(self) -> bool:
        return self.reading

    # (a protocol switch and a half close: the refusal of a connection over the limit)
    protocol: asyncio.BaseProtocol | None = None
    eof_written = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True


# The Bridges made in the current run_loop() call: closed when it ends.
_live: list[Bridge] = []


def run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on a new event loop; then close its connections, as a worker would.

    (A connection left open keeps its runner Task parked: ``asyncio.run`` could not
    end it, so a failing test would hang instead of failing.)
    """

    async def guarded() -> None:
        try:
            await main()
        finally:
            live = _live[:]
            _live.clear()
            for bridge in live:
                bridge.close()
            await settle()

    asyncio.run(guarded())


async def wait_until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Let the loop run until ``predicate()`` holds (bounded in passes and in time)."""
    async with asyncio.timeout(WAIT_SECONDS):
        for _ in range(MAX_PASSES):
            if predicate():
                return
            await asyncio.sleep(0)
    raise AssertionError(f"{what}: still false after {MAX_PASSES} loop passes")


async def settle(passes: int = 50) -> None:
    """Let the loop run a few passes (to show that something does *not* happen)."""
    for _ in range(passes):
        await asyncio.sleep(0)


class Bridge:
    """One HTTPConnection over a FakeTransport, with the worker context of hotpath.py.

    Create it inside a running loop (``asyncio.run``): ``ServerState`` takes it.
    """

    def __init__(self, app: ASGIApp, **overrides: Any) -> None:
        config = load_config(None, env={}, overrides={"logging.access_log": False, **overrides})
        self.loop = asyncio.get_running_loop()
        self.state = ServerState(config, app, self.loop)
        self.conn = HTTPConnection(self.state, None)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)
        _live.append(self)

    def close(self) -> None:
        """End the connection now if it is still open (the test is over)."""
        if self.conn in self.state.connections:
            self.transport.closed = True
            self.conn.connection_lost(None)

    def feed(self, data: bytes) -> None:
        """Deliver ``data`` from a loop callback, as a transport calls data_received."""
        self.loop.call_soon(self.conn.data_received, data)

    def lose(self, exc: Exception | None = None) -> None:
        """The client went away: connection_lost from a loop callback."""
        self.loop.call_soon(self.conn.connection_lost, exc)

    async def response(self, count: int = 1) -> bytes:
        """Wait until ``count`` complete responses (framed by content-length) were written."""
        await wait_until(lambda: len(split_responses(self.transport.data)) >= count, "responses")
        return self.transport.data

    async def closed(self) -> None:
        await wait_until(lambda: self.transport.closed, "transport closed")


def split_responses(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Complete ``content-length`` framed responses in ``data``: (status line, headers, body)."""
    out: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    rest = data
    while b"\r\n\r\n" in rest:
        head, _, after = rest.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if status.split(b" ")[1].startswith(b"1"):  # an interim response: no body
            rest = after
            continue
        length = int(headers.get(b"content-length", b"-1"))
        if length < 0 or len(after) < length:
            break
        out.append((status, headers, after[:length]))
        rest = after[length:]
    return out


class FakeSink:
    """The connection side of an HTTPCycle: records writes, flow-control calls and the end."""

    id_field = b"x-request-id: "

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: list[bool] = []  # keep_alive of each response_done call
        self.aborted = False
        self.resumes = 0
        self.body_pending = False
        self.writable = asyncio.Event()
        self.writable.set()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    async def drain(self) -> None:
        await self.writable.wait()

    def response_done(self, keep_alive: bool) -> None:
        self.done.append(keep_alive)

    def abort(self) -> None:
        self.aborted = True

    def resume_reading(self) -> None:
        self.resumes += 1

    @property
    def request_body_pending(self) -> bool:
        return self.body_pending

    def date_header(self) -> bytes:
        return b"Thu, 01 Jan 2026 00:00:00 GMT"

    def default_lines(self, lines: list[bytes] | None = None, id_line: bytes = b"", /) -> bytes:
        return b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\nserver: pounce\r\n" + id_line
