"""Worker handles: start a worker (process or thread), talk to it, stop it, learn how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from enum import StrEnum

from pounce.config import Config
from pounce.control.handler import WorkerState as WorkerState
from pounce.metrics import Snapshot, empty_snapshot
from pounce.net.listeners import Listener
from pounce.protocols.link import (
    BootFailed,
    Bye,
    Heartbeat,
    Ready,
    SnapshotReply,
    Stop,
    SupervisorMessage,
    WorkerMessage,
    decode_from_worker,
    encode,
)
from pounce.types import ASGIApp
from pounce.worker.link import receive
from pounce.worker.process import EXIT_BOOT_FAILED, WorkerSpec, serve_worker
from pounce.worker.shared import SlotTable, WorkerSlot

log = logging.getLogger("pounce.error")

# Variables a worker must not inherit: they belong to the supervisor (sd_notify, activation).
PRIVATE_ENV_PREFIXES = ("NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_")


class ExitReason(StrEnum):
    """How a worker ended, as shown in logs, ``ctl status`` and metrics."""

    CLEAN = "clean"
    CRASH = "crash"
    SIGNAL = "signal"
    BOOT_FAILURE = "boot_failure"
    TIMEOUT = "timeout"
    SPAWN_FAILURE = "spawn_failure"  # the supervisor could not start it (fork, fds, thread)


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIXES)}


class WorkerHandle:
    """The supervisor's side of one worker."""

    def __init__(
        self,
        worker_id: int,
        generation: int,
        config: Config,
        on_message: Callable[[WorkerHandle, WorkerMessage], None],
        on_exit: Callable[[WorkerHandle], None],
    ) -> None:
        self.id = worker_id
        self.generation = generation
        self.config = config
        self.state = WorkerState.BOOTING
        self.started = time.monotonic()
        self.last_heartbeat = self.started
        self.stats: Snapshot = empty_snapshot()
        self.restarts = 0
        self.boot_error: str | None = None
        self.boot_code: int | None = None
        self.spawn_error: str | None = None
        self.boot_traceback: str | None = None  # the app's frames, when its import raised
        self.exit_code: int | None = None
        self.reason: ExitReason | None = None
        self.timed_out = False
        self.was_drained = False  # told to stop: its exit is expected
        self.was_ready = False
        self.ready_event = asyncio.Event()
        self.exited = asyncio.Event()
        self._on_message = on_message
        self._on_exit = on_exit
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # held until the worker has exited
        self._reader: asyncio.Task[None] | None = None  # reads the link
        self.pid: int | None = None
        self.thread: threading.Thread | None = None
        #: The supervisor's shared counters ([limits]) and this worker's slot in them
        #: (None when none was free); the supervisor zeroes the slot when it exits.
        self.counters: SlotTable | None = None
        self.slot: int | None = None

    # -- common --------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else (self.thread.name if self.thread else "?")
        return f"worker {self.id} ({who}, gen {self.generation})"

    def send(self, message: SupervisorMessage) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(encode(message))

    async def _open_link(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._writer = writer
        self._reader = asyncio.get_running_loop().create_task(self._read(reader))
        self._tasks.add(self._reader)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        async for message in receive(reader, decode_from_worker, self.describe()):
            self._handle(message)

    def _handle(self, message: WorkerMessage) -> None:
        match message:
            case Heartbeat():
                self.stats = message.stats
                self.last_heartbeat = time.monotonic()
                if self.state is WorkerState.UNHEALTHY:
                    self.state = WorkerState.READY
            case Bye() | SnapshotReply():
                self.stats = message.stats
            case Ready():
                self.was_ready = True
                self.last_heartbeat = time.monotonic()
                if self.state is WorkerState.BOOTING:
                    self.state = WorkerState.READY
                self.ready_event.set()
            case BootFailed():
                self.boot_error = message.error
                self.boot_code = message.code
                self.boot_traceback = message.traceback
        self._on_message(self, message)

    def _ended(self, code: int) -> None:
        """Called once when the worker is gone."""
        self.exit_code = code
        if self.spawn_error is not None:
            self.reason = ExitReason.SPAWN_FAILURE
        elif not self.was_ready or self.boot_error is not None:
            self.reason = ExitReason.BOOT_FAILURE
        elif self.timed_out:
            self.reason = ExitReason.TIMEOUT
        elif code == 0:
            self.reason = ExitReason.CLEAN
        elif code < 0:
            self.reason = ExitReason.SIGNAL
        else:
            self.reason = ExitReason.CRASH
        self.state = WorkerState.EXITED
        for task in self._tasks:
            task.cancel()
        if self._writer is not None:
            self._writer.close()
        self.exited.set()
        self.ready_event.set()  # wake anyone waiting for readiness
        self._on_exit(self)

    def exit_text(self) -> str:
        if self.reason is ExitReason.SPAWN_FAILURE:
            return f"spawn failure: {self.spawn_error}"
        if self.reason is ExitReason.BOOT_FAILURE:
            return f"boot failure: {self.boot_error or f'exit code {self.exit_code}'}"
        if self.reason is ExitReason.SIGNAL and self.exit_code is not None:
            name = signal.Signals(-self.exit_code).name
            hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
            return f"killed by {name}{hint}"
        if self.reason is ExitReason.TIMEOUT:
            return "heartbeat timeout"
        return f"{self.reason} (exit code {self.exit_code})"

    async def start(self, listeners: Sequence[Listener], supervisor_pid: int) -> None:
        """Start the worker; never raises.

        A worker that cannot be started (fork fails with EAGAIN under a pids limit,
        EMFILE, a thread that can't start) ends at once as a ``spawn_failure`` exit,
        so the supervisor counts and replaces it like any other; no handle is left
        registered as booting with nothing behind it.
        """
        try:
            await self._launch(listeners, supervisor_pid)
        except Exception as exc:
            self.spawn_error = f"{type(exc).__name__}: {exc}"
            self._ended(1)

    def _seat(self) -> WorkerSlot | None:
        """Where this worker counts for ``[limits]`` (None when its config sets no limit)."""
        limits = self.config.limits
        if not (limits.max_connections or limits.max_concurrent_requests):
            return None
        if self.counters is None or self.slot is None:
            # Refused rather than started uncounted: the limit would no longer hold.
            raise RuntimeError(
                "no free slot in the shared [limits] counters: too many workers alive at once"
            )
        return WorkerSlot(self.counters, self.slot)

    # -- overridden per mode -------------------------------------------------------

    async def _launch(self, listeners: Sequence[Listener], supervisor_pid: int) -> None:
        raise NotImplementedError

    def stop(self, idle_grace: float = 0.0) -> None:
        """Graceful: finish in-flight requests, then exit.

        ``idle_grace``: how long idle keep-alive connections may still send one request
        (a reload keeps clients error-free this way); 0 closes them at once.
        """
        self.send(Stop(idle_grace))

    def kill(self) -> None:
        """Immediate (processes only; a thread cannot be killed)."""

    def dump_traceback(self) -> None:
        """Write the worker's stack traces to the log (processes only)."""


class ProcessWorker(WorkerHandle):
    """A worker in a child process: ``python -m pounce.worker.process``."""

    proc: asyncio.subprocess.Process | None = None

    async def _launch(self, listeners: Sequence[Listener], supervisor_pid: int) -> None:
        seat = self._seat()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await self._exec(ours, theirs, listeners, supervisor_pid, seat)
        except BaseException:
            ours.close()
            self.kill()  # started but not linked: it must not live on unseen
            raise
        self._tasks.add(asyncio.get_running_loop().create_task(self._wait()))

    async def _exec(
        self,
        ours: socket.socket,
        theirs: socket.socket,
        listeners: Sequence[Listener],
        supervisor_pid: int,
        seat: WorkerSlot | None,
    ) -> None:
        # The worker's faulthandler writes its stack dumps here; we log them (see DumpReader).
        try:
            dump_read, dump_write = os.pipe()
        except BaseException:
            theirs.close()
            raise
        fds = tuple(listener.sock.fileno() for listener in listeners)
        counters = () if seat is None else (seat.table.fileno(),)
        spec = WorkerSpec(
            worker_id=self.id,
            generation=self.generation,
            config=self.config,
            listener_fds=fds,
            listens=tuple(listener.config for listener in listeners),
            link_fd=theirs.fileno(),
            supervisor_pid=supervisor_pid,
            dump_fd=dump_write,
            counters_fd=counters[0] if counters else None,
            counters_slot=0 if seat is None else seat.slot,
        )
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pounce.worker.process",
                stdin=subprocess.PIPE,
                pass_fds=(*fds, theirs.fileno(), dump_write, *counters),
                env=worker_env(),
            )
        except BaseException:
            os.close(dump_read)
            raise
        finally:
            theirs.close()
            os.close(dump_write)
        self.pid = self.proc.pid
        await DumpReader.attach(dump_read, self.describe())
        assert self.proc.stdin is not None
        self.proc.stdin.write(pickle.dumps(spec))
        with contextlib.suppress(OSError):
            await self.proc.stdin.drain()
        self.proc.stdin.close()
        await self._open_link(ours)

    async def _wait(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        # Read what the worker said before it went ("ready", a last snapshot, "bye"):
        # the exit may be noticed before those lines are.
        reader = self._reader
        if reader is not None and not reader.done():
            await asyncio.wait([reader], timeout=1.0)
        self._ended(code)

    def stop(self, idle_grace: float = 0.0) -> None:
        # The link's "stop" is enough; SIGTERM only when the link is gone.
        if self._writer is not None and not self._writer.is_closing():
            super().stop(idle_grace)
        else:
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def dump_traceback(self) -> None:
        self._signal(signal.SIGUSR2)

    def forward(self, signum: int) -> None:
        self._signal(signum)

    def _signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)


