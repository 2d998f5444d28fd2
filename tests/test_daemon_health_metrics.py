"""Health endpoints and Prometheus metrics: answered before the app, configurable,
on the admin listener too, and metrics that add up every worker exactly and never
go backwards."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import threading
from urllib.parse import quote

import pytest

from helpers.daemon import Daemons, families, get, labelled, sample, scrape, sum_samples
from helpers.server import both, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


APP = "apps.daemon_app:app"

COUNTERS = (
    "http_requests_total",
    "http_request_duration_seconds_count",
    "http_request_duration_seconds_sum",
    "http_response_bytes_total",
    "pounce_reloads_total",
    "pounce_worker_restarts_total",
)


def test_the_app_owns_every_path_of_its_listeners_by_default(daemons: Daemons) -> None:
    admin = free_port()
    d = daemons.fd(APP, "--admin-port", str(admin), workers=2)
    # The public listener: the app answers the health and metrics paths itself.
    for path in ("/health/live", "/health/ready", "/metrics"):
        reply = get(d.port, path)
        assert reply.status == 200, (path, reply)
        assert reply.json() == {**reply.json(), "app": "daemon-app", "path": path}, reply
    # The admin listener serves them, and the banner says where they are.
    assert get(admin, "/health/ready").json() == {"status": "ready"}
    assert get(admin, "/health/live").json() == {"status": "alive"}
    assert sample(scrape(admin), "pounce_generation") == 1
    assert f"/health/live, /health/ready on admin http://127.0.0.1:{admin}" in d.output, d.output
    assert f"/metrics on admin http://127.0.0.1:{admin}" in d.output, d.output
    assert "public = true" not in d.output, d.output


def test_the_banner_says_health_and_metrics_are_not_served_without_admin(
    daemons: Daemons,
) -> None:
    d = daemons.fd(APP, workers=1)
    assert get(d.port, "/health/ready").json()["app"] == "daemon-app"
    out = d.output
    assert "not served: no admin listener ([admin] port) and [health] public = false" in out, out
    assert "not served: no admin listener ([admin] port) and [metrics] public = false" in out, out


def test_public_health_is_answered_before_the_app_and_not_logged(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--health-public", workers=2)
    for path in ("/health/live", "/health/ready"):
        reply = get(d.port, path)
        assert reply.status == 200, reply
        assert reply.headers.get("content-type", "").startswith("application/json"), reply
        body = reply.json()
        assert isinstance(body, dict) and body.get("app") != "daemon-app", body
    app_reply = get(d.port, "/some/app/path")
    assert app_reply.json()["app"] == "daemon-app"
    assert d.wait_output("/some/app/path"), d.output  # the access log is on
    assert '"GET /some/app/path' in d.output, d.output
    assert "GET /health/" not in d.output, d.output
    assert "/health/live, /health/ready on the public listeners (public = true)" in d.output


def test_health_paths_are_configurable_and_served_on_the_admin_listener(
    daemons: Daemons,
) -> None:
    admin = free_port()
    d = daemons.fd(
        APP,
        "--health-live-path",
        "/probe/alive",
        "--health-ready-path",
        "/probe/ready",
        "--admin-port",
        str(admin),
        "--health-public",
        workers=2,
    )
    for port in (d.port, admin):
        for path in ("/probe/alive", "/probe/ready"):
            reply = get(port, path)
            assert reply.status == 200, (port, path, reply)
            assert reply.json().get("app") != "daemon-app"
    # The default paths now belong to the app.
    assert get(d.port, "/health/live").json()["app"] == "daemon-app"
    # Metrics on the admin listener too.
    assert sample(scrape(admin), "pounce_generation") == 1
    assert "GET /probe/" not in d.output, d.output


def test_metrics_families(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--metrics-public", workers=2)
    get(d.port, "/")
    fams = families(d.port)
    types = {name: fam.type for name, fam in fams.items()}
    # prometheus_client names counter families without their _total suffix.
    expected = {
        "http_requests": "counter",
        "http_request_duration_seconds": "histogram",
        "http_requests_in_flight": "gauge",
        "http_connections_active": "gauge",
        "http_response_bytes": "counter",
        "pounce_workers": "gauge",
        "pounce_worker_restarts": "counter",
        "pounce_reloads": "counter",
        "pounce_generation": "gauge",
    }
    for name, kind in expected.items():
        assert types.get(name) == kind, (name, types)
    samples = scrape(d.port)
    assert sample(samples, "http_requests_total", method="GET", status="200") >= 1
    assert sum_samples(samples, "pounce_workers") == 2, labelled(samples, "pounce_workers", "state")
    assert labelled(samples, "pounce_workers", "state").get("ready") == 2
    assert sample(samples, "pounce_generation") == 1
    buckets = [v for (n, _), v in samples.items() if n == "http_request_duration_seconds_bucket"]
    assert buckets and max(buckets) == sample(samples, "http_request_duration_seconds_count")


def _send_fresh(port: int, n: int, threads: int = 4) -> set[int]:
    pids: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def run(count: int) -> None:
        for _ in range(count):
            reply = get(port, "/")
            if reply.status != 200:
                errors.append(str(reply.status))
                continue
            with lock:
                pids.add(reply.json()["pid"])

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=run, args=(c,)) for c in per]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not errors, errors
    return pids


def test_metrics_add_up_every_worker_exactly(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--health-public", "--metrics-public", workers=2)
    key = ("http_requests_total", (("method", "GET"), ("status", "200")))
    before = scrape(d.port)
    pids = _send_fresh(d.port, 200)
    assert len(pids) >= 2, pids  # served by both process workers
    # Health and metrics requests in between are not app requests.
    for _ in range(5):
        get(d.port, "/health/live")
        get(d.port, "/health/ready")

    def delta() -> float:
        return scrape(d.port).get(key, 0.0) - before.get(key, 0.0)

    assert wait_for(lambda: delta() >= 200, 15), delta()
    after = scrape(d.port)
    assert after[key] - before.get(key, 0.0) == 200, (before.get(key), after[key])
    count_delta = sample(after, "http_request_duration_seconds_count") - sample(
        before, "http_request_duration_seconds_count"
    )
    assert count_delta == 200
    assert sample(after, "http_response_bytes_total") > sample(before, "http_response_bytes_total")
    # Nothing else was counted as an app request.
    total_delta = sum_samples(after, "http_requests_total") - sum_samples(
        before, "http_requests_total"
    )
    assert total_delta == 200


def test_counters_never_go_backwards_across_restarts_and_reloads(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--metrics-public", workers=2)
    scrapes: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                scrapes.append(scrape(d.port))

    _send_fresh(d.port, 100)
    key = ("http_requests_total", (("method", "GET"), ("status", "200")))
    assert wait_for(lambda: scrape(d.port).get(key, 0) >= 100, 15)
    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    try:
        victim = d.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        d.wait_status(
            lambda s: (
                len(s["workers"]) == 2
                and all(w["state"] == "ready" for w in s["workers"])
                and victim not in {w["pid"] for w in s["workers"]}
            )
        )
        _send_fresh(d.port, 50)
        result = d.ctl("reload")
        assert result.returncode == 0, both(result) + d.output
        d.wait_workers(2, generation=2)
        _send_fresh(d.port, 50)
        d.signal(signal.SIGHUP)
        d.wait_workers(2, generation=3)
        _send_fresh(d.port, 50)
        final = scrape(d.port)
        scrapes.append(final)
    finally:
        stop.set()
        thread.join(10)
    assert len(scrapes) >= 3
    for name in COUNTERS:
        series = {k for s in scrapes for k in s if k[0] == name}
        for k in series:
            values = [s.get(k, 0.0) for s in scrapes]
            drops = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(values)) if b < a]
            assert not drops, (
                f"{k} went backwards at (index, before, after) {drops[:5]}; {len(values)} scrapes, last {values[-1]}"
            )
    assert final[key] >= 100
    assert sum_samples(final, "pounce_reloads_total") == 2
    assert sum_samples(final, "pounce_worker_restarts_total") == 1
    assert sample(final, "pounce_generation") == 3


def test_in_flight_and_connection_gauges_add_up_the_workers(daemons: Daemons) -> None:
    admin = free_port()
    d = daemons.fd(APP, "--admin-port", str(admin), workers=2)
    release = daemons.tmpdir() / "release"

    def gauges() -> tuple[float, float]:
        samples = scrape(admin)  # the supervisor answers: no worker request is in flight
        return (
            sample(samples, "http_requests_in_flight"),
            sample(samples, "http_connections_active"),
        )

    assert wait_for(lambda: gauges() == (0, 0), 15), gauges()
    slow = []
    try:
        for i in range(3):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
            s.sendall(
                f"GET /slow?id=m{i}&limit=60&release={quote(str(release), safe='')} HTTP/1.1\r\n"
                "Host: x\r\nConnection: close\r\n\r\n".encode()
            )
            slow.append(s)
        for i in range(3):
            assert d.wait_output(f"SLOW-STARTED-m{i}"), d.output
        assert wait_for(lambda: gauges() == (3, 3), 15), gauges()
        release.write_text("go")
        for s in slow:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data
    finally:
        for s in slow:
            s.close()
    assert wait_for(lambda: gauges() == (0, 0), 15), gauges()
