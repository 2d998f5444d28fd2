"""Processes: memory of a process tree from /proc, start-up to the first 200, stopping.

Memory is summed over the server's whole process tree (a supervisor and its worker
count together), read from ``/proc/PID/status``: ``VmRSS`` now and ``VmHWM``, the
kernel's own high-water mark of each process, for the peak.  Pages shared between
forked processes are counted once per process, as ``ps`` does.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """Resident memory of a process tree in KiB: now, and the sum of each process's peak."""

    processes: int
    rss_kib: int
    hwm_kib: int
    #: The largest VmRSS of a process with no children in the tree: one worker (a
    #: single-process server's only process; not a supervisor that only manages).
    worker_rss_kib: int = 0


def parse_status_kib(status_text: str, key: str) -> int:
    """The ``kB`` value of ``key`` (e.g. ``VmRSS``) in a /proc/PID/status text, else 0."""
    for line in status_text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def parse_stat_ppid(stat_text: str) -> int:
    """The parent pid in a /proc/PID/stat line (the command name may hold spaces)."""
    return int(stat_text.rpartition(")")[2].split()[1])


def children_map(proc: Path = PROC) -> dict[int, list[int]]:
    """``{ppid: [pid, ...]}`` for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = parse_stat_ppid((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(
    root: int, proc: Path = PROC, tree: dict[int, list[int]] | None = None
) -> list[int]:
    """``root`` and all its descendants."""
    if tree is None:
        tree = children_map(proc)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def tree_memory(root: int, proc: Path = PROC) -> TreeMemory:
    """Current and peak resident memory of ``root``'s process tree."""
    tree = children_map(proc)
    rss = hwm = count = worker = 0
    for pid in process_tree(root, proc, tree):
        try:
            text = (proc / str(pid) / "status").read_text()
        except OSError:
            continue  # exited meanwhile
        count += 1
        this = parse_status_kib(text, "VmRSS")
        rss += this
        hwm += parse_status_kib(text, "VmHWM")
        if not tree.get(pid):
            worker = max(worker, this)
    return TreeMemory(count, rss, hwm, worker)


def http_status(host: str, port: int, path: str, timeout: float = 1.0) -> int:
    """One GET on a fresh connection; the status code (raises OSError when refused)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_for_200(
    proc: subprocess.Popen[bytes], host: str, port: int, path: str, *, timeout: float
) -> float:
    """Poll until ``GET path`` answers 200; the seconds it took since now.

    Returns early with ``-1.0`` when the process exits first, or ``-2.0`` on timeout.
    """
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            return -1.0
        try:
            if http_status(host, port, path) == 200:
                return time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.005)
    return -2.0


def stop_group(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the process group ``proc`` leads (it was started with a new session),
    wait up to ``grace`` seconds, then SIGKILL the group."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # children of a server that exited first may still hold the port: kill the group too
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def pin_prefix(cpu: int | None) -> list[str]:
    """``taskset -c CPU`` as a command prefix, or nothing when not pinning."""
    if cpu is None:
        return []
    return ["taskset", "-c", str(cpu)]


def pinning_possible(cpus: tuple[int | None, int | None]) -> bool:
    """Whether both CPUs exist in this process's affinity mask."""
    allowed = os.sched_getaffinity(0)
    return all(c is not None and c in allowed for c in cpus)
