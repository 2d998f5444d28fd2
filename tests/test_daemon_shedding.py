"""Load shedding, Server-Timing and the slow-request log on real daemons.

Floods of real clients (httpx, raw sockets, a second source address 127.0.0.2) past
``[limits] max_concurrent_requests``, its wait queue and ``[limits.rate]``: the
statuses, ``Retry-After``, the shed counters on the admin listener's ``/metrics``,
requests under the limits still served, health exempt.  The daemon's RSS (summed over
its workers) is printed before and after each flood; it is a figure, not a threshold.

Held requests are ``apps.daemon_app``'s ``/slow``, answered once a file exists; every
wait is bounded.  ``max_concurrent_requests`` is counted across the workers (a counter
they share), so exactly ``limit`` requests are held however the connections spread.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.asgi import json_lines
from helpers.daemon import Daemon, Daemons, Reply, get, sample, scrape
from helpers.server import free_port, wait_for
from helpers.ws import H2WebSocketClient, RawReader, upgrade_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = "apps.daemon_app:app"
WS_APP = "apps.ws_echo:app"
SHED = "pounce_requests_shed_total"
WAIT = 30.0


def rss_kib(d: Daemon) -> int:
    """The resident memory of the daemon's worker processes, summed (KiB, from /proc;
    thread workers are all in the daemon's process)."""
    total = 0
    for pid in {pid or d.pid for pid in d.worker_pids()}:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def get_from(source: str, port: int, path: str = "/") -> Reply:
    """One GET on a fresh connection from the source address ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def started(d: Daemon) -> int:
    return d.output.count("SLOW-STARTED-")


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    """The file whose existence lets ``/slow`` answer; created at teardown too."""
    path = tmp_path / "release"
    yield path
    path.touch()


async def flood(
    d: Daemon, n: int, release: Path, *, until: int | None = None
) -> tuple[list[httpx.Response], list[asyncio.Task[httpx.Response]]]:
    """Send ``n`` concurrent held requests (one connection each); return the answers that
    came while they were held and the tasks of those still held, once every request
    is either answered or running in the app."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    client = httpx.AsyncClient(limits=limits, timeout=WAIT)
    base = f"http://127.0.0.1:{d.port}/slow"
    tasks = [
        asyncio.ensure_future(client.get(base, params={"id": str(i), "release": str(release)}))
        for i in range(n)
    ]
    deadline = asyncio.get_running_loop().time() + WAIT
    while sum(t.done() for t in tasks) + started(d) < (until or n):
        assert asyncio.get_running_loop().time() < deadline, d.output
        await asyncio.sleep(0.02)
    answered = [t.result() for t in tasks if t.done()]
    held = [t for t in tasks if not t.done()]
    _clients.append(client)
    return answered, held


_clients: list[httpx.AsyncClient] = []


async def close_clients() -> None:
    while _clients:
        await _clients.pop().aclose()


def assert_shed(reply: httpx.Response | Reply, status: int, retry: int | None) -> None:
    headers = reply.headers
    got = reply.status_code if isinstance(reply, httpx.Response) else reply.status
    assert got == status, reply
    assert headers["content-type"] == "text/plain; charset=utf-8"
    if retry is not None:
        assert headers["retry-after"] == str(retry)
    else:
        assert 1 <= int(headers["retry-after"]) <= 10


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_flood_past_max_concurrent_requests(daemons: Daemons, release: Path, mode: str) -> None:
    admin = free_port()
    workers, limit, n = 2, 2, 40
    d = daemons.fd(
        APP,
        "--worker-mode", mode,
        "--admin-port", str(admin),
        "--limit-concurrency", str(limit),
        "--limit-retry-after", "2",
        workers=workers,
    )  # fmt: skip
    before = rss_kib(d)

    async def main() -> None:
        answered, held = await flood(d, n, release)
        assert len(answered) + len(held) == n
        # The count is daemon-wide (workers share it): exactly `limit` held, not per worker.
        assert len(held) == limit, (len(held), d.output)
        for reply in answered:
            assert reply.status_code == 503, reply
            assert_shed(reply, 503, 2)
            assert reply.text == "Service Unavailable: the server is busy, retry later.\n"
        release.touch()
        for reply in await asyncio.gather(*held):
            assert reply.status_code == 200, reply
            assert "server-timing" not in reply.headers  # http.server_timing is off
        await close_clients()
        # Under the limit again: served.
        async with httpx.AsyncClient() as client:
            for _ in range(10):
                assert (await client.get(f"http://127.0.0.1:{d.port}/")).status_code == 200
        samples = scrape(admin)
        assert sample(samples, SHED, reason="concurrency") == len(answered)
        assert sample(samples, SHED, reason="queue_timeout") == 0
        assert sample(samples, SHED, reason="rate_limit") == 0

    asyncio.run(main())
    after = rss_kib(d)
    print(f"\nRSS of {workers} {mode} workers: {before} KiB before, {after} KiB after {n} requests")
    # Logged at most once a second per reason, not once per request.
    assert 1 <= d.output.count("request shed (concurrency)") < n, d.output


