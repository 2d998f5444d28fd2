"""Worker entry points: a child process (``python -m pounce.worker.process``) or a thread.

The supervisor hands a worker a :class:`WorkerSpec` (over stdin for a process),
the listening sockets (inherited fds) and one end of a socket pair, the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pounce.config import Config, ListenConfig
from pounce.errors import PounceError
from pounce.logs import configure_logging, install_loop_error_handler
from pounce.net.listeners import Listener
from pounce.protocols.link import BootFailed
from pounce.types import ASGIApp
from pounce.worker.context import ServerState
from pounce.worker.link import SupervisorLink, send_blocking
from pounce.worker.loops import loop_factory
from pounce.worker.server import Worker
from pounce.worker.shared import SlotTable, WorkerSlot

log = logging.getLogger("pounce.error")

# Exit codes a worker process uses; the supervisor classifies exits by them.
EXIT_OK = 0
EXIT_BOOT_FAILED = 4


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs, in picklable form."""

    worker_id: int
    generation: int
    config: Config
    listener_fds: tuple[int, ...]
    listens: tuple[ListenConfig, ...]
    link_fd: int
    supervisor_pid: int
    dump_fd: int | None = None  # where faulthandler writes stack dumps (SIGUSR2), if not stderr
    #: The supervisor's shared counters ([limits]): the table's fd and this worker's slot.
    counters_fd: int | None = None
    counters_slot: int = 0


def _set_parent_death_signal() -> None:
    """Linux: get SIGTERM when the supervisor dies, so no orphan holds the port."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def serve_worker(
    spec: WorkerSpec,
    listeners: list[Listener],
    link_sock: socket.socket,
    load_app: Callable[[], ASGIApp],
    *,
    in_thread: bool,
    slot: WorkerSlot | None = None,
) -> int:
    """Import the app, serve until stopped; return the exit code."""
    try:
        app = load_app()
    except PounceError as exc:
        trace = getattr(exc, "app_traceback", None)
        send_blocking(link_sock, BootFailed(str(exc), exc.exit_code, trace or None))
        return EXIT_BOOT_FAILED
    interval = spec.config.workers.heartbeat_interval
    parent = None if in_thread else spec.supervisor_pid

    def make_link(state: ServerState, on_stop: Callable[[float | None], None]) -> SupervisorLink:
        return SupervisorLink(
            link_sock,
            heartbeat_interval=interval,
            snapshot=state.snapshot,
            on_stop=on_stop,
            parent_pid=parent,
        )

    worker = Worker(spec.config, app, listeners, link_factory=make_link, slot=slot)
    new_loop = loop_factory(spec.config.server.loop)

    def make_loop() -> asyncio.AbstractEventLoop:
        return install_loop_error_handler(new_loop())

    try:
        with asyncio.Runner(loop_factory=make_loop) as runner:
            runner.run(worker.serve(install_signals=not in_thread))
    except PounceError as exc:
        # Lifespan startup failed: report it as a boot failure with the app's message.
        send_blocking(link_sock, BootFailed(str(exc), exc.exit_code))
        return EXIT_BOOT_FAILED
    return EXIT_OK


def _listeners(spec: WorkerSpec) -> list[Listener]:
    out = []
    for fd, listen in zip(spec.listener_fds, spec.listens, strict=True):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        out.append(Listener(listen, sock))
    return out


def main() -> None:
    """``python -m pounce.worker.process``: read the spec from stdin and serve."""
    from pounce.asgi.app import load_app

    _set_parent_death_signal()
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # until faulthandler has its file
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec: WorkerSpec = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    # The supervisor logs what arrives on dump_fd (pounce.supervisor.workers.DumpReader).
    dump = sys.stderr if spec.dump_fd is None else spec.dump_fd
    faulthandler.register(signal.SIGUSR2, file=dump, all_threads=True)
    config = spec.config
    configure_logging(config.logging.level, config.logging.format, file=config.logging.file or None)
    link_sock = socket.socket(fileno=spec.link_fd)
    if not config.app:
        raise SystemExit(EXIT_BOOT_FAILED)
    slot = None
    if spec.counters_fd is not None:
        slot = WorkerSlot(SlotTable.attach(spec.counters_fd), spec.counters_slot)
    code = serve_worker(
        spec,
        _listeners(spec),
        link_sock,
        lambda: load_app(config),
        in_thread=False,
        slot=slot,
    )
    # The loop is closed and its handlers gone: a late SIGTERM must not turn a clean
    # exit into "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
