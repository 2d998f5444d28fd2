"""``[limits] max_connections`` on a real 2-worker daemon: the open connections of every
worker count together; a connection over the limit gets ``503`` with ``Retry-After``
and is closed (HTTP/2: GOAWAY), never a hang or a reset; those under the limit are
served; each refusal is counted in ``pounce_requests_shed_total``; a killed worker's
connections stop counting.  Process and thread workers.

Every read is bounded (socket timeouts, ``wait_for``); nothing sleeps; the workers'
RSS is printed before and after the flood (no threshold).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import h2.config
import h2.connection
import h2.events
import pytest

from helpers.daemon import Daemon, Daemons, sample, scrape
from helpers.procs import rss_kib
from helpers.server import free_port, wait_for
from helpers.tls import Pki
from helpers.wire import Response, Wire, request
from helpers.ws import upgrade_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = "apps.daemon_app:app"
LIMIT = 4
FLOOD = 300  # connections over the limit, 50 at a time
RETRY_AFTER = "7"
HOST = "127.0.0.1"


def _start(daemons: Daemons, *extra: str, env: dict[str, str] | None = None) -> tuple[Daemon, int]:
    admin = free_port()
    d = daemons.fd(
        APP,
        "--limit-max-connections",
        str(LIMIT),
        "--limit-retry-after",
        RETRY_AFTER,
        "--admin-port",
        str(admin),
        *extra,
        workers=2,
        env=env,
    )
    return d, admin


def _shed(admin: int) -> int:
    return int(sample(scrape(admin), "pounce_requests_shed_total", reason="max_connections"))


def _served(port: int) -> Wire:
    """A keep-alive connection that has had one request answered (so it is counted)."""
    wire = Wire.open(HOST, port)
    wire.send(request("GET", "/held"))
    response = wire.read_response()
    assert response.status == 200, response.raw
    assert "close" not in response.connection_tokens(), response.raw
    return wire


def _refused(port: int) -> Response:
    """A new connection over the limit: its answer, read whole, then the server's close."""
    with Wire.open(HOST, port) as wire:
        wire.send(request("GET", "/extra"))
        response = wire.read_response()
        assert wire.wait_closed(), "the refused connection was left open"
    return response


def _assert_refusal(response: Response) -> None:
    assert response.status == 503, response.raw
    assert response.header("retry-after") == RETRY_AFTER, response.raw
    assert "close" in response.connection_tokens(), response.raw
    assert response.body == b"Service Unavailable: too many connections\n", response.raw


def _flood(port: int, n: int) -> list[Response | BaseException]:
    """``n`` new connections, 50 at a time, each sending a request; what each got."""

    def one(_: int) -> Response | BaseException:
        try:
            return _refused(port)
        except BaseException as exc:  # (reported by the test, with the others)
            return exc

    with ThreadPoolExecutor(max_workers=50) as pool:
        return list(pool.map(one, range(n), timeout=90))


def _rss(label: str, pids: list[int]) -> None:
    figures = ", ".join(f"pid {pid}: {rss_kib(pid)} KiB" for pid in pids)
    print(f"worker RSS {label}: {figures}")


def _admitted_until_refused(port: int, limit: int) -> tuple[list[Wire], int]:
    """Open connections until one is refused (at most ``limit`` + 1); the admitted ones
    stay open.  Returns them and how many were refused (0 or 1)."""
    admitted: list[Wire] = []
    for _ in range(limit + 1):
        wire = Wire.open(HOST, port)
        wire.send(request("GET", "/probe"))
        response = wire.read_response()
        if response.status == 503:
            _assert_refusal(response)
            wire.close()
            return admitted, 1
        assert response.status == 200, response.raw
        admitted.append(wire)
    return admitted, 0