def test_full_queue_and_queue_timeout(daemons: Daemons, release: Path) -> None:
    admin = free_port()
    workers, limit, queue, n = 2, 1, 2, 12
    d = daemons.fd(
        APP,
        "--admin-port", str(admin),
        "--limit-concurrency", str(limit),
        "--limit-queue-size", str(queue),
        "--limit-queue-timeout", "0.5",
        workers=workers,
    )  # fmt: skip
    before = rss_kib(d)

    async def main() -> None:
        answered, held = await flood(d, n, release)
        assert len(held) == limit  # daemon-wide
        assert {r.status_code for r in answered} == {503}
        for reply in answered:
            assert_shed(reply, 503, 1)
        release.touch()
        assert {r.status_code for r in await asyncio.gather(*held)} == {200}
        await close_clients()
        samples = scrape(admin)
        full = sample(samples, SHED, reason="concurrency")
        timed_out = sample(samples, SHED, reason="queue_timeout")
        assert full + timed_out == len(answered)
        # One worker got at least half of the connections: its queue filled and timed out.
        assert queue <= timed_out <= queue * workers, samples
        assert full >= n - limit - queue * workers, samples

    asyncio.run(main())
    print(f"\nRSS of {workers} workers: {before} KiB before, {rss_kib(d)} KiB after {n} requests")


def test_queued_request_reports_queue_time_in_server_timing(
    daemons: Daemons, release: Path
) -> None:
    d = daemons.fd(
        APP,
        "--limit-concurrency", "1",
        "--limit-queue-size", "1",
        "--limit-queue-timeout", "60",
        "--server-timing",
        workers=1,
    )  # fmt: skip

    async def main() -> None:
        # One holds the slot; of the next two one waits in the queue, the other finds it
        # full (whichever the worker reads first).
        _, held = await flood(d, 1, release)
        async with httpx.AsyncClient(timeout=WAIT) as client:
            two = [asyncio.ensure_future(client.get(f"http://127.0.0.1:{d.port}/")) for _ in "ab"]
            done, pending = await asyncio.wait(
                two, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
            )
            assert len(done) == 1 and len(pending) == 1
            assert_shed(done.pop().result(), 503, 1)
            release.touch()
            first = (await asyncio.gather(*held))[0]
            queued = await pending.pop()
        await close_clients()
        assert first.status_code == 200 and queued.status_code == 200
        assert re.fullmatch(r"app;dur=\d+\.\d", first.headers["server-timing"]), first.headers
        timing = queued.headers["server-timing"]
        match = re.fullmatch(r"queue;dur=(\d+\.\d), app;dur=(\d+\.\d)", timing)
        assert match, timing
        assert float(match[2]) >= float(match[1])

    asyncio.run(main())


def test_server_timing_over_http2_only_when_enabled(daemons: Daemons) -> None:
    on = daemons.fd(APP, "--server-timing", workers=1)
    off = daemons.fd(APP, workers=1)
    with httpx.Client(http1=False, http2=True, timeout=WAIT) as client:
        reply = client.get(f"http://127.0.0.1:{on.port}/")
        assert reply.http_version == "HTTP/2" and reply.status_code == 200
        assert re.fullmatch(r"app;dur=\d+\.\d", reply.headers["server-timing"]), reply.headers
        reply = client.get(f"http://127.0.0.1:{off.port}/")
        assert reply.http_version == "HTTP/2" and reply.status_code == 200
        assert "server-timing" not in reply.headers
    with httpx.Client(timeout=WAIT) as client:
        reply = client.get(f"http://127.0.0.1:{on.port}/")
        assert reply.http_version == "HTTP/1.1"
        assert re.fullmatch(r"app;dur=\d+\.\d", reply.headers["server-timing"]), reply.headers