class DumpReader(asyncio.Protocol):
    """Reads a worker's faulthandler output and logs each dump as one ``pounce.error``
    record, so stack dumps reach ``logging.file`` and are JSON under ``format = "json"``.

    faulthandler writes from its C signal handler straight to the pipe, so a worker
    stuck anywhere (even holding the GIL) still gets its stacks out; a dump ends when
    the pipe goes quiet for :attr:`QUIET` seconds or closes (the worker exited).
    """

    QUIET = 0.2

    def __init__(self, who: str) -> None:
        self.who = who
        self.chunks: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    async def attach(cls, fd: int, who: str) -> None:
        pipe = os.fdopen(fd, "rb", buffering=0)
        try:
            await asyncio.get_running_loop().connect_read_pipe(lambda: cls(who), pipe)
        except BaseException:
            pipe.close()
            raise

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.QUIET, self.flush)

    def eof_received(self) -> bool | None:
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.chunks:
            text = b"".join(self.chunks).decode("utf-8", "replace").rstrip()
            self.chunks.clear()
            log.error("%s stack dump:\n%s", self.who, text)


class ThreadWorker(WorkerHandle):
    """A worker on a thread of the supervisor process, with its own event loop."""

    async def _finish(self, code: int) -> None:
        # As for a process: read what the worker said last (a boot failure's cause) first.
        reader = self._reader
        if reader is not None and not reader.done():
            await asyncio.wait([reader], timeout=1.0)
        self._ended(code)

    load_app: Callable[[], ASGIApp] | None = None

    async def _launch(self, listeners: Sequence[Listener], supervisor_pid: int) -> None:
        assert self.load_app is not None
        seat = self._seat()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Each worker loop closes its own copy of the listening socket when it stops.
        copies = [Listener(lst.config, lst.sock.dup()) for lst in listeners]
        spec = WorkerSpec(
            worker_id=self.id,
            generation=self.generation,
            config=self.config,
            listener_fds=tuple(c.sock.fileno() for c in copies),
            listens=tuple(c.config for c in copies),
            link_fd=theirs.fileno(),
            supervisor_pid=supervisor_pid,
        )
        loop = asyncio.get_running_loop()
        load_app = self.load_app

        def body() -> None:
            code = 1
            try:
                code = serve_worker(spec, copies, theirs, load_app, in_thread=True, slot=seat)
            except BaseException:
                log.exception("thread worker %d crashed", self.id)
                code = 1 if self.boot_error is None else EXIT_BOOT_FAILED
            finally:
                theirs.close()
                for copy in copies:
                    copy.sock.close()
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(self._finish(code), loop)

        self.thread = threading.Thread(target=body, name=f"pounce-worker-{self.id}", daemon=True)
        await self._open_link(ours)
        try:
            self.thread.start()
        except BaseException:
            theirs.close()
            for copy in copies:
                copy.sock.close()
            raise
