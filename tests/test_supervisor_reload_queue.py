"""Unit tests (no processes) of how the supervisor queues reload requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pounce.config import Config, WorkerMode
from pounce.supervisor.daemon import ReloadFailed, Supervisor


def supervisor(outcomes: list[Any], gate: asyncio.Event) -> Supervisor:
    """A supervisor whose reloads wait on ``gate``, then take the next of ``outcomes``."""
    sup = Supervisor(
        Config(),
        [],
        reload_config=Config,
        app_loader=lambda config: lambda: None,  # type: ignore[arg-type,return-value]
        worker_mode=WorkerMode.PROCESS,
    )
    sup.calls = 0  # type: ignore[attr-defined]

    async def reload_now() -> dict[str, Any]:
        sup.calls += 1  # type: ignore[attr-defined]
        await gate.wait()
        gate.clear()
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return dict(outcome)

    sup._reload_now = reload_now  # type: ignore[method-assign]
    return sup


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_requests_during_a_reload_share_the_one_queued_after_it() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sup = supervisor([{"generation": 2}, {"generation": 3}], gate)
        first = asyncio.ensure_future(sup.reload())
        await settle()
        assert sup.calls == 1  # type: ignore[attr-defined]
        later = [asyncio.ensure_future(sup.reload()) for _ in range(5)]
        await settle()
        assert sup.calls == 1  # type: ignore[attr-defined]  # queued, not started
        gate.set()
        assert (await first)["generation"] == 2
        await settle()
        assert sup.calls == 2  # type: ignore[attr-defined]  # one reload for all five
        gate.set()
        assert [(await f)["generation"] for f in later] == [3] * 5

    asyncio.run(main())


def test_a_failed_reload_is_reported_to_every_caller_it_covered() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sup = supervisor([ReloadFailed("bad config", ["x: unknown key"])], gate)
        callers = [asyncio.ensure_future(sup.reload()) for _ in range(3)]
        await settle()
        gate.set()
        for caller in callers:
            with pytest.raises(ReloadFailed, match="bad config"):
                await caller
        assert sup.calls == 1  # type: ignore[attr-defined]

    asyncio.run(main())


def test_a_caller_that_goes_away_does_not_cancel_the_reload() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sup = supervisor([{"generation": 2}], gate)
        impatient = asyncio.ensure_future(sup.reload())
        patient = asyncio.ensure_future(sup.reload())
        await settle()
        impatient.cancel()
        await settle()
        gate.set()
        assert (await patient)["generation"] == 2

    asyncio.run(main())