@pytest.fixture
def wires() -> Iterator[list[Wire]]:
    held: list[Wire] = []
    try:
        yield held
    finally:
        for wire in held:
            wire.close()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_over_the_limit_connections_get_503_and_the_others_are_served(
    daemons: Daemons, wires: list[Wire], mode: str
) -> None:
    d, admin = _start(daemons, "--worker-mode", mode)
    pids = sorted({pid or d.pid for pid in d.worker_pids()})  # (threads: the daemon's)
    wires += [_served(d.port) for _ in range(LIMIT)]
    _rss("before the flood", pids)
    results = _flood(d.port, FLOOD)
    _rss("after the flood", pids)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert len(results) == FLOOD
    for response in results:
        assert isinstance(response, Response)
        _assert_refusal(response)
    # The connections under the limit are served on, untouched by the flood.
    for wire in wires:
        wire.send(request("GET", "/again"))
        assert wire.read_response().status == 200
    assert _shed(admin) == FLOOD
    # Two of them go: exactly two new connections are admitted again (the server sees
    # the close a moment after the client: retry until it has).
    for wire in wires[:2]:
        wire.close()
    del wires[:2]
    refused = 0

    def two_admitted() -> bool:
        nonlocal refused
        admitted, no = _admitted_until_refused(d.port, 2)
        refused += no
        wires.extend(admitted)
        return len(wires) == LIMIT

    assert wait_for(two_admitted, 20, 0.05), "closed connections were not given back"
    # Full again: the next one is refused, and every refusal was counted.
    _assert_refusal(_refused(d.port))
    assert _shed(admin) == FLOOD + refused + 1
    assert d.wait_output("[limits] max_connections (4) reached"), d.output
    # Logged at most once a second per worker, not once per refused connection.
    assert d.output.count("max_connections (4) reached") < FLOOD, d.output


