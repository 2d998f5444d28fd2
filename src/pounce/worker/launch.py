"""How every app is started: an HTTP/1.1 request, an HTTP/2 stream, a WebSocket.

One policy, in :func:`launch`:

1. On an HTTP/1.1 connection's runner (:mod:`pounce.worker.runner`), when it is idle
   and no Task is running: the app is stepped right here, as that long-lived Task;
   most responses complete without creating a Task.
2. Else, on Python 3.12+, an eager Task: it runs up to its first suspension right here
   (``asyncio.current_task()`` is set during that step, as libraries expect).
3. Else an ordinary Task.

A Task that did not finish at once is returned: the caller puts it in the worker's
in-flight set (:func:`track`, or the HTTP/1.1 cycle removes it itself), so a drain
waits for it.  A request-wide feature that must see every app start (events, limits)
hooks in here.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from pounce.worker.runner import ConnectionRunner

_EAGER = sys.version_info >= (3, 12)
_Task = asyncio.Task
_current_task = asyncio.current_task


def launch(
    coro: Coroutine[Any, Any, None],
    loop: asyncio.AbstractEventLoop,
    runner: ConnectionRunner | None = None,
) -> asyncio.Task[None] | None:
    """Start ``coro`` (an app's run); return its Task only if it did not finish at once."""
    if runner is not None and not runner.busy and not runner.closed and _current_task(loop) is None:
        if runner.run(coro):
            return None
        return runner.task
    if _EAGER:
        task: asyncio.Task[None] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg, unused-ignore]
        return None if task.done() else task
    # (asyncio.Task directly: loop.create_task only adds checks we don't need)
    return _Task(coro, loop=loop)


def track(task: asyncio.Task[None] | None, tasks: set[asyncio.Task[None]]) -> None:
    """Keep ``task`` in the worker's in-flight set ``tasks`` until it is done."""
    if task is not None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)
