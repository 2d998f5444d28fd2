"""What the supervisor implements to be controlled, and the shape of its answers.

:class:`ControlHandler` is the whole interface between the control socket and the
supervisor: one async method per command.  Each returns a JSON-able mapping (build
it as the matching ``TypedDict`` below so mypy checks the keys) or raises
:class:`~pounce.errors.ControlCommandError` with a message and detail lines, which
the client shows as the command's failure.  A command that must act only once its
reply is sent (``stop``) returns an :class:`AfterReply` instead.

The ``TypedDict`` classes document the replies ``pounce ctl`` renders; a client must
still treat them as untrusted JSON, since daemon and client versions may differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, Protocol, TypedDict


class SupervisorState(StrEnum):
    """The daemon's state, as reported by ``status``."""

    STARTING = "starting"
    """Opening listeners and starting the first generation."""
    RUNNING = "running"
    """Serving; the normal state."""
    RELOADING = "reloading"
    """A new generation is starting; the old one serves until it is ready."""
    DRAINING = "draining"
    """No new connections are accepted; open ones finish."""
    DRAINED = "drained"
    """Draining finished: workers are idle and accept nothing until ``resume``."""
    STOPPING = "stopping"
    """Shutting down."""


class WorkerState(StrEnum):
    """A worker's state, as reported by ``status`` and ``workers``."""

    BOOTING = "booting"
    """Spawned, not ready yet (app import, lifespan startup)."""
    READY = "ready"
    """Accepting and serving connections."""
    UNHEALTHY = "unhealthy"
    """Its heartbeat is late; it is about to be replaced."""
    DRAINING = "draining"
    """Finishing its open connections; accepts no new ones."""
    EXITED = "exited"
    """Gone, not yet replaced or forgotten."""


class WorkerInfo(TypedDict):
    """One worker.  ``pid`` is set for process workers, ``thread`` (its name) for threads."""

    id: int
    pid: int | None
    thread: str | None
    generation: int
    state: str
    uptime: float
    """Seconds since the worker started."""
    requests: int
    """Requests served since the worker started."""
    connections: int
    """Connections open now."""
    restarts: int
    """How many times this worker slot was restarted after a crash."""
    healthy: bool
    """False when its heartbeat is late."""


class CrashBudget(TypedDict):
    """Restarts allowed within a sliding window before the daemon gives up."""

    max_restarts: int
    window: float
    """The window, in seconds."""
    used: int
    left: int


class StatusResult(TypedDict):
    """The reply to ``status``.

    ``state`` is a :class:`SupervisorState` value; ``uptime`` is seconds since the
    daemon started; ``generation`` counts reloads from 1; ``worker_mode`` is
    ``"process"`` or ``"thread"``; ``config`` is the config file path, if any;
    ``listeners`` are display strings such as ``"http://127.0.0.1:8000"`` or
    ``"unix:/run/app.sock"``; ``target_workers`` is the count the daemon keeps
    (``server.workers``, or what ``scale`` set); ``restarts`` counts replacements by
    exit reason and ``reloads`` counts ``success`` and ``failed``.
    """

    pid: int
    version: str
    state: str
    uptime: float
    generation: int
    worker_mode: str
    target_workers: int
    workers: list[WorkerInfo]
    listeners: list[str]
    crash_budget: CrashBudget
    restarts: dict[str, int]
    reloads: dict[str, int]
    config: str | None


class ReloadResult(TypedDict):
    """The reply to a successful ``reload``, sent once the new generation is ready.

    ``duration`` is in seconds; ``needs_restart`` lists the changed settings (as key
    paths like ``"server.worker_mode"``) that a reload cannot apply.  A failed reload
    raises :class:`~pounce.errors.ControlCommandError` instead: the cause as the
    message, e.g. each config error as a detail line.
    """

    generation: int
    duration: float
    workers: int
    needs_restart: list[str]
    listeners: list[str]
    """The listeners the new generation serves (display strings)."""


class DrainResult(TypedDict):
    """The reply to ``drain``: the state reached and the connections still open;
    ``drain_delay`` is ``shutdown.drain_delay``, the seconds before workers stop."""

    state: str
    connections: int
    drain_delay: float


class StateResult(TypedDict):
    """The reply to ``resume`` and ``stop``: the state the daemon is now in.

    ``resume`` adds ``resumed`` (and ``generation`` when it started new workers);
    ``stop`` adds ``now``.
    """

    state: str
    resumed: NotRequired[bool]
    generation: NotRequired[int]
    now: NotRequired[bool]


class ScaleResult(TypedDict):
    """The reply to ``scale``: the worker count before and the new target.

    ``configured`` is ``server.workers``: the count the next reload returns to,
    unless the config changes it (a scale lasts until then).
    """

    previous: int
    workers: int
    configured: int


class WorkersResult(TypedDict):
    """The reply to ``workers``: every worker, and the current generation (so the
    workers of an older one, still draining after a reload, can be told apart)."""

    generation: int
    workers: list[WorkerInfo]


Result = Mapping[str, Any]
"""Any JSON-able mapping; the TypedDicts above are the documented shapes."""


@dataclass(frozen=True, slots=True)
class AfterReply:
    """A command's ``result`` and what to do once the reply has been sent.

    ``stop`` returns one: the server writes the reply, then calls ``then`` (which
    may close the server), so the client hears the answer before the daemon acts.
    """

    result: Result
    then: Callable[[], object]


class ControlHandler(Protocol):
    """The supervisor's side of the control socket: one async method per command.

    Methods run on the control server's event loop, so each should hand work to
    the supervisor loop and await its outcome rather than block.  Several
    connections may call methods concurrently (``status`` during a ``reload``).
    """

    async def status(self) -> Result:
        """The daemon's state: a :class:`StatusResult`."""
        ...

    async def reload(self) -> Result:
        """Re-read the config and replace the workers with a new generation.

        Return (a :class:`ReloadResult`) only when the new generation is ready or
        the reload failed; this may take as long as app startup does.
        """
        ...

    async def drain(self, wait: bool, timeout: float | None) -> Result:
        """Stop accepting connections and let open ones finish (a :class:`DrainResult`).

        With ``wait``, return once drained or after ``timeout`` seconds (None: no limit).
        """
        ...

    async def resume(self) -> Result:
        """Accept connections again after a drain (a :class:`StateResult`)."""
        ...

    async def stop(self, now: bool) -> Result | AfterReply:
        """Shut down, gracefully or ``now``; reply (a :class:`StateResult`) before the
        control server is closed: return an :class:`AfterReply` that stops."""
        ...

    async def scale(self, workers: int) -> Result:
        """Change the number of workers to ``workers`` (a :class:`ScaleResult`)."""
        ...

    async def workers(self) -> Result:
        """Every worker (a :class:`WorkersResult`)."""
        ...
