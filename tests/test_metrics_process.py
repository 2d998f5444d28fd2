"""The metrics a Prometheus user looks for first: ``process_*`` of the supervisor and of
each worker process, ``pounce_build_info``, the time of the last successful reload and
per-worker request figures, all parsed with prometheus_client's own parser."""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import pounce
from helpers.daemon import Daemons, get, labelled, sample
from helpers.server import both, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


APP = "apps.daemon_app:app"

PROCESS_FAMILIES = {
    # prometheus_client names counter families without their _total suffix.
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}


def metrics(
    port: int,
) -> tuple[dict[str, Any], dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Families and samples of one scrape, parsed by prometheus_client (which rejects bad text)."""
    reply = get(port, "/metrics")
    assert reply.status == 200, reply
    fams = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples
    }
    return fams, samples


def start_time_of(pid: int) -> float:
    """A process's start time in unix seconds, worked out here independently of Pounce."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    with open("/proc/stat", "rb") as f:
        btime = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
    return float(fields[19]) / os.sysconf("SC_CLK_TCK") + btime


def workers_of(status: dict[str, Any]) -> dict[str, int]:
    return {str(w["id"]): w["pid"] for w in status["workers"] if w["state"] == "ready"}


def test_process_metrics_per_worker_and_supervisor(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--metrics-public", workers=2)
    workers = workers_of(d.status())
    assert len(workers) == 2
    fams, samples = metrics(d.port)
    for name, kind in PROCESS_FAMILIES.items():
        assert fams[name].type == kind, (name, fams[name].type)
        labels = {dict(s.labels)["worker"] for s in fams[name].samples}
        assert labels == {"supervisor", *workers}, (name, labels)
    for label, pid in {"supervisor": d.pid, **workers}.items():
        assert sample(samples, "process_start_time_seconds", worker=label) == pytest.approx(
            start_time_of(pid), abs=1e-6
        )
        assert sample(samples, "process_resident_memory_bytes", worker=label) > 0
        assert sample(samples, "process_open_fds", worker=label) >= 3
        assert sample(samples, "process_max_fds", worker=label) >= sample(
            samples, "process_open_fds", worker=label
        )
    # CPU seconds only go up: the workers burn some answering requests.
    before = labelled(samples, "process_cpu_seconds_total", "worker")
    for _ in range(50):
        assert get(d.port, "/").status == 200
    after = labelled(metrics(d.port)[1], "process_cpu_seconds_total", "worker")
    assert all(after[w] >= before[w] for w in before), (before, after)
    assert sum(after.values()) > sum(before.values())


def test_build_info_and_last_reload(daemons: Daemons) -> None:
    cfg = daemons.tmpdir() / "pounce.toml"
    cfg.write_text("[logging]\naccess_log = false\n")
    d = daemons.fd(APP, "-c", str(cfg), "--metrics-public", workers=1)
    fams, samples = metrics(d.port)
    assert fams["pounce_build_info"].type == "gauge"
    (info,) = fams["pounce_build_info"].samples
    assert info.value == 1
    assert info.labels["version"] == pounce.__version__
    assert info.labels["python"] == platform.python_version()
    assert info.labels["gil"] in ("enabled", "disabled")
    first = sample(samples, "pounce_last_reload_success_timestamp_seconds")
    # Loaded at start: between the supervisor's start and now.
    assert start_time_of(d.pid) <= first <= time.time()
    assert sample(samples, "pounce_last_reload_successful") == 1

    result = d.ctl("reload")
    assert result.returncode == 0, both(result) + d.output
    d.wait_workers(1, generation=2)
    _, samples = metrics(d.port)
    assert sample(samples, "pounce_last_reload_success_timestamp_seconds") > first
    assert sample(samples, "pounce_last_reload_successful") == 1
    # The new generation's worker is labelled; the old one is gone.
    new = workers_of(d.status())
    assert set(labelled(samples, "process_open_fds", "worker")) == {"supervisor", *new}
    second = sample(samples, "pounce_last_reload_success_timestamp_seconds")

    cfg.write_text("[logging]\naccess_log = maybe\n")  # not TOML: the reload fails
    assert d.ctl("reload").returncode != 0
    _, samples = metrics(d.port)
    assert sample(samples, "pounce_last_reload_successful") == 0
    assert sample(samples, "pounce_last_reload_success_timestamp_seconds") == second


def test_per_worker_requests_match_who_answered(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--metrics-public", workers=2)
    workers = workers_of(d.status())
    by_pid = {pid: label for label, pid in workers.items()}
    _, samples = metrics(d.port)
    before = labelled(samples, "pounce_worker_requests_total", "worker")
    answered: Counter[str] = Counter()
    for _ in range(40):
        reply = get(d.port, "/")
        assert reply.status == 200
        answered[by_pid[reply.json()["pid"]]] += 1

    def counted() -> dict[str, float]:
        now = labelled(metrics(d.port)[1], "pounce_worker_requests_total", "worker")
        return {w: now.get(w, 0) - before.get(w, 0) for w in workers}

    # The supervisor asks every worker for a fresh snapshot on each scrape.
    expected = {w: float(answered.get(w, 0)) for w in workers}
    assert wait_for(lambda: counted() == expected, 10), (counted(), expected)
    fams, samples = metrics(d.port)
    assert fams["pounce_worker_requests"].type == "counter"
    assert set(labelled(samples, "pounce_worker_connections_active", "worker")) == set(workers)
    assert set(labelled(samples, "pounce_worker_requests_in_flight", "worker")) == set(workers)


def test_thread_mode_has_only_the_supervisor_process(daemons: Daemons) -> None:
    d = daemons.fd(APP, "--worker-mode", "thread", "--metrics-public", workers=2)
    status = d.status()
    _, samples = metrics(d.port)
    assert set(labelled(samples, "process_resident_memory_bytes", "worker")) == {"supervisor"}
    ids = {str(w["id"]) for w in status["workers"]}
    assert set(labelled(samples, "pounce_worker_requests_total", "worker")) == ids
