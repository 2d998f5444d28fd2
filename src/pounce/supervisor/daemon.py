"""The supervisor: owns the listeners, runs generations of workers, reloads, restarts.

Signal handlers only enqueue; :meth:`Supervisor.run` does the work through the
``_SIGNALS`` table.  Its state moves only along the table in
:mod:`pounce.supervisor.state`; the decisions that need no I/O live in pure modules
(:mod:`~pounce.supervisor.budget`, :mod:`~pounce.supervisor.plan`,
:mod:`~pounce.supervisor.status`).  Every state change is reported to systemd
(sd_notify), to ``pounce ctl status`` and to the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pounce._version import __version__
from pounce.config import Config, WorkerMode
from pounce.control.handler import (
    CrashBudget as CrashBudgetInfo,
)
from pounce.control.handler import (
    DrainResult,
    ReloadResult,
    ScaleResult,
    StateResult,
    StatusResult,
    SupervisorState,
)
from pounce.errors import PounceError
from pounce.logs import reopen_log_files
from pounce.metrics import Snapshot, add_counters, empty_snapshot, merge, process_figures, render
from pounce.net.listeners import Listener, open_listener
from pounce.protocols.link import (
    MetricsReply,
    MetricsRequest,
    Ready,
    SnapshotReply,
    SnapshotRequest,
    StateUpdate,
    WorkerMessage,
)
from pounce.supervisor.budget import CrashBudget
from pounce.supervisor.host import OrphanReaper
from pounce.supervisor.plan import listen_key, needs_restart, plan_listeners, plan_workers
from pounce.supervisor.refuse import Refuser
from pounce.supervisor.state import (
    ACCEPTING,
    DRAINED,
    DRAINING,
    RELOADING,
    RUNNING,
    STARTING,
    STOPPING,
    WINDING_DOWN,
    Lifecycle,
)
from pounce.supervisor.status import DaemonView, build_status
from pounce.supervisor.systemd import Notifier
from pounce.supervisor.workers import (
    ExitReason,
    ProcessWorker,
    ThreadWorker,
    WorkerHandle,
    WorkerState,
)
from pounce.types import ASGIApp
from pounce.worker.shared import SlotTable, table_size

log = logging.getLogger("pounce.error")

EXIT_BUDGET_EXHAUSTED = 1
KILL_GRACE = 5.0  # seconds past shutdown.timeout before a draining worker is killed


class CommandFailed(PounceError):
    """A command (reload, drain, resume, scale) was refused or failed; ``details`` says why."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


class ReloadFailed(CommandFailed):
    """A reload was rejected or rolled back."""


__all__ = ["CommandFailed", "ReloadFailed", "Supervisor", "listen_key"]


