"""HTTP/2 rapid reset (CVE-2023-44487), replayed on a real server over h2c.

A client that opens streams and resets them at once made the server call the app
for every stream and, since reset streams stop counting, run any number of apps
at once whatever SETTINGS_MAX_CONCURRENT_STREAMS says.  Now a stream counts until
its app returns, a reset cancels its app after ``http2.reset_grace``, and a
connection over the reset budget gets GOAWAY ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable

import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from helpers.daemon import sample, scrape
from helpers.server import Server, free_port, wait_for
from helpers.tls import APP, PREFACE, Peer
from pounce.protocols.h2budget import ResetBudget

pytestmark = pytest.mark.slow

CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x8, 0x7, 0xB
PAIRS = 100_000


def _stats(server: Server, key: str) -> dict[str, int]:
    """The counts of ``/rr?key=K``, asked over HTTP/1.1."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("GET", f"/rr-stats?key={key}")
        answer = conn.getresponse()
        assert answer.status == 200
        stats: dict[str, int] = json.loads(answer.read())
        return stats
    finally:
        conn.close()


def _serve(serve: Callable[..., Server], **env: str) -> tuple[Server, int]:
    """A server and its admin port, whose /metrics is no request to the worker."""
    admin = free_port()
    return serve(APP, "--admin-port", str(admin), env=env), admin


def _in_flight(admin: int) -> float:
    """The http_requests_in_flight gauge, as the supervisor last heard it."""
    return sample(scrape(admin), "http_requests_in_flight")


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")


def _attack(peer: Peer, path: str, pairs: int) -> bytes:
    """The bytes of ``pairs`` HEADERS (END_STREAM) + RST_STREAM (CANCEL) pairs."""
    fields = [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "x")]
    first = peer.encoder.encode(fields)  # literal, into the HPACK table
    again = peer.encoder.encode(fields)  # indexed from the table
    rst = CANCEL.to_bytes(4, "big")
    out = bytearray()
    for n in range(pairs):
        stream_id = 1 + 2 * n
        block = first if n == 0 else again
        out += _frame(0x1, 0x5, stream_id, block) + block  # END_STREAM | END_HEADERS
        out += _frame(0x3, 0x0, stream_id, rst) + rst
    return bytes(out)


def test_rapid_reset_flood_gets_goaway_enhance_your_calm(serve: Callable[..., Server]) -> None:
    server, admin = _serve(serve)
    http11 = socket.create_connection((server.host, server.port), timeout=30)
    peer = Peer(server)
    frames: list[Frame] = []
    reader = threading.Thread(target=lambda: frames.extend(peer.frames(60)), daemon=True)
    attack = _attack(peer, "/rr?key=flood", PAIRS)
    sent = threading.Event()

    def send() -> None:
        try:
            peer.send(PREFACE, SettingsFrame(0))
            chunk = 64 * 1024
            for start in range(0, len(attack), chunk):
                peer.sock.sendall(attack[start : start + chunk])
                sent.set()
        except OSError:
            pass  # the server closed the connection: the attack is over
        finally:
            sent.set()

    try:
        reader.start()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        assert sent.wait(30)
        # An HTTP/1.1 client of the same (only) worker is answered meanwhile.
        http11.sendall(b"GET /rr-stats?key=other HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = http11.recv(65536)
            assert chunk, f"HTTP/1.1 client not answered: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200 "), head
        sender.join(120)
        reader.join(90)
        assert not sender.is_alive() and not reader.is_alive()
    finally:
        peer.close()
        http11.close()
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM], frames[-5:]
    # The budget (100 a second, as large a burst) ends the connection after ~100
    # resets: the app saw at most that many of the 100,000 streams.
    stats = _stats(server, "flood")
    assert stats["calls"] <= 101, stats
    assert stats["max_running"] <= 100, stats
    assert wait_for(lambda: _stats(server, "flood")["running"] == 0, 30)
    assert wait_for(lambda: _in_flight(admin) == 0, 30, 0.2), _in_flight(admin)


def _open(peer: Peer, first: int, count: int, path: str) -> list[int]:
    ids = [first + 2 * n for n in range(count)]
    peer.send(*(peer.headers(s, path, method="GET", end=True) for s in ids))
    return ids


def _resets(peer: Peer, ids: list[int], seen: list[Frame]) -> dict[int, int]:
    """The RST_STREAM error code of each of ``ids``, as they come."""
    codes: dict[int, int] = {}
    for frame in peer.frames(30):
        seen.append(frame)
        assert not isinstance(frame, GoAwayFrame), seen
        if isinstance(frame, RstStreamFrame) and frame.stream_id in ids:
            codes[frame.stream_id] = frame.error_code
            if len(codes) == len(ids):
                return codes
    raise AssertionError(f"resets {codes} of {ids}: {seen}")


def _settled(peer: Peer) -> None:
    peer.start()
    peer.wait_for(SettingsFrame)
    peer.send(SettingsFrame(0, flags=["ACK"]))


