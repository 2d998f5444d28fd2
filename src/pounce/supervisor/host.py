"""What the supervisor does for its host process: reap orphans, raise the fd limit.

As a container's entrypoint Pounce is PID 1 (or, under a service manager, it may be
a child subreaper): every orphaned process of the app (``cmd &`` in a subprocess) is
re-parented to it, and a process nobody waits for stays a zombie.  Like gunicorn's
arbiter, the supervisor reaps them; its workers are left to asyncio's child watcher,
which classifies their exits.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("pounce.error")


def child_pids() -> set[int]:
    """This process's children (of every thread), from ``/proc/self/task/*/children``."""
    pids: set[int] = set()
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return pids
    for task in tasks:
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return pids


def has_exited(pid: int) -> bool:
    """Whether child ``pid`` has exited and waits to be reaped (it is not reaped here)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


def reap(pid: int) -> int | None:
    """Reap ``pid``; its exit code (negative: the signal), or None if it was not ready."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if got else None


class OrphanReaper:
    """Reaps exited children that are not workers.

    ``sweep()`` runs on every SIGCHLD and, while a zombie is pending, on the next
    health tick.  A zombie is reaped on its second sighting: a worker that exits
    while it is being started (its pid not yet known) stays for asyncio's watcher,
    and an app running in a thread worker that waits for its own subprocess soon
    after it exits still gets its exit status.
    """

    def __init__(
        self,
        workers: Callable[[], Iterable[int | None]],
        *,
        children: Callable[[], set[int]] = child_pids,
        exited: Callable[[int], bool] = has_exited,
        reap: Callable[[int], int | None] = reap,
    ) -> None:
        self.workers = workers
        self.children = children
        self.exited = exited
        self.reap = reap
        self.pending: set[int] = set()  # zombies seen once
        self.reaped = 0

    def sweep(self) -> list[tuple[int, int]]:
        """Reap the zombies seen before; remember the new ones.  Returns (pid, code) reaped."""
        workers = {pid for pid in self.workers() if pid}
        zombies = {pid for pid in self.children() - workers if self.exited(pid)}
        done: list[tuple[int, int]] = []
        for pid in sorted(zombies & self.pending):
            code = self.reap(pid)
            if code is not None:
                done.append((pid, code))
                log.debug("reaped orphaned process %d (exit code %d)", pid, code)
        self.reaped += len(done)
        self.pending = zombies - self.pending
        return done


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit; return (before, after).

    An unlimited hard limit is capped at ``/proc/sys/fs/nr_open``, the most the
    kernel allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft
