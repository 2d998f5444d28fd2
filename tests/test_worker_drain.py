"""A draining worker waits on events, not polls: the last connection to go sets an
Event, the last request's task wakes it, and connections accepted just before the
close are awaited until they are set up.  Deterministic: counted loop iterations."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from pounce.metrics import Collector
from pounce.worker.accept import Acceptor
from pounce.worker.server import WatchedConnections, Worker

WAIT = 10.0


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_the_watched_set_calls_back_when_the_last_connection_goes() -> None:
    emptied: list[int] = []
    a, b = object(), object()
    conns = WatchedConnections({a, b}, lambda: emptied.append(len(conns)))  # type: ignore[arg-type]
    conns.discard(a)
    assert emptied == []
    conns.remove(b)  # type: ignore[arg-type]
    assert emptied == [0]
    conns.discard(b)  # (already gone: discarding again says so again, harmlessly)
    assert emptied == [0, 0]


def _draining(connections: set[Any], tasks: set[asyncio.Task[None]]) -> tuple[Any, asyncio.Event]:
    empty = asyncio.Event()
    state = SimpleNamespace(connections=WatchedConnections(connections, empty.set), tasks=tasks)
    return state, empty


def test_the_drain_wakes_when_the_last_connection_goes() -> None:
    async def main() -> None:
        conn = object()
        state, empty = _draining({conn}, set())
        waiting = asyncio.ensure_future(
            Worker._until_empty(SimpleNamespace(_servers=[]), state, empty)  # type: ignore[arg-type]
        )
        await turns()
        assert not waiting.done()
        state.connections.discard(conn)  # as connection_lost does
        await turns()
        assert waiting.done()  # a few loop turns: no 10-50 ms poll in between
        await waiting

    asyncio.run(main())


def test_the_drain_waits_for_a_request_that_outlives_its_connection() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        task = asyncio.ensure_future(gate.wait())
        state, empty = _draining(set(), {task})
        waiting = asyncio.ensure_future(
            Worker._until_empty(SimpleNamespace(_servers=[]), state, empty)  # type: ignore[arg-type]
        )
        await turns()
        assert not waiting.done()
        gate.set()
        await turns()
        assert waiting.done()
        await waiting

    asyncio.run(main())


def test_the_drain_waits_for_the_connections_before_the_requests_end() -> None:
    async def main() -> None:
        conn = object()
        gate = asyncio.Event()
        task = asyncio.ensure_future(gate.wait())
        state, empty = _draining({conn}, {task})
        waiting = asyncio.ensure_future(
            Worker._until_empty(SimpleNamespace(_servers=[]), state, empty)  # type: ignore[arg-type]
        )
        gate.set()
        await turns()
        assert not waiting.done()  # the request is done, its connection still open
        state.connections.discard(conn)
        await turns()
        assert waiting.done()
        await waiting

    asyncio.run(main())


class Counted(asyncio.Protocol):
    made: list[asyncio.BaseTransport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counted.made.append(transport)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_settled_returns_once_every_accepted_connection_is_made(loop_kind: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]

    async def main() -> int:
        Counted.made = []
        acceptor = Acceptor(
            asyncio.get_running_loop(), listener, Counted, None, 16, Collector(), []
        )
        acceptor.sock.setblocking(False)
        acceptor._accept()  # one readiness event: all three accepted, not yet made
        acceptor.close()
        await asyncio.wait_for(acceptor.settled(), WAIT)
        made = len(Counted.made)
        for transport in Counted.made:
            transport.close()
        return made

    try:
        runner = asyncio.run if loop_kind == "asyncio" else uvloop.run
        assert runner(main()) == 3
    finally:
        for client in clients:
            client.close()
        listener.close()
