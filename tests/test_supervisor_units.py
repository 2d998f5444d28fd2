"""Fast unit tests (no processes, no sockets) of the supervisor's pure parts: its state
table, the crash budget, the reload's listener plan, the worker plan, the status builder,
and of converge() and the control adapter with fake worker handles."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from pounce.config import Config, ListenConfig, WorkerMode, load_config
from pounce.control.handler import (
    AfterReply,
    StatusResult,
    SupervisorState,
    WorkerInfo,
    WorkerState,
)
from pounce.supervisor import ControlAdapter
from pounce.supervisor.budget import CrashBudget
from pounce.supervisor.daemon import CommandFailed, ReloadFailed, Supervisor
from pounce.supervisor.plan import needs_restart, plan_listeners, plan_workers
from pounce.supervisor.state import (
    COMMANDS_ALLOWED,
    TRANSITIONS,
    InvalidTransition,
    Lifecycle,
)
from pounce.supervisor.status import DaemonView, absolute_listener, build_status

S = SupervisorState


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the state table ------------------------------------------------------------------------


def test_every_state_has_a_row_and_only_stopping_is_final() -> None:
    assert set(TRANSITIONS) == set(SupervisorState)
    assert [s for s, moves in TRANSITIONS.items() if not moves] == [S.STOPPING]
    assert all(S.STOPPING in TRANSITIONS[s] for s in SupervisorState if s is not S.STOPPING)


@pytest.mark.parametrize(
    ("path"),
    [
        [S.RUNNING, S.RELOADING, S.RUNNING, S.STOPPING],  # start, reload, stop
        [S.RUNNING, S.DRAINING, S.RUNNING],  # drain, resume before the workers stopped
        [S.RUNNING, S.DRAINING, S.DRAINED, S.STARTING, S.RUNNING],  # drain, resume
        [S.RUNNING, S.DRAINING, S.DRAINED, S.STARTING, S.DRAINED],  # resume failed
    ],
)
def test_the_daemon_s_paths_are_allowed(path: list[SupervisorState]) -> None:
    life = Lifecycle()
    assert life.state is S.STARTING
    for to in path:
        life.move(to)
    assert life.state is path[-1]


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (S.STOPPING, S.RUNNING),
        (S.STOPPING, S.DRAINED),
        (S.DRAINED, S.RUNNING),
        (S.RUNNING, S.DRAINED),
    ],
)
def test_a_move_off_the_table_is_refused(start: SupervisorState, to: SupervisorState) -> None:
    life = Lifecycle(start)
    assert not life.can_move(to)
    with pytest.raises(InvalidTransition, match=f"from {start} to {to}"):
        life.move(to)
    assert life.state is start


def test_move_from_moves_only_from_the_expected_state() -> None:
    life = Lifecycle(S.STOPPING)  # a stop came while a reload ran
    assert not life.move_from(S.RELOADING, S.RUNNING)
    assert life.state is S.STOPPING
    life = Lifecycle(S.RELOADING)
    assert life.move_from(S.RELOADING, S.RUNNING)
    assert life.state is S.RUNNING


def test_commands_are_allowed_by_state() -> None:
    assert {s for s in SupervisorState if Lifecycle(s).allows("reload")} == {S.RUNNING}
    assert {s for s in SupervisorState if Lifecycle(s).allows("scale")} == {S.RUNNING}
    assert {s for s in SupervisorState if Lifecycle(s).allows("drain")} == {
        S.RUNNING,
        S.DRAINING,
        S.DRAINED,
    }
    assert set(COMMANDS_ALLOWED) == {"reload", "drain", "resume", "scale"}


# -- the crash budget -----------------------------------------------------------------------


def test_the_back_off_doubles_up_to_ten_seconds() -> None:
    budget = CrashBudget(FakeClock())
    delays = [budget.charge(100, 60.0) for _ in range(10)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


def test_the_budget_is_spent_within_the_window_and_refills_as_it_slides() -> None:
    clock = FakeClock()
    budget = CrashBudget(clock)
    assert budget.charge(2, 60.0) == 0.1
    clock.now += 30
    assert budget.charge(2, 60.0) == 0.2
    assert budget.charge(2, 60.0) is None  # spent: not counted
    assert budget.info(2, 60.0) == {"max_restarts": 2, "window": 60.0, "used": 2, "left": 0}
    clock.now += 31  # the first restart left the window
    assert budget.info(2, 60.0)["used"] == 1
    assert budget.charge(2, 60.0) == 0.2
    clock.now += 61
    assert budget.info(2, 60.0) == {"max_restarts": 2, "window": 60.0, "used": 0, "left": 2}


# -- the reload's plans -------------------------------------------------------------------------


@dataclass
class FakeListener:
    config: ListenConfig


def test_the_listener_plan_keeps_opens_and_removes() -> None:
    a = FakeListener(ListenConfig(host="127.0.0.1", port=8000))
    b = FakeListener(ListenConfig(path="/run/app.sock"))
    new = [ListenConfig(path="/run/app.sock"), ListenConfig(host="127.0.0.1", port=9000)]
    plan = plan_listeners([a, b], new)
    assert plan.slots == ((new[0], b), (new[1], None))  # in the new order; None: open it
    assert plan.removed == (a,)


def test_the_listener_plan_of_an_unchanged_config_opens_nothing() -> None:
    a = FakeListener(ListenConfig(host="127.0.0.1", port=8000))
    plan = plan_listeners([a], [ListenConfig(host="127.0.0.1", port=8000)])
    assert [kept for _, kept in plan.slots] == [a]
    assert plan.removed == ()


def test_needs_restart_names_the_settings_a_reload_cannot_apply() -> None:
    old = Config()
    assert needs_restart(old, Config()) == []
    new = load_config(env={}, overrides={"admin.port": 9100, "server.worker_mode": "thread"})
    assert needs_restart(old, new) == ["admin.port", "server.worker_mode"]


@dataclass
class Started:
    started: float


def test_the_worker_plan_starts_the_missing_and_stops_the_newest() -> None:
    a, b, c = Started(3.0), Started(1.0), Started(2.0)
    assert plan_workers([a, b], 5).start == 3
    assert plan_workers([a, b], 5).stop == ()
    down = plan_workers([a, b, c], 1)
    assert (down.start, down.stop) == (0, (c, a))  # the oldest (b) stays
    assert plan_workers([a, b, c], 3) == type(down)(0, ())


# -- the status builder -----------------------------------------------------------------------


@dataclass
class FakeHandle:
    id: int
    generation: int = 1
    state: WorkerState = WorkerState.READY
    started: float = 990.0
    restarts: int = 0
    pid: int | None = 4243
    thread: Any = None
    stats: dict[str, Any] = field(default_factory=dict)
    config: Config = field(default_factory=Config)
    was_drained: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    stopped_with: float | None = None

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    async def start(self, listeners: Any, supervisor_pid: int) -> None:
        pass

    def stop(self, idle_grace: float = 0.0) -> None:
        self.stopped_with = idle_grace
        self.exited.set()

    def kill(self) -> None:
        self.exited.set()


def _view(**changes: Any) -> DaemonView:
    base: dict[str, Any] = {
        "pid": 4242,
        "version": "0.1.0",
        "state": S.RUNNING,
        "started": 987.5,
        "generation": 2,
        "worker_mode": "process",
        "target_workers": 2,
        "listeners": ["http://127.0.0.1:8000", "unix:/run/app.sock"],
        "crash_budget": {"max_restarts": 5, "window": 60.0, "used": 1, "left": 4},
        "restarts": {"crash": 1},
        "reloads": {"success": 1, "failed": 0},
        "config": "/etc/pounce.toml",
    }
    return DaemonView(**(base | changes))


def test_the_status_is_built_from_data_with_the_declared_keys() -> None:
    workers = [
        FakeHandle(2, state=WorkerState.UNHEALTHY, started=999.0),
        FakeHandle(1, stats={"requests": {"200": 7, "404": 3}, "connections": 2}, restarts=1),
    ]
    status = build_status(_view(), workers, now=1000.0)
    assert set(status) == set(StatusResult.__annotations__)
    assert status["state"] == "running"
    assert status["uptime"] == 12.5
    first, second = status["workers"]
    assert set(first) == set(WorkerInfo.__annotations__)
    assert first == {
        "id": 1,
        "pid": 4243,
        "thread": None,
        "generation": 1,
        "state": "ready",
        "uptime": 10.0,
        "requests": 10,
        "connections": 2,
        "restarts": 1,
        "healthy": True,
    }
    assert (second["id"], second["healthy"], second["uptime"]) == (2, False, 1.0)


def test_a_relative_unix_socket_is_shown_absolute(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_listener("unix:app.sock") == f"unix:{tmp_path}/app.sock"
    assert absolute_listener("unix:/run/a.sock") == "unix:/run/a.sock"
    assert absolute_listener("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


# -- converge and the commands, with fake handles ------------------------------------------------


def _supervisor(workers: int = 2) -> tuple[Supervisor, list[FakeHandle]]:
    config = load_config(env={}, overrides={"server.workers": workers})
    sup = Supervisor(
        config,
        [],
        reload_config=lambda: config,
        app_loader=lambda c: lambda: None,  # type: ignore[arg-type,return-value]
        worker_mode=WorkerMode.PROCESS,
    )
    made: list[FakeHandle] = []

    def new_handle(config: Config, generation: int) -> FakeHandle:
        handle = FakeHandle(sup._next_id, generation, started=float(sup._next_id))
        sup._next_id += 1
        sup.workers[handle.id] = handle  # type: ignore[assignment]
        made.append(handle)
        return handle

    sup._new_handle = new_handle  # type: ignore[assignment,method-assign]
    return sup, made


def test_converge_starts_the_missing_workers_and_stops_the_surplus() -> None:
    async def main() -> None:
        sup, made = _supervisor(workers=2)
        sup.generation = 1
        await sup.converge()
        assert made == []  # not running yet: nothing is started
        sup.lifecycle.move(S.RUNNING)
        await sup.converge()
        assert [h.id for h in made] == [1, 2]
        sup.target_workers = 1
        await sup.converge()
        await asyncio.wait_for(made[1].exited.wait(), 5)
        assert made[1].was_drained and not made[0].was_drained  # the newest went
        assert made[1].stopped_with == Config().http.keep_alive_timeout  # a handover
        assert [h.id for h in sup.current_workers()] == [1]

    asyncio.run(main())


def test_drain_resume_and_scale_fail_with_command_failed_not_reload_failed() -> None:
    async def main() -> None:
        sup, _ = _supervisor()
        for attempt in (
            sup.drain(wait=False, timeout=None),
            sup.resume(),
            sup.scale(2),
            sup.scale(0),
        ):
            with pytest.raises(CommandFailed) as caught:
                await attempt
            assert not isinstance(caught.value, ReloadFailed)

    asyncio.run(main())


def test_the_adapter_stops_only_when_the_reply_is_sent() -> None:
    async def main() -> None:
        sup, _ = _supervisor()
        answer = await ControlAdapter(sup).stop(now=True)
        assert isinstance(answer, AfterReply)
        assert answer.result == {"state": "stopping", "now": True}
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sup._stop.is_set()  # nothing scheduled behind the server's back
        answer.then()
        assert sup._stop.is_set() and sup._stop_now

    asyncio.run(main())