class Supervisor:
    """Runs until stopped; :meth:`run` returns the process exit code."""

    def __init__(
        self,
        config: Config,
        listeners: list[Listener],
        *,
        reload_config: Callable[[], Config],
        app_loader: Callable[[Config], Callable[[], ASGIApp]],
        worker_mode: WorkerMode,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.reload_config = reload_config
        self.app_loader = app_loader
        self.worker_mode = worker_mode
        self.notifier = notifier or Notifier({})
        self.lifecycle = Lifecycle()
        self.generation = 0
        self._last_generation = 0  # the highest number handed out, a failed one included
        self.started = time.monotonic()
        self.target_workers = config.server.workers
        self.workers: dict[int, WorkerHandle] = {}
        self._next_id = 1
        self.budget = CrashBudget()
        self._lineage: deque[int] = deque()  # restart counts handed on to replacements
        self.spawn_failing = False  # the last attempt to start a worker failed
        self.restarts: Counter[str] = Counter()
        self.reloads: Counter[str] = Counter({"success": 0, "failed": 0})
        self.last_reload = {"time": time.time(), "ok": True}  # the config was just loaded
        self.retired: Snapshot = empty_snapshot()
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._stop_now = False
        self._interrupts = 0
        self._reload_lock = asyncio.Lock()
        self._queued_reload: asyncio.Future[ReloadResult] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._signal_task: asyncio.Task[None] | None = None  # runs on through the shutdown
        self._loops: set[asyncio.Task[None]] = set()  # health and watchdog checks
        self._drain_task: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._snapshot_waiters: dict[int, asyncio.Future[None]] = {}  # by request id
        self._snapshot_ids = itertools.count(1)
        self.refuser: Refuser | None = None  # set in run(): needs the loop
        self.counters: SlotTable | None = None  # [limits]: made by _shared_counters
        self.reaper = OrphanReaper(lambda: [h.pid for h in self.workers.values()])

    @property
    def state(self) -> SupervisorState:
        """The daemon's state (moved by :attr:`lifecycle` along its transition table)."""
        return self.lifecycle.state

    # -- life cycle ------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.refuser = Refuser(loop)
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._signals.put_nowait, signum)
        try:
            await self._start_first_generation()
        except PounceError:
            self.notifier.stopping("start-up failed")
            await self._stop_workers(self.workers.values(), now=True)
            raise
        self._signal_task = loop.create_task(self._signal_loop(), name="signals")
        self._loops.add(loop.create_task(self._health_loop(), name="health checks"))
        if self.notifier.watchdog_interval:
            self._loops.add(loop.create_task(self._watchdog_loop(), name="watchdog"))
        await self._stop.wait()
        await self._shutdown()
        return self.exit_code

    async def _start_first_generation(self) -> None:
        self.generation = self._claim_generation()
        started = await self._start_generation(self.config, self.generation, self.listeners)
        # (a worker that was ready and then crashed on a request is the crash budget's
        # business, not a start-up failure)
        failed = [w for w in started if not w.was_ready]
        if failed:
            worker = failed[0]
            message = worker.boot_error or (
                f"{worker.describe()} failed to start: {worker.exit_text()}"
                if not worker.alive
                else f"workers not ready within reload.timeout ({self.config.reload.timeout}s)"
            )
            raise _BootFailed(message, worker.boot_code or 1, worker.boot_traceback)
        self.lifecycle.move(RUNNING)
        self._broadcast_state()
        log.info("generation 1 ready: %d worker(s), %s mode", len(started), self.worker_mode.value)
        self.notifier.ready(self.status_line())

    async def _shutdown(self) -> None:
        self.lifecycle.move(STOPPING)
        self.notifier.stopping()
        # The signal loop runs on, so that a second SIGINT during the drain stops at once.
        for task in self._loops:
            task.cancel()
        self._refuse_new_connections()
        await self._stop_workers(list(self.workers.values()), now=self._stop_now)
        if self._signal_task is not None:
            self._signal_task.cancel()
        if self.refuser is not None:
            self.refuser.stop()
        log.info("supervisor stopped")

    def request_stop(self, *, now: bool = False, code: int | None = None) -> None:
        if code is not None and self.exit_code == 0:
            self.exit_code = code
        self._stop_now = self._stop_now or now
        self._stop.set()

    def _spawn_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, held until it ends; its failure is logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervisor task %r failed", task.get_name(), exc_info=task.exception())

    # -- generations -------------------------------------------------------------------

    def _claim_generation(self) -> int:
        """The next generation number; one that failed to start is never used again."""
        self._last_generation = max(self._last_generation, self.generation) + 1
        return self._last_generation

    def _new_handle(self, config: Config, generation: int) -> WorkerHandle:
        handle: WorkerHandle
        if self.worker_mode is WorkerMode.THREAD:
            handle = ThreadWorker(
                self._next_id, generation, config, self._on_message, self._on_exit
            )
            handle.load_app = self.app_loader(config)
        else:
            handle = ProcessWorker(
                self._next_id, generation, config, self._on_message, self._on_exit
            )
        self._next_id += 1
        limits = config.limits
        if limits.max_connections or limits.max_concurrent_requests:
            handle.counters = self._shared_counters(config)
            handle.slot = handle.counters.claim()  # None: the start fails (spawn failure)
        self.workers[handle.id] = handle
        return handle

    def _shared_counters(self, config: Config) -> SlotTable:
        """The table of the workers' [limits] counters, made when a config first sets one.

        Sized for two generations at ``workers.max``; a worker that finds no free slot
        is not started (a spawn failure, logged and retried) rather than left uncounted.
        """
        if self.counters is None:
            self.counters = SlotTable.create(table_size(config.max_workers()))
        return self.counters

    async def _start_generation(
        self, config: Config, generation: int, listeners: Sequence[Listener]
    ) -> list[WorkerHandle]:
        """Start ``server.workers`` workers, ``reload.max_surge`` at a time; wait for each batch.

        Returns the handles; any that is not READY at the end failed or timed out.
        """
        count = self.target_workers
        surge = config.reload.max_surge or count
        deadline = time.monotonic() + config.reload.timeout
        started: list[WorkerHandle] = []
        while len(started) < count:
            batch = [
                self._new_handle(config, generation)
                for _ in range(min(surge, count - len(started)))
            ]
            started += batch
            for handle in batch:
                await handle.start(listeners, os.getpid())
            ok = await self._wait_ready(batch, deadline - time.monotonic())
            if not ok:
                break
        return started

    async def _wait_ready(self, batch: Iterable[WorkerHandle], timeout: float) -> bool:
        waits = [asyncio.ensure_future(h.ready_event.wait()) for h in batch]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), max(timeout, 0.0))
        except TimeoutError:
            return False
        finally:
            for w in waits:
                w.cancel()
        return all(h.state is WorkerState.READY for h in batch)

    async def _stop_workers(
        self, handles: Iterable[WorkerHandle], *, now: bool = False, handover: bool = False
    ) -> None:
        """Stop ``handles`` and wait (killing them after ``shutdown.timeout``).

        ``handover``: other workers go on serving (reload, scale down), so idle
        keep-alive connections may send one more request for up to
        ``http.keep_alive_timeout`` and are answered with ``Connection: close``
        instead of being closed under a client that is just sending.
        """
        handles = [h for h in handles if h.alive]
        for handle in handles:
            handle.was_drained = True
            handle.state = WorkerState.DRAINING
            if now:
                handle.kill()
            else:
                handle.stop(handle.config.http.keep_alive_timeout if handover else 0.0)
        if not handles:
            return
        grace = 2.0 if now else self.config.shutdown.timeout + KILL_GRACE
        waits = [asyncio.ensure_future(h.exited.wait()) for h in handles]
        _, pending = await asyncio.wait(waits, timeout=grace)
        if pending:
            for handle in handles:
                if handle.alive:
                    log.warning("%s did not stop in time; killing it", handle.describe())
                    handle.kill()
            await asyncio.wait(waits, timeout=2.0)
        for w in waits:
            w.cancel()

    def current_workers(self) -> list[WorkerHandle]:
        return [
            h
            for h in self.workers.values()
            if h.generation == self.generation and h.alive and h.state is not WorkerState.DRAINING
        ]

    # -- worker events -------------------------------------------------------------------

    def _on_message(self, handle: WorkerHandle, message: WorkerMessage) -> None:
        match message:
            case Ready():
                self._send_state(handle)
            case MetricsRequest():
                self._spawn_task(self._answer_metrics(handle, message.id), "answer metrics")
            case SnapshotReply():
                waiter = self._snapshot_waiters.pop(message.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _on_exit(self, handle: WorkerHandle) -> None:
        self.workers.pop(handle.id, None)
        if handle.counters is not None and handle.slot is not None:
            # Whatever it held is closed now, even after a crash: zero its slot.
            handle.counters.free(handle.slot)
            handle.slot = None
        if self.spawn_failing != (handle.reason is ExitReason.SPAWN_FAILURE):
            self.spawn_failing = not self.spawn_failing
            self._broadcast_state()  # liveness on public listeners follows at once
        add_counters(self.retired, handle.stats)
        expected = (
            handle.was_drained
            or self.state in WINDING_DOWN
            or handle.generation != self.generation
            or (self.state is STARTING and not handle.was_ready)  # start-up failure
        )
        level = logging.INFO if expected and handle.reason is ExitReason.CLEAN else logging.WARNING
        if not (self.state is STARTING and handle.reason is ExitReason.BOOT_FAILURE):
            # (a start-up failure is reported once, by the exception that ends the daemon)
            log.log(level, "%s exited: %s", handle.describe(), handle.exit_text())
        if not expected:
            self._replace(handle)

    def _replace(self, handle: WorkerHandle) -> None:
        """An unexpected exit: charge the crash budget, then bring the workers back to target."""
        reason = handle.reason.value if handle.reason else "crash"
        delay = self._charge_budget(reason, handle)
        if delay is None:
            return
        self._lineage.append(handle.restarts + 1)
        log.info("replacing %s in %.1fs", handle.describe(), delay)
        self._spawn_task(self._converge_after(delay), "replace worker")

    def _charge_budget(self, reason: str, handle: WorkerHandle) -> float | None:
        """Count one restart; the back-off before it, or None when the budget is spent."""
        window = self.config.workers.restart_window
        delay = self.budget.charge(self.config.workers.max_restarts, window)
        if delay is None:
            log.error(
                "crash budget exhausted: %d restarts within %.0fs (workers.max_restarts=%d); "
                "last: %s %s; stopping",
                len(self.budget) + 1,
                window,
                self.config.workers.max_restarts,
                handle.describe(),
                handle.exit_text(),
            )
            self.notifier.status(f"crash budget exhausted: {handle.exit_text()}")
            self.request_stop(code=EXIT_BUDGET_EXHAUSTED)
            return None
        self.restarts[reason] += 1
        return delay

    async def _converge_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.converge()

    async def converge(self, *, ready_within: float | None = None) -> None:
        """Bring the workers of the current generation to ``target_workers``.

        The one place that starts and stops workers to match the target (as
        gunicorn's ``manage_workers``), after a crash and for ``scale``.  The newest
        surplus workers are stopped (handing over their keep-alive connections).  A
        worker that fails to start ends as a ``spawn_failure`` exit, which charges the
        crash budget and schedules the next attempt with back-off.  With
        ``ready_within``, wait up to that many seconds for the new workers to be ready.
        """
        if self.state not in ACCEPTING:
            return
        # (during a reload the old generation retires whole; only a running daemon scales down)
        surplus = plan_workers(self.current_workers(), self.target_workers).stop
        if surplus and self.state is RUNNING:
            for handle in surplus:
                handle.was_drained = True
            self._spawn_task(self._stop_workers(surplus, handover=True), "scale down")
        started: list[WorkerHandle] = []
        while (
            self.state in ACCEPTING
            and plan_workers(self.current_workers(), self.target_workers).start
        ):
            new = self._new_handle(self.config, self.generation)
            new.restarts = self._lineage.popleft() if self._lineage else 0
            await new.start(self.listeners, os.getpid())
            if not new.alive:
                break  # a spawn failure: _on_exit has scheduled the next attempt
            started.append(new)
            if self.spawn_failing:
                self.spawn_failing = False
                self._broadcast_state()
        if started and ready_within is not None:
            await self._wait_ready(started, ready_within)

    # -- periodic checks -----------------------------------------------------------------

    async def _health_loop(self) -> None:
        interval = self.config.workers.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self._broadcast_state()
            if self.reaper.pending:
                self.reaper.sweep()
            timeout = self.config.workers.timeout
            now = time.monotonic()
            for handle in list(self.workers.values()):
                if handle.state is not WorkerState.READY or now - handle.last_heartbeat <= timeout:
                    continue
                if isinstance(handle, ProcessWorker):
                    log.error(
                        "%s has not heartbeated for %.1fs (workers.timeout=%.1f): "
                        "dumping its traceback and killing it",
                        handle.describe(),
                        now - handle.last_heartbeat,
                        timeout,
                    )
                    handle.timed_out = True
                    handle.dump_traceback()
                    asyncio.get_running_loop().call_later(0.5, handle.kill)
                else:
                    log.error(
                        "%s is stalled (no heartbeat for %.1fs); threads can't be killed",
                        handle.describe(),
                        now - handle.last_heartbeat,
                    )
                handle.state = WorkerState.UNHEALTHY

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval or 1.0
        while True:
            if self.healthy:
                self.notifier.watchdog()
            await asyncio.sleep(interval)

    @property
    def healthy(self) -> bool:
        return not any(h.state is WorkerState.UNHEALTHY for h in self.workers.values())

    @property
    def ready(self) -> bool:
        """Ready: serving, with at least ``workers.min_ready`` workers ready (or all of them
        when fewer are configured)."""
        if self.state not in ACCEPTING:
            return False
        needed = min(self.config.workers.min_ready, self.target_workers)
        ready = sum(1 for h in self.current_workers() if h.state is WorkerState.READY)
        return ready >= needed

    @property
    def live(self) -> bool:
        """Live unless the supervisor cannot start workers (its last attempt failed)."""
        return not self.spawn_failing

    def _broadcast_state(self) -> None:
        for handle in list(self.workers.values()):
            self._send_state(handle)

    def _send_state(self, handle: WorkerHandle) -> None:
        ready = self.ready and handle.state is not WorkerState.DRAINING
        handle.send(StateUpdate(ready, self.live))

    # -- signals -------------------------------------------------------------------------

    async def _signal_loop(self) -> None:
        while True:
            signum = await self._signals.get()
            action = _SIGNALS.get(signum)
            if action is not None:
                await action(self)

    async def _on_term(self) -> None:
        log.info("SIGTERM: graceful stop")
        self.request_stop()

    async def _on_int(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            log.warning("second SIGINT: stopping at once")
            self._hard_exit()
        log.info("SIGINT: graceful stop (again to stop at once)")
        self.request_stop()

    async def _on_quit(self) -> None:
        log.warning("SIGQUIT: stopping at once")
        self._hard_exit()

    def _hard_exit(self) -> None:
        for handle in self.workers.values():
            handle.kill()
        self.notifier.stopping()
        logging.shutdown()
        os._exit(1)

    async def _on_hup(self) -> None:
        # In the background: the signal loop goes on, so that SIGHUPs arriving during a
        # reload fold into one following reload and a SIGTERM is not held up.
        log.info("SIGHUP: reloading")
        self._spawn_task(self._reload_for_signal(), "reload (SIGHUP)")

    async def _reload_for_signal(self) -> None:
        try:
            result = await self.reload()
            log.info(
                "reload done: generation %d in %.2fs", result["generation"], result["duration"]
            )
        except ReloadFailed:
            pass  # logged by reload()

    async def _on_ttin(self) -> None:
        with contextlib.suppress(CommandFailed):  # logged by scale()
            await self.scale(self.target_workers + 1)

    async def _on_ttou(self) -> None:
        if self.target_workers > 1:
            with contextlib.suppress(CommandFailed):
                await self.scale(self.target_workers - 1)

    async def _on_chld(self) -> None:
        # Orphans re-parented to us (PID 1, a subreaper); workers are asyncio's to reap.
        self.reaper.sweep()

    async def _on_usr1(self) -> None:
        reopen_log_files()
        for handle in self.workers.values():
            if isinstance(handle, ProcessWorker):
                handle.forward(signal.SIGUSR1)

    # -- metrics ---------------------------------------------------------------------------

    async def metrics_text(self) -> str:
        """Fresh snapshots from every live worker, added to the retired totals."""
        await self._round_trip()
        total = merge(self.retired, [h.stats for h in self.workers.values()])
        return render(total, self.daemon_figures())

    async def _round_trip(self, timeout: float = 1.0) -> None:
        """Ask every live worker for a snapshot and wait for the answers (``timeout`` at most).

        The link is ordered: once a worker answered, it has also handled every message
        sent to it before (a new ``state``).
        """
        live = [h for h in self.workers.values() if h.alive and h.state is not WorkerState.BOOTING]
        loop = asyncio.get_running_loop()
        waits: dict[int, asyncio.Future[None]] = {}
        for handle in live:
            ident = next(self._snapshot_ids)
            waits[ident] = self._snapshot_waiters[ident] = loop.create_future()
            handle.send(SnapshotRequest(ident))
        if waits:
            await asyncio.wait(waits.values(), timeout=timeout)
        for ident in waits:
            self._snapshot_waiters.pop(ident, None)

    def _refuse_new_connections(self) -> None:
        """No worker accepts any more: reset new connections at once instead of queueing them."""
        if self.refuser is not None and not self.refuser.on:
            self.refuser.start(self.listeners)
            log.info("no worker accepts: new connections are refused")

    def daemon_figures(self) -> dict[str, Any]:
        states: Counter[str] = Counter(
            {s.value: 0 for s in WorkerState if s is not WorkerState.EXITED}
        )
        for handle in self.workers.values():
            states[handle.state.value] += 1
        return {
            "workers": dict(states),
            "restarts": {r.value: self.restarts.get(r.value, 0) for r in ExitReason},
            "reloads": dict(self.reloads),
            "generation": self.generation,
            "crash_budget": self.crash_budget(),
            "last_reload": self.last_reload,
            "per_worker": {str(h.id): h.stats for h in self.workers.values() if h.alive},
            "processes": process_figures(
                {str(h.id): h.pid for h in self.workers.values() if h.alive and h.pid}
            ),
        }

    async def _answer_metrics(self, handle: WorkerHandle, ident: int) -> None:
        text = await self.metrics_text()
        handle.send(MetricsReply(ident, text))

    def crash_budget(self) -> CrashBudgetInfo:
        workers = self.config.workers
        return self.budget.info(workers.max_restarts, workers.restart_window)

    def status_line(self) -> str:
        ready = sum(1 for h in self.current_workers() if h.state is WorkerState.READY)
        return f"gen {self.generation}: {ready}/{self.target_workers} workers ready"

    # -- reload, drain, scale (also the control socket's commands) ---------------------------

    async def reload(self) -> ReloadResult:
        """Reload; requests made while another waits to start share its outcome.

        A request made while a reload runs queues one more (the config may have changed
        after the running one read it); every request made before that one starts
        joins it, so N signals in a burst cost at most two reloads.
        """
        queued = self._queued_reload
        if queued is None:
            queued = self._queued_reload = asyncio.get_running_loop().create_future()
            # (retrieved here, so that a caller that went away leaves no unretrieved error)
            queued.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._spawn_task(self._run_queued_reload(queued), "reload")
        return await asyncio.shield(queued)

    async def _run_queued_reload(self, outcome: asyncio.Future[ReloadResult]) -> None:
        async with self._reload_lock:
            self._queued_reload = None  # requests from now on need a reload of their own
            try:
                outcome.set_result(await self._reload_now())
            except ReloadFailed as exc:
                outcome.set_exception(exc)
            except BaseException as exc:
                outcome.set_exception(ReloadFailed(f"reload failed: {exc!r}"))
                raise

    async def _reload_now(self) -> ReloadResult:
        if not self.lifecycle.allows("reload"):
            raise ReloadFailed(f"cannot reload while {self.state}")
        self.lifecycle.move(RELOADING)
        self.notifier.reloading()
        began = time.monotonic()
        try:
            result = await self._reload()
        except ReloadFailed as exc:
            self.reloads["failed"] += 1
            self.last_reload["ok"] = False
            details = "".join(f"\n  {line}" for line in exc.details if line != str(exc))
            log.error("reload failed: %s%s", exc, details)
            raise
        finally:
            self.lifecycle.move_from(RELOADING, RUNNING)
            self._broadcast_state()
            self.notifier.ready(self.status_line())
        self.reloads["success"] += 1
        self.last_reload = {"time": time.time(), "ok": True}
        result["duration"] = round(time.monotonic() - began, 3)
        return result

    async def _reload(self) -> ReloadResult:
        try:
            new_config = self.reload_config()
        except PounceError as exc:
            details = list(getattr(exc, "errors", ()) or [str(exc)])
            raise ReloadFailed("the new configuration is invalid", details) from None
        restart_for = needs_restart(self.config, new_config)
        plan = plan_listeners(self.listeners, new_config.listen)
        keep: list[Listener] = []
        opened: list[Listener] = []
        try:
            for listen, existing in plan.slots:
                if existing is not None:
                    keep.append(existing)
                else:
                    new = open_listener(listen, backlog=new_config.server.backlog)
                    opened.append(new)
                    keep.append(new)
        except PounceError as exc:
            for lst in opened:
                lst.close()
            raise ReloadFailed("a new listener could not be opened", [str(exc)]) from None
        generation = self._claim_generation()
        old = self.current_workers()
        self.target_workers = new_config.server.workers
        started = await self._start_generation(new_config, generation, keep)
        failed = [h for h in started if h.state is not WorkerState.READY]
        if failed:
            handle = failed[0]
            cause = (
                handle.exit_text()
                if not handle.alive
                else (f"not ready within reload.timeout ({new_config.reload.timeout}s)")
            )
            await self._stop_workers(started, now=True)
            for lst in opened:
                lst.close()
            self.target_workers = self.config.server.workers
            # The app's traceback (when its import raised) before the one-line cause.
            trace = (handle.boot_traceback or "").splitlines()
            raise ReloadFailed(
                f"generation {generation} failed: {handle.describe()}: {cause}", [*trace, cause]
            )
        self.config = new_config
        self.listeners = keep
        self.generation = generation
        self.lifecycle.move_from(RELOADING, RUNNING)
        self._broadcast_state()
        for handle in old:
            handle.was_drained = True
        self._spawn_task(
            self._retire(old, list(plan.removed)), f"retire generation {generation - 1}"
        )
        log.info("generation %d ready; draining generation %d", generation, generation - 1)
        return {
            "generation": generation,
            "duration": 0.0,  # set by _reload_now
            "workers": len(started),
            "needs_restart": restart_for,
            "listeners": [lst.describe() for lst in keep],
        }

    async def _retire(self, old: list[WorkerHandle], removed: list[Listener]) -> None:
        await self._stop_workers(old, handover=True)
        for lst in removed:
            lst.close()

    async def drain(self, *, wait: bool, timeout: float | None) -> DrainResult:
        if not self.lifecycle.allows("drain"):
            raise CommandFailed(f"cannot drain while {self.state}")
        if self.state is RUNNING:
            self.lifecycle.move(DRAINING)
            self._drained.clear()
            self._broadcast_state()
            self.notifier.status("draining")
            self._drain_task = self._spawn_task(self._drain(), "drain")
            await self._round_trip()  # every worker's readiness path answers 503 from now on
        if wait:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                raise CommandFailed(f"not drained within {timeout}s") from None
        connections = sum(int(h.stats.get("connections", 0)) for h in self.workers.values())
        return {
            "state": self.state.value,
            "connections": connections,
            "drain_delay": self.config.shutdown.drain_delay,
        }

    async def _drain(self) -> None:
        log.info(
            "draining: /health/ready answers 503; stopping in %.1fs",
            self.config.shutdown.drain_delay,
        )
        await asyncio.sleep(self.config.shutdown.drain_delay)
        self._drain_task = None  # past the point where resume can undo it
        self._refuse_new_connections()
        await self._stop_workers(list(self.workers.values()))
        drained = self.lifecycle.move_from(DRAINING, DRAINED)  # (not when stopping meanwhile)
        self._drained.set()  # a `drain --wait` returns either way
        if drained:
            self.notifier.status("drained")
            log.info("drained: no worker is serving")

    async def resume(self) -> StateResult:
        if self.state is DRAINING and self._drain_task is not None and not self._drain_task.done():
            self._drain_task.cancel()
            self.lifecycle.move(RUNNING)
            self._broadcast_state()
            await self._round_trip()
            self.notifier.status(self.status_line())
            return {"state": self.state.value, "resumed": True}
        if self.state is DRAINED:
            self.generation = self._claim_generation()
            self.lifecycle.move(STARTING)
            if self.refuser is not None:
                self.refuser.stop()  # the new workers accept; queued connections wait for them
            started = await self._start_generation(self.config, self.generation, self.listeners)
            if any(h.state is not WorkerState.READY for h in started):
                await self._stop_workers(started, now=True)
                if self.lifecycle.move_from(STARTING, DRAINED):
                    self._refuse_new_connections()
                raise CommandFailed("could not start workers again")
            if not self.lifecycle.move_from(STARTING, RUNNING):
                raise CommandFailed(f"resume interrupted: the daemon is {self.state}")
            self._broadcast_state()
            self.notifier.status(self.status_line())
            return {"state": self.state.value, "resumed": True, "generation": self.generation}
        raise CommandFailed(f"nothing to resume: the daemon is {self.state}")

    async def scale(self, workers: int) -> ScaleResult:
        # Every check before any state changes.
        limit = self.config.max_workers()
        if workers < 1:
            problem = "scale needs at least 1 worker"
        elif workers > limit:
            problem = f"cannot scale to {workers} workers: workers.max is {limit}"
        elif not self.lifecycle.allows("scale"):
            problem = f"cannot scale while {self.state}"
        else:
            problem = ""
        if problem:
            log.warning("scale refused: %s", problem)
            raise CommandFailed(problem)
        previous = self.target_workers
        self.target_workers = workers
        await self.converge(ready_within=self.config.reload.timeout)
        configured = self.config.server.workers
        log.info(
            "scaled to %d worker(s); the next reload returns to server.workers (%d) "
            "unless the config changes it",
            workers,
            configured,
        )
        self.notifier.status(self.status_line())
        return {"previous": previous, "workers": workers, "configured": configured}

    # -- status --------------------------------------------------------------------------

    def status(self) -> StatusResult:
        view = DaemonView(
            pid=os.getpid(),
            version=__version__,
            state=self.state,
            started=self.started,
            generation=self.generation,
            worker_mode=self.worker_mode.value,
            target_workers=self.target_workers,
            listeners=[lst.describe() for lst in self.listeners],
            crash_budget=self.crash_budget(),
            restarts=dict(self.restarts),
            reloads=dict(self.reloads),
            # absolute, so an operator in another directory knows which file it is
            config=os.path.abspath(self.config.source) if self.config.source else None,
        )
        return build_status(view, self.workers.values(), time.monotonic())


class _BootFailed(PounceError):
    def __init__(self, message: str, code: int, app_traceback: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = code
        self.app_traceback = app_traceback


_SIGNALS: dict[int, Callable[[Supervisor], Any]] = {
    signal.SIGTERM: Supervisor._on_term,
    signal.SIGINT: Supervisor._on_int,
    signal.SIGQUIT: Supervisor._on_quit,
    signal.SIGHUP: Supervisor._on_hup,
    signal.SIGTTIN: Supervisor._on_ttin,
    signal.SIGTTOU: Supervisor._on_ttou,
    signal.SIGUSR1: Supervisor._on_usr1,
    signal.SIGCHLD: Supervisor._on_chld,
}
