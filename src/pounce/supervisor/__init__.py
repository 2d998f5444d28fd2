"""The supervisor daemon: generations of workers behind sockets it owns for its whole life."""

from __future__ import annotations

import asyncio
import logging
import sys
import sysconfig
from collections.abc import Callable

from pounce.config import Config, WorkerMode
from pounce.control import ControlCommandError, socket_path_for
from pounce.control.handler import (
    AfterReply,
    DrainResult,
    ReloadResult,
    ScaleResult,
    StateResult,
    StatusResult,
    SupervisorState,
    WorkersResult,
)
from pounce.errors import PounceError
from pounce.net.listeners import Listener
from pounce.supervisor.admin import AdminServer
from pounce.supervisor.daemon import CommandFailed, Supervisor
from pounce.supervisor.host import raise_nofile_limit
from pounce.supervisor.systemd import Notifier
from pounce.types import ASGIApp

log = logging.getLogger("pounce.error")

__all__ = ["ControlAdapter", "Supervisor", "choose_worker_mode", "run_daemon"]


def choose_worker_mode(
    config: Config, *, free_threaded: bool | None = None, gil_enabled: bool | None = None
) -> WorkerMode:
    """``auto``: threads on a free-threaded build running with the GIL off, else processes.

    The supervisor never imports the app, so this sees the interpreter's own state
    (``PYTHON_GIL=1``, ``-X gil=1``); ``free_threaded`` and ``gil_enabled`` default
    to this interpreter's.
    """
    mode = config.server.worker_mode
    if mode is not WorkerMode.AUTO:
        return mode
    if free_threaded is None:
        free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if not free_threaded:
        return WorkerMode.PROCESS
    if gil_enabled is None:
        gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
    if gil_enabled:
        log.warning("the GIL is enabled: using worker processes")
        return WorkerMode.PROCESS
    return WorkerMode.THREAD


class ControlAdapter:
    """Implements the control socket's commands on a :class:`Supervisor`."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    async def status(self) -> StatusResult:
        return self.sup.status()

    async def reload(self) -> ReloadResult:
        try:
            return await self.sup.reload()
        except CommandFailed as exc:
            raise ControlCommandError(str(exc), exc.details) from None

    async def drain(self, wait: bool, timeout: float | None) -> DrainResult:
        try:
            return await self.sup.drain(wait=wait, timeout=timeout)
        except CommandFailed as exc:
            raise ControlCommandError(str(exc), exc.details) from None

    async def resume(self) -> StateResult:
        try:
            return await self.sup.resume()
        except CommandFailed as exc:
            raise ControlCommandError(str(exc), exc.details) from None

    async def stop(self, now: bool) -> AfterReply:
        # Answer first, then stop: the server calls the hook once the reply is written.
        reply: StateResult = {"state": SupervisorState.STOPPING.value, "now": now}
        return AfterReply(reply, lambda: self.sup.request_stop(now=now))

    async def scale(self, workers: int) -> ScaleResult:
        try:
            return await self.sup.scale(workers)
        except CommandFailed as exc:
            raise ControlCommandError(str(exc), exc.details) from None

    async def workers(self) -> WorkersResult:
        status = self.sup.status()
        return {"generation": status["generation"], "workers": status["workers"]}


async def _run(
    config: Config,
    listeners: list[Listener],
    load_app: Callable[[Config], Callable[[], ASGIApp]],
    reload_config: Callable[[], Config],
    mode: WorkerMode,
    notifier: Notifier,
    on_banner: Callable[[dict[str, str]], None],
) -> int:
    from pounce.control.server import ControlServer
    from pounce.logs import install_loop_error_handler

    install_loop_error_handler(asyncio.get_running_loop())
    sup = Supervisor(
        config,
        listeners,
        reload_config=reload_config,
        app_loader=load_app,
        worker_mode=mode,
        notifier=notifier,
    )
    server = ControlServer(
        socket_path_for(config.control.socket or None),
        ControlAdapter(sup),
        # The default directory must be the daemon's own; a configured one (a Kubernetes
        # emptyDir is 0777) may be writable by others, with a warning.
        strict_directory=not config.control.socket,
    )
    control: ControlServer | None = server
    extras: dict[str, str] = {}
    try:
        await server.start()
        extras["control"] = server.path
    except PounceError as exc:
        if config.control.socket:
            raise
        # The default path is taken by another daemon: serve anyway, without ctl.
        log.warning("no control socket: %s (set [control] socket)", exc)
        extras["control"] = "none (default path in use)"
        control = None
    admin: AdminServer | None = None
    if config.admin.port:
        admin = AdminServer(
            config,
            is_ready=lambda: sup.ready,
            is_live=lambda: sup.live,
            state=lambda: sup.state,
            metrics=sup.metrics_text,
        )
        extras["admin"] = await admin.start()
    on_banner(extras)
    try:
        return await sup.run()
    finally:
        if control is not None:
            await control.close()
        if admin is not None:
            await admin.close()
        notifier.close()


def run_daemon(
    config: Config,
    listeners: list[Listener],
    *,
    load_app: Callable[[Config], Callable[[], ASGIApp]],
    reload_config: Callable[[], Config],
    notifier: Notifier,
    on_banner: Callable[[dict[str, str]], None],
) -> int:
    """Run the supervisor until it stops; return the exit code."""
    before, after = raise_nofile_limit()
    if after > before:
        log.info("open files limit (RLIMIT_NOFILE): raised from %d to %d", before, after)
    else:
        log.info("open files limit (RLIMIT_NOFILE): %d", after)
    mode = choose_worker_mode(config)
    return asyncio.run(_run(config, listeners, load_app, reload_config, mode, notifier, on_banner))
