"""The daemon-wide counters of ``[limits]`` (worker/shared.py): exact admission across
real processes sharing the table by an inherited fd, and across threads; release;
a dead worker's slot zeroed; slots handed out without collisions; the connection set
that counts each transport once across protocol switches."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from helpers.slots import SlotProcess
from pounce.config import Config
from pounce.config.model import LimitsConfig
from pounce.supervisor.workers import ExitReason, ProcessWorker
from pounce.worker.context import CountedConnections, ServerState
from pounce.worker.shared import CONNECTIONS, REQUESTS, SlotTable, WorkerSlot, table_size


@pytest.fixture
def table() -> SlotTable:
    return SlotTable.create(4)


def test_two_processes_never_exceed_the_limit_together(table: SlotTable) -> None:
    a_slot, b_slot = table.claim(), table.claim()
    assert a_slot is not None and b_slot is not None and a_slot != b_slot
    a = SlotProcess(table.fileno(), a_slot, 5000)
    b = SlotProcess(table.fileno(), b_slot, 5000)
    try:
        # Both race for 10,000 places each against a limit of 5,000 in all.
        a.send("acquire 10000")
        b.send("acquire 10000")
        got_a, got_b = int(a.answer()), int(b.answer())
        print(f"admitted: {got_a} in process A, {got_b} in process B")
        assert got_a + got_b == 5000
        assert table.value(a_slot, CONNECTIONS) == got_a
        assert table.value(b_slot, CONNECTIONS) == got_b
        # Full: nobody gets one more.
        assert a.ask("acquire 1") == "0" and b.ask("acquire 1") == "0"
        # A gives 3 back: exactly 3 more are admitted, in either process.
        assert a.ask("release 3") == "ok"
        assert int(b.ask("acquire 5")) == 3
        assert int(a.ask("held")) == got_a - 3
        assert int(b.ask("held")) == got_b + 3
    finally:
        a.close()
        b.close()


def test_a_killed_workers_slot_is_zeroed_and_reused(table: SlotTable) -> None:
    a_slot, b_slot = table.claim(), table.claim()
    assert a_slot is not None and b_slot is not None
    a = SlotProcess(table.fileno(), a_slot, 10)
    b = SlotProcess(table.fileno(), b_slot, 10)
    try:
        assert a.ask("acquire 4") == "4"
        assert b.ask("acquire 10") == "6"
        b.kill()  # it never released its 6
        assert table.total(CONNECTIONS) == 10
        table.free(b_slot)  # what the supervisor does when a worker exits
        assert table.total(CONNECTIONS) == 4
        reused = table.claim()
        assert reused == b_slot  # handed out again, from zero
        c = SlotProcess(table.fileno(), b_slot, 10)
        try:
            assert c.ask("held") == "0"
            assert c.ask("acquire 10") == "6"
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_threads_of_one_process_never_exceed_the_limit(table: SlotTable) -> None:
    limits = [table.limit(slot, REQUESTS, 300) for slot in range(4)]
    got = [0] * 4
    start = threading.Barrier(4)

    def run(i: int) -> None:
        start.wait(10)
        got[i] = sum(limits[i].try_acquire() for _ in range(1000))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    print("admitted per thread:", got)
    assert sum(got) == 300 == table.total(REQUESTS)
    assert [limit.held for limit in limits] == got
    assert table.total(CONNECTIONS) == 0  # columns are independent


def test_release_never_goes_below_zero_and_columns_are_separate(table: SlotTable) -> None:
    slot = WorkerSlot(table, 0)
    connections, requests = slot.limits(2, 1)
    assert connections is not None and requests is not None
    assert requests.try_acquire() and not requests.try_acquire()
    assert connections.try_acquire() and connections.try_acquire()
    assert not connections.try_acquire()
    requests.release()
    requests.release()  # one too many: no negative count that would admit more
    assert requests.held == 0 and requests.total() == 0
    assert connections.total() == 2
    assert slot.limits(0, 0) == (None, None)


def test_slots_are_handed_out_once_until_freed() -> None:
    table = SlotTable.create(3)
    slots = [table.claim() for _ in range(3)]
    assert sorted(s for s in slots if s is not None) == [0, 1, 2]
    assert table.claim() is None  # full
    table.free(1)
    assert table.claim() == 1
    assert table_size(8) >= 2 * 8  # two generations at workers.max fit


def _handle(config: Config) -> ProcessWorker:
    return ProcessWorker(1, 1, config, lambda *_: None, lambda *_: None)


def test_a_worker_with_no_free_slot_is_not_started_uncounted() -> None:
    config = Config(app="x:app", limits=LimitsConfig(max_connections=5))
    handle = _handle(config)
    handle.counters = SlotTable.create(1)
    handle.slot = None  # the table was full
    asyncio.run(handle.start([], 1))
    assert handle.reason is ExitReason.SPAWN_FAILURE
    assert "no free slot" in handle.exit_text()


class _Conn:
    """A protocol on a transport, as the set sees it."""

    def __init__(self, transport: object) -> None:
        self.transport = transport

    def shutdown(self, idle_grace: float = 0.0) -> None: ...
    def abort(self) -> None: ...


def test_the_counted_set_counts_a_transport_once_across_protocol_switches() -> None:
    limit = SlotTable.local().limit(0, CONNECTIONS, 2)
    conns = CountedConnections(limit)
    emptied: list[bool] = []
    t1, t2 = object(), object()
    assert limit.try_acquire() and limit.try_acquire()  # two admitted connections
    http1, other = _Conn(t1), _Conn(t2)
    conns.add(http1)
    conns.add(other)
    # HTTP/1.1 -> WebSocket: the new protocol joins before the old one leaves.
    ws = _Conn(t1)
    conns.add(ws)
    conns.discard(http1)
    assert limit.held == 2 and len(conns) == 2
    conns.discard(http1)  # twice: nothing more
    assert limit.held == 2
    conns.on_empty = lambda: emptied.append(True)
    conns.discard(ws)  # the WebSocket's transport closes
    assert limit.held == 1 and not emptied
    conns.remove(other)
    assert limit.held == 0 and emptied == [True]
    with pytest.raises(KeyError):
        conns.remove(other)


def test_server_state_has_no_limits_and_a_plain_set_by_default() -> None:
    loop = asyncio.new_event_loop()
    try:
        app: Any = None
        plain = ServerState(Config(app="x:app"), app, loop)
        assert plain.connection_limit is None and plain.request_limit is None
        assert type(plain.connections) is set
        limited = ServerState(
            Config(app="x:app", limits=LimitsConfig(max_concurrent_requests=3)), app, loop
        )
        assert limited.connection_limit is None and type(limited.connections) is set
        assert limited.request_limit is not None and limited.request_limit.maximum == 3
        both = ServerState(Config(app="x:app", limits=LimitsConfig(max_connections=2)), app, loop)
        assert isinstance(both.connections, CountedConnections)
        assert both.connection_limit is not None and both.connection_limit.maximum == 2
    finally:
        loop.close()