def test_reset_streams_count_until_their_apps_return(serve: Callable[..., Server]) -> None:
    """With the reset budget off, resetting streams frees no room: their apps still run
    (they got http.disconnect and ignore it), so new streams are refused, and the app
    never runs more than max_concurrent_streams at once."""
    server, admin = _serve(
        serve,
        POUNCE_HTTP2_MAX_CONCURRENT_STREAMS="10",
        POUNCE_HTTP2_MAX_RESETS_PER_SECOND="0",
        POUNCE_HTTP2_MAX_RESETS="0",
        POUNCE_HTTP2_RESET_GRACE="3600",  # never, within this test
        POUNCE_SHUTDOWN_TIMEOUT="1",
    )
    peer = Peer(server)
    seen: list[Frame] = []
    try:
        _settled(peer)
        first = _open(peer, 1, 10, "/rr?key=count&stubborn=1")
        assert wait_for(lambda: _stats(server, "count")["running"] == 10, 30)
        peer.send(*(RstStreamFrame(s, error_code=CANCEL) for s in first))
        assert wait_for(lambda: _stats(server, "count")["disconnected"] == 10, 30)
        second = _open(peer, 21, 10, "/rr?key=count")
        assert set(_resets(peer, second, seen).values()) == {REFUSED_STREAM}
        stats = _stats(server, "count")
        assert (stats["calls"], stats["running"], stats["max_running"]) == (10, 10, 10), stats
        assert wait_for(lambda: _in_flight(admin) == 10, 30, 0.2), _in_flight(admin)
    finally:
        peer.close()


def test_a_reset_cancels_its_app_after_the_grace(serve: Callable[..., Server]) -> None:
    """An app that ignores http.disconnect is cancelled ``reset_grace`` after the reset;
    its stream's room is free again then."""
    server, admin = _serve(
        serve, POUNCE_HTTP2_MAX_CONCURRENT_STREAMS="10", POUNCE_HTTP2_RESET_GRACE="0.2"
    )
    peer = Peer(server)
    seen: list[Frame] = []
    try:
        _settled(peer)
        first = _open(peer, 1, 10, "/rr?key=grace&stubborn=1")
        assert wait_for(lambda: _stats(server, "grace")["running"] == 10, 30)
        peer.send(*(RstStreamFrame(s, error_code=CANCEL) for s in first))
        assert wait_for(lambda: _stats(server, "grace")["cancelled"] == 10, 30)
        stats = _stats(server, "grace")
        assert (stats["disconnected"], stats["running"]) == (10, 0), stats
        assert wait_for(lambda: _in_flight(admin) == 0, 30, 0.2), _in_flight(admin)
        # Room again: ten new streams all run.
        _open(peer, 21, 10, "/rr?key=grace-again")
        assert wait_for(lambda: _stats(server, "grace-again")["running"] == 10, 30)
        # Whatever the server said about those streams came before its answer to a PING.
        peer.send(PingFrame(0, opaque_data=b"in order"))
        for frame in peer.frames(30):
            seen.append(frame)
            if isinstance(frame, PingFrame) and "ACK" in frame.flags:
                break
        assert isinstance(seen[-1], PingFrame), seen
        assert not any(isinstance(f, RstStreamFrame | GoAwayFrame) for f in seen), seen
    finally:
        peer.close()


def test_reset_budget_per_second_and_in_total() -> None:
    budget = ResetBudget(per_second=3, total=0, now=0.0)
    assert [budget.spend(0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.spend(1 / 3)  # a third of a second buys one more
    assert not budget.spend(1 / 3)
    assert [budget.spend(10.0) for _ in range(4)] == [True, True, True, False]  # burst capped
    total = ResetBudget(per_second=0, total=2, now=0.0)
    assert [total.spend(float(t)) for t in range(3)] == [True, True, False]
    assert all(ResetBudget(0, 0, 0.0).spend(0.0) for _ in range(1000))


def test_many_streams_in_one_read_all_start(serve: Callable[..., Server]) -> None:
    """Forty streams in one write start over several passes of the loop (16 a pass,
    reading paused meanwhile): all are answered, and reading resumes (PING)."""
    server, _ = _serve(serve)
    peer = Peer(server)
    try:
        _settled(peer)
        ids = _open(peer, 1, 40, "/held?key=many")
        peer.send(PingFrame(0, opaque_data=b"resumed!"))
        ended: set[int] = set()
        pong = False
        for frame in peer.frames(30):
            assert not isinstance(frame, RstStreamFrame | GoAwayFrame), frame
            if isinstance(frame, DataFrame) and "END_STREAM" in frame.flags:
                assert frame.data == b"unknown"
                ended.add(frame.stream_id)
            pong = pong or (isinstance(frame, PingFrame) and "ACK" in frame.flags)
            if pong and len(ended) == len(ids):
                break
        assert pong and ended == set(ids), (pong, sorted(ended))
    finally:
        peer.close()


def test_reset_budget_in_total_ends_the_connection(serve: Callable[..., Server]) -> None:
    """``http2.max_resets``: the sixth reset on a connection allowed five gets GOAWAY
    ENHANCE_YOUR_CALM, however slowly they come; the apps got http.disconnect."""
    server, _ = _serve(serve, POUNCE_HTTP2_MAX_RESETS_PER_SECOND="0", POUNCE_HTTP2_MAX_RESETS="5")
    peer = Peer(server)
    seen: list[Frame] = []
    try:
        _settled(peer)
        for n in range(6):
            stream_id = 1 + 2 * n
            _open(peer, stream_id, 1, "/rr?key=total")
            assert wait_for(lambda n=n: _stats(server, "total")["running"] == 1, 30), n
            peer.send(RstStreamFrame(stream_id, error_code=CANCEL))
            assert wait_for(lambda n=n: _stats(server, "total")["disconnected"] == n + 1, 30)
        for frame in peer.frames(30):
            seen.append(frame)
            if isinstance(frame, GoAwayFrame):
                break
        seen.extend(peer.frames(30))
        assert peer.closed, seen  # the server closed the connection
    finally:
        peer.close()
    goaways = [f for f in seen if isinstance(f, GoAwayFrame)]
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(ENHANCE_YOUR_CALM, 11)]
