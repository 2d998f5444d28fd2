"""The connection runner on its own: what a Task would do, without a Task per request."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest

from pounce.worker.runner import AVAILABLE, ConnectionRunner

pytestmark = pytest.mark.timeout(30)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_entering_a_task_by_hand_is_available_here() -> None:
    assert AVAILABLE  # CPython 3.11-3.13: the eager path is what these tests exercise


def run_in_callback(fn: Any) -> Any:
    """Run ``fn(loop)`` from a loop callback (no Task running), as a transport would."""

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def callback() -> None:
            try:
                done.set_result(fn(loop))
            except BaseException as exc:  # handed to the test
                done.set_exception(exc)

        loop.call_soon(callback)
        return await done

    return asyncio.run(main())


def test_an_app_that_does_not_suspend_finishes_in_the_step_as_the_runner_task() -> None:
    seen: list[Any] = []

    async def app() -> None:
        seen.append(asyncio.current_task())

    def step(loop: asyncio.AbstractEventLoop) -> tuple[bool, Any]:
        runner = ConnectionRunner(loop)
        finished = runner.run(app())
        runner.close()
        return finished, runner.task

    finished, task = run_in_callback(step)
    assert finished
    assert seen == [task]


def test_an_app_that_suspends_goes_on_in_the_same_task() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        seen: list[Any] = []
        done = asyncio.Event()

        async def app() -> None:
            seen.append(asyncio.current_task())
            await asyncio.sleep(0.01)
            seen.append(asyncio.current_task())
            await asyncio.sleep(0)
            seen.append(asyncio.current_task())
            done.set()

        runner = ConnectionRunner(loop)
        results: list[bool] = []
        loop.call_soon(lambda: results.append(runner.run(app())))
        await asyncio.wait_for(done.wait(), 5)
        assert results == [False]
        await asyncio.sleep(0)
        assert not runner.busy
        runner.close()
        await asyncio.wait_for(runner.task, 5)
        return [*seen, runner.task]

    seen = asyncio.run(main())
    assert seen[0] is seen[1] is seen[2] is seen[3]


def test_each_run_has_a_fresh_context() -> None:
    values: list[str] = []

    async def app() -> None:
        values.append(VAR.get())
        VAR.set("changed")

    def step(loop: asyncio.AbstractEventLoop) -> None:
        runner = ConnectionRunner(loop)
        runner.run(app())
        runner.run(app())
        runner.close()

    run_in_callback(step)
    assert values == ["unset", "unset"]
    assert VAR.get() == "unset"


def test_a_timeout_cancels_the_app_and_the_runner_is_clean_after() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        outcomes: list[Any] = []
        done = asyncio.Event()

        async def app() -> None:
            try:
                async with asyncio.timeout(0.02):
                    await asyncio.sleep(10)
            except TimeoutError:
                outcomes.append("timeout")
            task = asyncio.current_task()
            assert task is not None
            outcomes.append(task.cancelling())
            done.set()

        runner = ConnectionRunner(loop)
        loop.call_soon(runner.run, app())
        await asyncio.wait_for(done.wait(), 5)
        runner.close()
        await asyncio.wait_for(runner.task, 5)
        return outcomes

    assert asyncio.run(main()) == ["timeout", 0]


def test_cancelling_the_runner_cancels_the_suspended_app() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        events: list[str] = []
        started = asyncio.Event()

        async def app() -> None:
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise

        runner = ConnectionRunner(loop)
        loop.call_soon(runner.run, app())
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0)
        runner.task.cancel()
        for _ in range(100):
            if events:
                break
            await asyncio.sleep(0.01)
        assert not runner.busy  # the app is over; the runner can take the next one
        runner.close()
        await asyncio.wait_for(runner.task, 5)
        return events

    assert asyncio.run(main()) == ["cancelled"]


def test_the_loop_shutting_down_ends_an_idle_runner() -> None:
    async def main() -> ConnectionRunner:
        return ConnectionRunner(asyncio.get_running_loop())

    # asyncio.run cancels the pending Task on the way out: it must end, not hang.
    runner = asyncio.run(main())
    assert runner.task.done()
    assert runner.closed


def test_a_closed_runner_is_freed_without_the_cycle_collector() -> None:
    async def main() -> weakref.ref[asyncio.Task[None]]:
        runner = ConnectionRunner(asyncio.get_running_loop())
        await asyncio.sleep(0)
        runner.close()
        await asyncio.wait_for(runner.task, 5)
        return weakref.ref(runner.task)  # (the runner has no weak references; its Task has)

    gc.disable()
    try:
        ref = asyncio.run(main())
        assert ref() is None
    finally:
        gc.enable()
