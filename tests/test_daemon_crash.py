"""The crash budget: exits are classified, workers replaced with backoff, a crash
loop or a first-generation boot failure stops the supervisor, and a hung worker
is dumped, killed and replaced."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading

import pytest

from helpers.daemon import Daemons, Load, get, labelled, scrape
from helpers.procs import alive
from helpers.server import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


APP = "apps.daemon_app:app"


def test_killed_worker_is_replaced_and_the_others_keep_serving(daemons: Daemons) -> None:
    d = daemons.fd(
        APP, "--max-restarts", "5", "--restart-window", "60", "--metrics-public", workers=3
    )
    before = d.status()
    assert before["crash_budget"]["used"] == 0, before["crash_budget"]
    assert before["crash_budget"]["left"] == 5, before["crash_budget"]
    pids = [w["pid"] for w in before["workers"]]
    victim, survivors = pids[0], pids[1:]

    threads = 6
    with Load(d.port, threads=threads, keepalive=False) as load:
        assert wait_for(lambda: len(load.pids) == 3 and load.ok > 100, 15), load.summary()
        os.kill(victim, signal.SIGKILL)
        status = d.wait_status(
            lambda s: (
                len(s["workers"]) == 3
                and all(w["state"] == "ready" for w in s["workers"])
                and victim not in {w["pid"] for w in s["workers"]}
            )
        )
        replacement = ({w["pid"] for w in status["workers"]} - set(survivors)).pop()
        # Requests keep succeeding afterwards, the replacement included.
        assert wait_for(lambda: replacement in load.pids, 15), load.summary()
        seen = load.ok
        assert wait_for(lambda: load.ok > seen + 100, 15), load.summary()
    # Only requests in flight on the killed worker may fail: at most one per client.
    assert load.failures + load.errors <= threads, load.summary()
    assert all(bad <= 1 for bad in load.per_thread_bad), load.summary()
    assert not alive(victim)
    assert all(pid in {w["pid"] for w in status["workers"]} for pid in survivors), status
    budget = status["crash_budget"]
    assert budget["used"] == 1 and budget["left"] == 4, budget
    restarts = labelled(scrape(d.port), "pounce_worker_restarts_total", "reason")
    assert sum(restarts.values()) == 1, restarts
    # The exit is classified as killed by a signal.
    assert [k for k, v in restarts.items() if v and re.search(r"signal|kill", k)], restarts
    assert d.proc.poll() is None


@pytest.mark.parametrize("app", ["crash_after_start", "crash_on_request"])
def test_crash_loop_exhausts_the_budget_and_stops_the_supervisor(
    daemons: Daemons, app: str
) -> None:
    d = daemons.fd(
        f"apps.daemon_app:{app}",
        "--max-restarts",
        "3",
        "--restart-window",
        "60",
        workers=1,
        wait=False,
    )
    stop = threading.Event()

    def poke() -> None:  # crash_on_request needs requests to crash
        while not stop.is_set():
            with contextlib.suppress(OSError):
                get(d.port, "/", timeout=2)

    poker = threading.Thread(target=poke, daemon=True)
    if app == "crash_on_request":
        poker.start()
    try:
        code = d.wait_exit(60)
    finally:
        stop.set()
        if poker.is_alive():
            poker.join(10)
    out = d.output
    assert code is not None, f"supervisor still running:\n{out}"
    assert code != 0, out
    # The supervisor says why it gave up: the budget, and what the workers did.
    assert re.search(r"crash budget|max[_ -]restarts|too many", out, re.I), out
    assert re.search(r"exit(ed with)? (code |status )?1\b", out, re.I), out
    assert re.search(r"\bcrash", out.replace("crash budget", ""), re.I), out  # classified
    started = out.count("DAEMON-APP-STARTUP")
    assert started >= 4, out  # the first start and 3 restarts
    assert wait_for(lambda: not any(alive(p) for p in d.seen_pids), 10)


@pytest.mark.parametrize(
    ("app", "cause"),
    [
        ("apps.daemon_broken:app", "daemon-broken-import-7731"),
        ("apps.daemon_app:lifespan_refuses", "daemon-lifespan-refused-5521"),
    ],
    ids=["import_error", "lifespan_failure"],
)
def test_boot_failure_of_the_first_generation_exits_at_once(
    daemons: Daemons, app: str, cause: str
) -> None:
    d = daemons.fd(app, "--max-restarts", "50", workers=2, wait=False)
    code = d.wait_exit(30)
    out = d.output
    assert code is not None, f"still running after a boot failure:\n{out}"
    assert code != 0, out
    assert cause in out, out
    assert "DAEMON-APP-STARTUP" not in out


def test_hung_worker_is_dumped_killed_and_replaced(daemons: Daemons) -> None:
    d = daemons.fd(
        APP,
        "--worker-timeout",
        "2",
        "--heartbeat-interval",
        "0.2",
        "--metrics-public",
        workers=2,
    )
    pids = d.worker_pids()
    hung = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        hung.sendall(b"GET /hang?seconds=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert d.wait_output("HANG-STARTED"), d.output
        hung_pid = int(d.output.split("HANG-STARTED pid=")[1].split()[0])
        assert hung_pid in pids
        # Its stack is dumped: the app's blocking function, as a traceback.
        assert d.wait_output("hang_the_event_loop", 20), d.output
        assert 'File "' in d.output, d.output
        status = d.wait_status(
            lambda s: (
                len(s["workers"]) == 2
                and all(w["state"] == "ready" for w in s["workers"])
                and hung_pid not in {w["pid"] for w in s["workers"]}
            ),
            timeout=30,
        )
        assert wait_for(lambda: not alive(hung_pid), 10), "the hung worker was not killed"
    finally:
        hung.close()
    other = [p for p in pids if p != hung_pid]
    assert all(p in {w["pid"] for w in status["workers"]} for p in other)
    for _ in range(20):
        assert get(d.port, "/").status == 200
    assert status["crash_budget"]["used"] == 1, status["crash_budget"]
    restarts = labelled(scrape(d.port), "pounce_worker_restarts_total", "reason")
    assert sum(restarts.values()) == 1, restarts
    # The exit is classified as a heartbeat timeout, not as the kill that ended it.
    assert [k for k, v in restarts.items() if v and re.search(r"timeout|heartbeat|hung", k)], (
        restarts
    )
