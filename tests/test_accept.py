"""The accept loop's share of a burst: one connection per wake-up when workers share a socket.

Deterministic unit tests on real sockets: N clients are queued on a listening socket,
then the acceptor's readiness callback runs once, as the event loop would run it.
Two real workers sharing a socket are measured by ``benchmarks/spread.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
import uvloop

from pounce.metrics import Collector
from pounce.worker.accept import Acceptor

QUEUED = 10


class Counted(asyncio.Protocol):
    made: list[asyncio.BaseTransport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counted.made.append(transport)


@pytest.fixture
def queued() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(QUEUED)]
    try:
        yield listener, clients
    finally:
        for client in clients:
            client.close()
        listener.close()


@pytest.mark.parametrize("per_wakeup, accepted", [(1, 1), (0, QUEUED)])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_one_wakeup_accepts_per_wakeup_connections(
    queued: tuple[socket.socket, list[socket.socket]],
    per_wakeup: int,
    accepted: int,
    loop_kind: str,
) -> None:
    listener, _ = queued

    async def main() -> int:
        loop = asyncio.get_running_loop()
        Counted.made = []
        acceptor = Acceptor(
            loop, listener, Counted, None, 64, Collector(), [], per_wakeup=per_wakeup
        )
        acceptor.sock.setblocking(False)
        acceptor._accept()  # one readiness event
        for _ in range(20):  # let the accepted connections be set up
            await asyncio.sleep(0)
        made = len(Counted.made)
        for transport in Counted.made:
            transport.close()
        return made

    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    assert runner(main()) == accepted


def test_the_rest_are_accepted_on_the_next_wakeups(
    queued: tuple[socket.socket, list[socket.socket]],
) -> None:
    listener, _ = queued

    async def main() -> int:
        loop = asyncio.get_running_loop()
        Counted.made = []
        acceptor = Acceptor(loop, listener, Counted, None, 64, Collector(), [], per_wakeup=1)
        acceptor.start()
        try:
            for _ in range(200):
                if len(Counted.made) == QUEUED:
                    break
                await asyncio.sleep(0.01)
        finally:
            acceptor.close()
        for transport in Counted.made:
            transport.close()
        return len(Counted.made)

    assert asyncio.run(main()) == QUEUED
