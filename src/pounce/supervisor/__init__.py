"""Running workers: in this process for one worker, forked processes for more."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from types import FrameType

from pounce.config import Config
from pounce.errors import PounceError
from pounce.net.listeners import Listener
from pounce.types import ASGIApp
from pounce.worker.server import run_worker

log = logging.getLogger("pounce.error")


def serve(config: Config, listeners: Sequence[Listener], load_app: Callable[[], ASGIApp]) -> int:
    """Serve until a stop signal; return the exit code."""
    if config.server.workers <= 1:
        run_worker(config, listeners, load_app)
        return 0
    return _run_processes(config, listeners, load_app)


def _child(config: Config, listeners: Sequence[Listener], load_app: Callable[[], ASGIApp]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    code = 0
    try:
        run_worker(config, listeners, load_app)
    except PounceError as exc:
        print(f"pounce: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        logging.shutdown()
        sys.stderr.flush()
    os._exit(code)


def _run_processes(
    config: Config, listeners: Sequence[Listener], load_app: Callable[[], ASGIApp]
) -> int:
    """Fork ``server.workers`` processes sharing the listeners; stop them all on a signal."""
    children: dict[int, int] = {}
    for index in range(config.server.workers):
        pid = os.fork()
        if pid == 0:
            _child(config, listeners, load_app)
        children[pid] = index
    pending: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)  # only enqueue; the loop below does the work

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, on_signal)
    exit_code = 0
    stopping = False
    try:
        while children:
            select.select([wake_r], [], [], 1.0)
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            while pending:
                signum = pending.pop(0)
                if signum == signal.SIGCHLD:
                    continue
                stopping = True
                for pid in children:
                    _kill(pid, signum)
            for pid, code in _reap(children):
                if code != 0 and not stopping:
                    log.error("worker %d exited with %d; stopping the other workers", pid, code)
                    exit_code = code if code > 0 else 1
                    stopping = True
                    for other in children:
                        _kill(other, signal.SIGTERM)
    finally:
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)
    return exit_code


def _reap(children: dict[int, int]) -> list[tuple[int, int]]:
    """Collect the exit codes of children that ended, without blocking."""
    ended: list[tuple[int, int]] = []
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            break
        if pid == 0:
            break
        if children.pop(pid, None) is not None:
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