def test_rate_limit_flood_one_client_others_and_health_unaffected(daemons: Daemons) -> None:
    admin = free_port()
    workers, n, clients, tracked = 2, 60, 400, 50
    # One token every 10 s: a client that spent its burst stays limited for the test.
    d = daemons.fd(
        APP,
        "--admin-port", str(admin),
        "--rate-limit", "0.1",
        "--rate-limit-burst", "2",
        "--rate-limit-max-clients", str(tracked),
        "--health-public",
        workers=workers,
    )  # fmt: skip
    before = rss_kib(d)
    replies = [get(d.port, "/") for _ in range(n)]
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 429}
    assert 1 <= statuses.count(200) <= 2 * workers + 2 * workers  # bursts (+ a refill each)
    for reply in replies:
        if reply.status == 429:
            assert_shed(reply, 429, None)
            assert reply.text == "Too Many Requests: slow down, retry later.\n"
    # Health is answered before the app: exempt while this client is over its rate.
    limited = 0
    for _ in range(10):
        assert get(d.port, "/health/ready").status == 200
        limited += get(d.port, "/").status == 429
    assert limited >= 1
    # Another client address has its own bucket.
    assert get_from("127.0.0.2", d.port, "/").status == 200
    # Many addresses, more than a worker tracks: each new one is served, the oldest
    # forgotten (the bound on memory; the RSS figure below).
    many = [f"127.0.{i // 200 + 1}.{i % 200 + 2}" for i in range(clients)]
    assert {get_from(source, d.port, "/").status for source in many} == {200}
    samples = scrape(admin)
    assert sample(samples, SHED, reason="rate_limit") == statuses.count(429) + limited
    assert sample(samples, SHED, reason="concurrency") == 0
    after = rss_kib(d)
    print(f"\nRSS of {workers} workers: {before} KiB before, {after} KiB after {n} requests")
    print(f"from one client and one from each of {clients} addresses (tracked: {tracked})")
    assert 1 <= d.output.count("request shed (rate_limit)") < n, d.output


def ws_status(port: int, source: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """Open a WebSocket handshake; the socket and the response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.sendall(upgrade_request("/echo"))
    return sock, RawReader(sock).head()


def test_websocket_is_denied_with_503_and_429(daemons: Daemons) -> None:
    admin = free_port()
    d = daemons.fd(
        WS_APP,
        "--admin-port", str(admin),
        "--limit-concurrency", "1",
        "--rate-limit", "0.1",
        "--rate-limit-burst", "2",
        workers=1,
    )  # fmt: skip
    opened: list[socket.socket] = []
    try:
        sock, head = ws_status(d.port)  # holds the only slot for its whole life
        opened.append(sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        sock, head = ws_status(d.port, "127.0.0.2")  # a token, but no slot
        opened.append(sock)
        assert head.startswith(b"HTTP/1.1 503 "), head
        assert b"\r\nretry-after: 1\r\n" in head.lower()
        sock, head = ws_status(d.port)  # its second token, no slot
        opened.append(sock)
        assert head.startswith(b"HTTP/1.1 503 "), head
        sock, head = ws_status(d.port)  # no token left
        opened.append(sock)
        assert head.startswith(b"HTTP/1.1 429 "), head
        assert re.search(rb"\r\nretry-after: (10|9)\r\n", head.lower()), head
        # The same over HTTP/2 (RFC 8441 extended CONNECT).
        h2sock = socket.create_connection(
            ("127.0.0.1", d.port), timeout=10, source_address=("127.0.0.2", 0)
        )
        opened.append(h2sock)
        client = H2WebSocketClient(h2sock)
        busy = client.open("/echo", scheme="http")
        assert busy.status == b"503"
        assert client.response[busy.stream_id][b"retry-after"] == b"1"
        limited = client.open("/echo", scheme="http")
        assert limited.status == b"429"
        # The session ends: its slot is free again (each try from a new address: the
        # tries that find the slot still taken must not spend one client's tokens).
        opened[0].close()
        sources = (f"127.0.{i // 250}.{i % 250 + 3}" for i in itertools.count())
        assert wait_for(lambda: get_from(next(sources), d.port, "/last-close").status == 200)
    finally:
        for sock in opened:
            sock.close()
    samples = scrape(admin)
    assert sample(samples, SHED, reason="rate_limit") == 2
    assert sample(samples, SHED, reason="concurrency") >= 3  # (and the tries while it closed)


def test_slow_requests_are_logged_once_with_their_fields(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--slow-request-threshold", "1", "--log-format", "json", workers=1)
    # The app waits 1.2 s (its own clock) for a file that never comes, then answers 504.
    assert get(d.port, "/slow?id=s&limit=1.2&release=/nonexistent/x").status == 504
    for _ in range(5):
        assert get(d.port, "/fast").status == 200

    def fast_logged() -> bool:
        return sum(e.get("path") == "/fast" for e in json_lines(d.output)) == 5

    assert wait_for(fast_logged, WAIT), d.output  # (the access log, after any slow warning)
    slow = [e for e in json_lines(d.output) if e.get("message", "").startswith("slow request")]
    assert len(slow) == 1, slow
    entry = slow[0]
    assert entry["level"] == "warning" and entry["logger"] == "pounce.error"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/slow", 504)
    assert entry["duration_ms"] >= 1000.0
    assert isinstance(entry["request_id"], str) and entry["request_id"]  # "-" without IDs
    assert "/slow" in entry["message"] and "504" in entry["message"]


def test_rate_limit_concurrency_and_slow_log_over_http2(daemons: Daemons, release: Path) -> None:
    """The same edge for HTTP/2 streams (h2c prior knowledge): 429 and 503 with
    Retry-After, the slow-request warning with the stream's request ID."""
    admin = free_port()
    rated = daemons.fd(
        APP, "--admin-port", str(admin), "--rate-limit", "0.1", "--rate-limit-burst", "2", workers=1
    )
    with httpx.Client(http1=False, http2=True, timeout=WAIT) as client:
        replies = [client.get(f"http://127.0.0.1:{rated.port}/") for _ in range(6)]
    assert all(r.http_version == "HTTP/2" for r in replies)
    statuses = [r.status_code for r in replies]
    assert statuses[:2] == [200, 200] and set(statuses[2:]) == {429}, statuses
    for reply in replies[2:]:
        assert_shed(reply, 429, None)
        assert reply.headers["x-request-id"]
    assert sample(scrape(admin), SHED, reason="rate_limit") == 4

    busy = daemons.fd(
        APP,
        "--limit-concurrency", "1",
        "--slow-request-threshold", "0.5",
        "--log-format", "json",
        workers=1,
    )  # fmt: skip

    async def main() -> None:
        _, held = await flood(busy, 1, release)
        async with httpx.AsyncClient(http1=False, http2=True, timeout=WAIT) as client:
            reply = await client.get(f"http://127.0.0.1:{busy.port}/")
            assert reply.http_version == "HTTP/2"
            assert_shed(reply, 503, 1)
            # The app waits 0.7 s for a file that never comes, then answers 504: slow.
            release.touch()
            await asyncio.gather(*held)
            slow = await client.get(
                f"http://127.0.0.1:{busy.port}/slow",
                params={"id": "h2", "limit": "0.7", "release": "/nonexistent/x"},
            )
        await close_clients()
        assert slow.status_code == 504
        rid = slow.headers["x-request-id"]

        def logged() -> list[dict[str, object]]:
            return [
                e
                for e in json_lines(busy.output)
                if str(e.get("message", "")).startswith("slow request") and e.get("status") == 504
            ]

        assert wait_for(lambda: logged(), WAIT), busy.output
        entry = logged()[0]
        assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/slow", 504)
        assert entry["request_id"] == rid

    asyncio.run(main())


def test_rate_limit_keys_on_the_client_after_proxy_headers(daemons: Daemons) -> None:
    d = daemons.fd(
        APP,
        "--forwarded-allow-ips", "127.0.0.1",
        "--rate-limit", "0.1",
        "--rate-limit-burst", "1",
        workers=1,
    )  # fmt: skip
    url = f"http://127.0.0.1:{d.port}/"
    with httpx.Client(timeout=WAIT) as client:

        def status(forwarded_for: str) -> int:
            return client.get(url, headers={"X-Forwarded-For": forwarded_for}).status_code

        assert status("203.0.113.7") == 200
        assert status("203.0.113.7") == 429  # the same forwarded client: its bucket is empty
        assert status("198.51.100.9") == 200  # another client behind the same proxy
        assert status("10.9.8.7, 203.0.113.7") == 429  # the right-most untrusted hop counts
