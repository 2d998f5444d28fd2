"""Counters shared by every worker of a daemon: exact, daemon-wide limits.

A :class:`SlotTable` is a small table in shared memory (Linux: a ``memfd``, mapped by
the supervisor and by every worker process; elsewhere an unlinked temporary file).
Each worker owns one slot (one 64-byte row, so two workers never write the same
cache line) and writes only its own: column :data:`CONNECTIONS` holds its open
client connections, :data:`REQUESTS` its requests in flight.

Admission (:meth:`SharedLimit.try_acquire`) takes the table's lock, sums the column
over every slot and, when that is under the limit, adds one to its own slot: no
two workers can both take the last place, so the limit is never exceeded.
:meth:`SharedLimit.release` takes one off its own slot (an aligned 8-byte store, no
lock: the other workers only read it).  The lock is ``lockf`` on the shared file
(between processes) plus a :class:`threading.Lock` (``lockf`` does not exclude
threads of one process: thread workers).

Crash safety: the supervisor owns the table and hands out the slots
(:meth:`SlotTable.claim`); when a worker exits, however it exits, the supervisor
zeroes its slot (:meth:`SlotTable.free`), so a killed worker's connections do not
stay counted.  A worker run on its own (tests, ``benchmarks/hotpath.py``) with a
limit configured gets a local one-slot table (:meth:`WorkerSlot.local`).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

#: 8-byte integers per slot: one 64-byte cache line (2 used, the rest spare).
COLUMNS = 8
#: Column: the worker's open client connections (``[limits] max_connections``).
CONNECTIONS = 0
#: Column: the worker's requests in flight (``[limits] max_concurrent_requests``).
REQUESTS = 1
_CELL = 8


def table_size(max_workers: int) -> int:
    """Slots for a daemon of at most ``max_workers`` workers: two generations at their
    largest (a reload's old one draining while the new one serves), and a margin."""
    return 2 * max_workers + 16


class SlotTable:
    """``slots`` rows of :data:`COLUMNS` signed 64-bit counters in shared memory."""

    def __init__(self, fd: int | None, buffer: mmap.mmap) -> None:
        self._fd = fd  # None: an anonymous map, one process only
        self._map = buffer
        self._cells = memoryview(buffer).cast("q")
        self.slots = len(self._cells) // COLUMNS
        self._thread_lock = threading.Lock()
        self._free: list[int] = []  # the owner's free slots (see claim)

    @classmethod
    def create(cls, slots: int) -> SlotTable:
        """A new table, zeroed, to be shared with worker processes through :meth:`fileno`."""
        size = max(1, slots) * COLUMNS * _CELL
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("pounce-counters", os.MFD_CLOEXEC)
        else:  # (not Linux: an unlinked file does the same)
            handle, path = tempfile.mkstemp(prefix="pounce-counters-")
            os.unlink(path)
            fd = handle
        try:
            os.ftruncate(fd, size)
            table = cls(fd, mmap.mmap(fd, size))
        except BaseException:
            os.close(fd)
            raise
        table._free = list(range(table.slots - 1, -1, -1))
        return table

    @classmethod
    def attach(cls, fd: int) -> SlotTable:
        """The table behind an inherited ``fd`` (a worker process's side)."""
        return cls(fd, mmap.mmap(fd, os.fstat(fd).st_size))

    @classmethod
    def local(cls) -> SlotTable:
        """A one-slot table of this process alone (a worker without a supervisor)."""
        table = cls(None, mmap.mmap(-1, COLUMNS * _CELL))
        table._free = [0]
        return table

    def fileno(self) -> int:
        """The shared file's descriptor (to pass to a worker process)."""
        if self._fd is None:
            raise ValueError("a local table has no file to share")
        return self._fd

    # -- slots (the owner's side) -------------------------------------------------------

    def claim(self) -> int | None:
        """A free slot, zeroed, or None when every slot is taken."""
        if not self._free:
            return None
        slot = self._free.pop()
        self.zero(slot)
        return slot

    def free(self, slot: int) -> None:
        """Its worker is gone: zero the slot (what it held is closed) and reuse it."""
        self.zero(slot)
        if slot not in self._free:
            self._free.append(slot)

    def zero(self, slot: int) -> None:
        with self.locked():
            base = slot * COLUMNS
            for column in range(COLUMNS):
                self._cells[base + column] = 0

    # -- counting ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclude every other worker, thread or process, for a read-and-add."""
        with self._thread_lock:
            fd = self._fd
            if fd is None:
                yield
                return
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)

    def total(self, column: int) -> int:
        """The column's sum over every slot (exact under :meth:`locked`)."""
        return sum(self._cells[column::COLUMNS])

    def value(self, slot: int, column: int) -> int:
        return int(self._cells[slot * COLUMNS + column])

    def limit(self, slot: int, column: int, maximum: int) -> SharedLimit:
        """Admission to ``column`` for the worker in ``slot``: at most ``maximum`` in all."""
        return SharedLimit(self, slot, column, maximum)


class SharedLimit:
    """At most :attr:`maximum` held at once across every slot of a table."""

    __slots__ = ("_cells", "_index", "column", "maximum", "slot", "table")

    def __init__(self, table: SlotTable, slot: int, column: int, maximum: int) -> None:
        if not 0 <= slot < table.slots:
            raise ValueError(f"slot {slot} is not in a table of {table.slots}")
        self.table = table
        self.slot = slot
        self.column = column
        self.maximum = maximum
        self._cells = table._cells
        self._index = slot * COLUMNS + column

    def try_acquire(self) -> bool:
        """Take one place if the daemon-wide total is under :attr:`maximum`."""
        table = self.table
        with table.locked():
            if table.total(self.column) >= self.maximum:
                return False
            self._cells[self._index] += 1
        return True

    def release(self) -> None:
        """Give back one place taken by :meth:`try_acquire` (this worker's slot only)."""
        cells = self._cells
        index = self._index
        if cells[index] > 0:
            cells[index] -= 1

    @property
    def held(self) -> int:
        """Places this worker holds."""
        return int(self._cells[self._index])

    def total(self) -> int:
        """Places held by every worker now."""
        with self.table.locked():
            return self.table.total(self.column)


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """A worker's seat at the table: where its :class:`SharedLimit` objects count."""

    table: SlotTable
    slot: int

    @classmethod
    def local(cls) -> WorkerSlot:
        return cls(SlotTable.local(), 0)

    def limits(
        self, max_connections: int, max_concurrent_requests: int
    ) -> tuple[SharedLimit | None, SharedLimit | None]:
        """The connection and request limits (None for a limit of 0: off)."""
        table, slot = self.table, self.slot
        return (
            table.limit(slot, CONNECTIONS, max_connections) if max_connections else None,
            table.limit(slot, REQUESTS, max_concurrent_requests)
            if max_concurrent_requests
            else None,
        )