def _h2_refused(sock: socket.socket) -> h2.events.ConnectionTerminated:
    """Speak HTTP/2 (one GET) on ``sock`` until the server's GOAWAY; the socket ends."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")], True
    )
    sock.sendall(conn.data_to_send())
    sock.settimeout(10)
    events: list[h2.events.Event] = []
    while True:
        data = sock.recv(65536)  # (a timeout or a reset fails the test)
        if not data:
            break
        events += conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended, events
    assert not [e for e in events if isinstance(e, h2.events.ResponseReceived)], events
    return ended[0]


def test_http2_over_the_limit_gets_goaway(daemons: Daemons, wires: list[Wire]) -> None:
    d, admin = _start(daemons)
    wires += [_served(d.port) for _ in range(LIMIT)]
    with socket.create_connection((HOST, d.port), timeout=10) as sock:
        goaway = _h2_refused(sock)  # prior knowledge (h2c)
    # RFC 9113 §6.8: no stream was processed (last stream id 0), the client may retry.
    assert goaway.last_stream_id == 0
    assert goaway.error_code == 0  # NO_ERROR
    assert goaway.additional_data == b"connection limit reached"
    assert _shed(admin) == 1


def test_http2_over_tls_over_the_limit_gets_goaway(
    daemons: Daemons, wires: list[Wire], pki: Pki
) -> None:
    d, admin = _start(daemons, env=pki.env())
    ctx = pki.client_context(alpn=["h2", "http/1.1"])
    h1 = pki.client_context(alpn=["http/1.1"])
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(LIMIT):  # established and counted: each had an answer
            raw = socket.create_connection((HOST, d.port), 10)
            tls = h1.wrap_socket(raw, server_hostname="localhost")
            held.append(tls)
            tls.sendall(request("GET", "/held"))
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 "), "not served"
        with ctx.wrap_socket(
            socket.create_connection((HOST, d.port), 10), server_hostname="localhost"
        ) as sock:
            assert sock.selected_alpn_protocol() == "h2"
            goaway = _h2_refused(sock)
        assert goaway.last_stream_id == 0 and goaway.error_code == 0
        assert _shed(admin) == 1
    finally:
        for tls in held:
            tls.close()


def test_a_killed_workers_connections_stop_counting(daemons: Daemons, wires: list[Wire]) -> None:
    d, admin = _start(daemons)
    before = d.status()
    pids: set[int] = set()
    for _ in range(LIMIT):
        wire = Wire.open(HOST, d.port)
        wire.send(request("GET", "/held"))
        response = wire.read_response()
        assert response.status == 200, response.raw
        pids.add(json.loads(response.body)["pid"])
        wires.append(wire)
    _assert_refusal(_refused(d.port))
    # SIGKILL every worker that holds one: nothing of theirs is released by them.
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    d.wait_status(
        lambda data: (
            len(data["workers"]) == 2
            and all(w["state"] == "ready" and w["pid"] not in pids for w in data["workers"])
        )
    )
    for wire in wires:
        assert wire.wait_closed(), "a killed worker's connection stayed open"
        wire.close()
    wires.clear()
    # Their slots were zeroed: the daemon admits LIMIT connections again, not 0.
    admitted, refused = _admitted_until_refused(d.port, LIMIT)
    wires += admitted
    assert len(admitted) == LIMIT
    assert refused == 1
    assert before["generation"] == d.status()["generation"]
    # (the killed workers' counts since their last heartbeat went with them)
    assert _shed(admin) >= 1


def _h2_served(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    """An HTTP/2 prior-knowledge connection with one answered GET, left open."""
    sock = socket.create_connection((HOST, port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")], True
    )
    sock.sendall(conn.data_to_send())
    events: list[h2.events.Event] = []
    while not any(isinstance(e, h2.events.StreamEnded) for e in events):
        data = sock.recv(65536)
        assert data, events
        events += conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    status = [e.headers for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert status and (b":status", b"200") in status[0], events
    return sock, conn


def test_protocol_switches_neither_double_count_nor_leak(
    daemons: Daemons, wires: list[Wire]
) -> None:
    admin = free_port()
    d = daemons.fd(
        "apps.ws_echo:app",
        "--limit-max-connections",
        "3",
        "--limit-retry-after",
        RETRY_AFTER,
        "--admin-port",
        str(admin),
        workers=2,
    )
    # One WebSocket (HTTP/1.1 -> 101), one HTTP/2 prior knowledge, one HTTP/1.1: 3 places.
    ws = Wire.open(HOST, d.port)
    ws.send(upgrade_request("/echo"))
    assert ws.read_head().status == 101
    h2_sock, _ = _h2_served(d.port)
    try:
        wires.append(_served(d.port))  # a switch counted twice would refuse this one
        _assert_refusal(_refused(d.port))  # a switch that gave its place back would admit
        ws.close()  # the WebSocket's transport closes: its place comes back
        assert wait_for(lambda: _admitted(d.port, wires), 20, 0.05)
        _assert_refusal(_refused(d.port))
        h2_sock.close()  # and the HTTP/2 connection's
        assert wait_for(lambda: _admitted(d.port, wires), 20, 0.05)
        _assert_refusal(_refused(d.port))
    finally:
        ws.close()
        h2_sock.close()


def _admitted(port: int, wires: list[Wire]) -> bool:
    admitted, _ = _admitted_until_refused(port, 0)
    wires += admitted
    return bool(admitted)


def test_a_reload_keeps_counting_the_old_generations_connections(
    daemons: Daemons, wires: list[Wire]
) -> None:
    d, _ = _start(daemons, "--keep-alive-timeout", "8")
    old = set(d.worker_pids())
    wires += [_served(d.port) for _ in range(2)]
    result = d.ctl("reload")
    assert result.returncode == 0, result.stdout + result.stderr + d.output
    # Generation 2 is ready; generation 1 is told to stop and drains its idle
    # keep-alive connections for keep_alive_timeout.
    d.wait_status(
        lambda data: all(w["state"] == "draining" for w in data["workers"] if w["pid"] in old)
    )
    # The old generation's connections still hold their places while they are open.
    new: list[Wire] = []
    refused = 0
    for _ in range(50):
        wire = Wire.open(HOST, d.port)
        wire.send(request("GET", "/probe"))
        response = wire.read_response()
        if response.status == 503:
            _assert_refusal(response)
            wire.close()
            refused = 1
            break
        assert response.status == 200, response.raw
        if json.loads(response.body)["pid"] in old:
            # (accepted by an old worker before its stop arrived: it drains like the others)
            wires.insert(0, wire)
        else:
            new.append(wire)
    on_old = len(wires)
    wires += new
    assert (on_old + len(new), refused) == (LIMIT, 1)

    # The old idle connections are closed, the old workers exit: their slots are zeroed
    # (and the new generation's never shared them), so the places come back.
    # (the new connections make a request now and then: they are not idle that long)
    def old_closed() -> bool:
        for wire in new:
            wire.send(request("GET", "/busy"))
            assert wire.read_response().status == 200
        for wire in wires[:on_old]:
            wire.pending()
        return all(wire.eof for wire in wires[:on_old])

    assert wait_for(old_closed, 30, 0.2), "an old generation's idle connection stayed open"
    for wire in wires[:on_old]:
        wire.close()
    del wires[:on_old]
    d.wait_workers(2, generation=2)
    for _ in range(on_old):
        assert wait_for(lambda: _admitted(d.port, wires), 20, 0.05)
    assert len(wires) == LIMIT
    _assert_refusal(_refused(d.port))
