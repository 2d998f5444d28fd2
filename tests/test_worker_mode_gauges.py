"""Pure parts left after the dead code went: the worker-mode choice and the gauges of a
worker's metrics snapshot (given by the worker, not kept as counters that stayed 0)."""

from __future__ import annotations

import inspect
import sys
import sysconfig

import pytest

from pounce.config import Config, WorkerMode
from pounce.config.loader import load_config
from pounce.metrics import Collector, empty_snapshot, merge
from pounce.supervisor import Supervisor, choose_worker_mode
from pounce.supervisor.workers import ProcessWorker
from pounce.worker import server


def _config(mode: str) -> Config:
    return load_config(env={}, overrides={"app": "x:app", "server.worker_mode": mode})


@pytest.mark.parametrize(
    ("free_threaded", "gil_enabled", "expected"),
    [
        (False, True, WorkerMode.PROCESS),
        (False, False, WorkerMode.PROCESS),
        (True, True, WorkerMode.PROCESS),  # PYTHON_GIL=1 / -X gil=1 on a free-threaded build
        (True, False, WorkerMode.THREAD),
    ],
)
def test_auto_picks_threads_only_on_a_free_threaded_build_with_the_gil_off(
    free_threaded: bool, gil_enabled: bool, expected: WorkerMode
) -> None:
    config = _config("auto")
    mode = choose_worker_mode(config, free_threaded=free_threaded, gil_enabled=gil_enabled)
    assert mode is expected


@pytest.mark.parametrize("mode", [WorkerMode.PROCESS, WorkerMode.THREAD])
def test_an_explicit_worker_mode_is_kept(mode: WorkerMode) -> None:
    config = _config(mode.value)
    for free_threaded in (False, True):
        chosen = choose_worker_mode(config, free_threaded=free_threaded, gil_enabled=True)
        assert chosen is mode


def test_auto_defaults_to_this_interpreter() -> None:
    threads = (
        bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
        and not getattr(sys, "_is_gil_enabled", lambda: True)()
    )
    expected = WorkerMode.THREAD if threads else WorkerMode.PROCESS
    assert choose_worker_mode(_config("auto")) is expected


def test_a_snapshot_carries_the_gauges_the_worker_gives_it() -> None:
    metrics = Collector()
    metrics.observe("GET", 200, 0.01, 5)
    snap = metrics.snapshot(3, 2)
    assert (snap["in_flight"], snap["connections"]) == (3, 2)
    assert snap["requests"] == {"GET 200": 1}
    # No counters of their own: the gauges are read from the worker's state.
    assert not hasattr(metrics, "in_flight") and not hasattr(metrics, "connections")
    assert (empty_snapshot()["in_flight"], empty_snapshot()["connections"]) == (0, 0)
    total = merge(empty_snapshot(), [snap, Collector().snapshot(1, 4)])
    assert (total["in_flight"], total["connections"]) == (4, 6)


def test_dead_extension_points_are_gone() -> None:
    assert "load_app" not in inspect.signature(choose_worker_mode).parameters
    assert not hasattr(server, "run_worker")
    assert not hasattr(ProcessWorker, "quit")
    source = inspect.getsource(Supervisor)
    assert "on_started" not in source and "on_stopping" not in source
