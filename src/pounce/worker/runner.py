"""Running a connection's requests eagerly, as the connection's own Task.

A Task per request costs a loop round trip and, on Python 3.11, Python code in
asyncio (the task registry is a ``WeakSet``; the loop's ready queue holds
``Handle`` objects).  Most apps answer without suspending, so Pounce steps the
app's coroutine directly instead (from the worker's end-of-round callback, see
``ServerState.defer``).

It does so *as a Task*: each HTTP/1.1 connection has one long-lived runner Task,
and the eager step is made with that Task entered as the loop's current task.  So
``asyncio.current_task()`` is a real Task during the step, and it is the same Task
that goes on running the app if the app suspends: ``asyncio.timeout()``, anyio
cancel scopes and ``Task.cancel()`` act on the right object.  Each request runs in
its own copy of the context (as a new Task would), so context variables set by one
request never leak into the next one on the connection.

The runner runs one app at a time.  A request that starts while the runner is
busy (its previous app still running after the response) gets an ordinary Task.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

_copy_context = contextvars.copy_context
_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)
_CancelledError = asyncio.CancelledError

#: Whether this Python lets a Task be entered by hand (CPython 3.11 to 3.13 do).
AVAILABLE = _enter_task is not None and _leave_task is not None


class ConnectionRunner:
    """One connection's Task, running its requests' apps one at a time, eagerly first."""

    __slots__ = ("_app", "_ctx", "_handing", "_handoff", "_wake", "busy", "closed", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: True from the start of an app's eager step until that app returns.
        self.busy = False
        self.closed = False
        self._app: Coroutine[Any, Any, None] | None = None
        self._ctx: contextvars.Context | None = None
        # The app suspended during its eager step, yielding _handoff: the Task must
        # wait on that before the app is stepped again.
        self._handing = False
        self._handoff: Any = None
        self._wake: asyncio.Future[None] = loop.create_future()
        self.task: asyncio.Task[None] = asyncio.Task(_Drive(self), loop=loop)

    def run(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Step ``coro`` now, as this runner's Task; True if it finished in that step.

        If it suspended, the runner's Task carries on with it.  Call only when the
        runner is not :attr:`busy` and no Task is running (a protocol callback).
        """
        loop = self.loop
        task = self.task
        ctx = _copy_context()
        self.busy = True
        _enter_task(loop, task)  # type: ignore[misc]
        try:
            yielded = ctx.run(coro.send, None)
        except StopIteration:
            self.busy = False
            return True
        except (KeyboardInterrupt, SystemExit):
            self.busy = False
            raise
        except BaseException:
            # A Task would end with it (the app's errors are handled inside ``coro``).
            self.busy = False
            return True
        finally:
            _leave_task(loop, task)  # type: ignore[misc]
        self._app = coro
        self._ctx = ctx
        self._handing = True
        self._handoff = yielded
        wake = self._wake
        if not wake.done():
            wake.set_result(None)
        return False

    def close(self) -> None:
        """The connection is gone: the Task ends once no app is running on it."""
        self.closed = True
        wake = self._wake
        if not wake.done():
            wake.set_result(None)

    # -- the Task's steps (called by the Task, through _Drive) -----------------------

    def _park(self) -> Any:
        """Nothing to run: have the Task wait for the next handover (or end)."""
        if self.closed:
            raise StopIteration
        wake = self._wake
        if wake.done():
            wake = self._wake = self.loop.create_future()
        wake._asyncio_future_blocking = True
        return wake

    def _finished(self) -> Any:
        self._app = None
        self._ctx = None
        self.busy = False
        # A cancellation meant for that app is spent: the next app starts clean.
        task = self.task
        while task.cancelling():
            task.uncancel()
        return self._park()

    def _send(self, value: Any) -> Any:
        if self._handing:
            self._handing = False
            handoff = self._handoff
            self._handoff = None
            return handoff
        app = self._app
        if app is None:
            return self._park()
        try:
            return self._ctx.run(app.send, value)  # type: ignore[union-attr]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # StopIteration: it returned (its errors are handled inside)
            return self._finished()

    def _throw(self, exc: BaseException) -> Any:
        app = self._app
        if app is None:
            # Cancelled (e.g. by the loop shutting down) with no app on it: the Task
            # ends, and the connection makes a new runner if it needs one.
            self.closed = True
            raise exc
        if self._handing:
            # The Task never waited on what the app yielded: cancel it as the Task would.
            self._handing = False
            handoff = self._handoff
            self._handoff = None
            if isinstance(exc, _CancelledError) and isinstance(handoff, asyncio.Future):
                handoff.cancel()
        try:
            return self._ctx.run(app.throw, exc)  # type: ignore[union-attr]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # StopIteration: it returned (its errors are handled inside)
            return self._finished()


class _Drive(Coroutine[Any, None, None]):
    """The runner Task's coroutine: each step continues the app being run, or parks."""

    __slots__ = ("_runner",)

    def __init__(self, runner: ConnectionRunner) -> None:
        self._runner: ConnectionRunner | None = runner

    def send(self, value: Any) -> Any:
        runner = self._runner
        if runner is None:
            raise StopIteration
        try:
            return runner._send(value)
        except BaseException:
            self._end()
            raise

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if val is None else val
        if isinstance(exc, type):
            exc = exc()
        runner = self._runner
        if runner is None:
            raise exc
        try:
            return runner._throw(exc)
        except BaseException:
            self._end()
            raise

    def _end(self) -> None:
        # The Task is over (StopIteration, or an error it ends with): let go of the
        # runner, so that runner -> Task -> this -> runner is no reference cycle.
        runner = self._runner
        if runner is not None:
            runner.closed = True
            runner.busy = False
            self._runner = None

    def close(self) -> None:
        runner = self._runner
        if runner is None:
            return
        app = runner._app
        runner._app = None
        runner.closed = True
        if app is not None:
            app.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("a connection runner is driven by its Task only")
