"""A worker stand-in for the shared-counter tests: a real process holding places of a
:class:`~pounce.worker.shared.SlotTable` inherited by fd, driven line by line.

Commands on stdin, one answer line each on stdout:
``acquire N`` -> how many of N tries were admitted; ``release N`` -> ``ok``;
``held`` -> the places its slot holds.  Every read is bounded by a timeout.
"""

from __future__ import annotations

import select
import subprocess
import sys

from helpers.server import child_env

SCRIPT = """
import sys
from pounce.worker.shared import CONNECTIONS, SlotTable
fd, slot, maximum = (int(a) for a in sys.argv[1:4])
limit = SlotTable.attach(fd).limit(slot, CONNECTIONS, maximum)
print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "acquire":
        print(sum(limit.try_acquire() for _ in range(int(arg))), flush=True)
    elif cmd == "release":
        for _ in range(int(arg)):
            limit.release()
        print("ok", flush=True)
    elif cmd == "held":
        print(limit.held, flush=True)
"""


class SlotProcess:
    """``python -c SCRIPT`` on ``fd`` (the table), counting in ``slot`` up to ``maximum``."""

    def __init__(self, fd: int, slot: int, maximum: int, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(fd), str(slot), str(maximum)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(fd,),
            env=child_env(),
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        assert ready, "the slot process did not answer in time"
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    def send(self, command: str) -> None:
        """Send without waiting for the answer (to race another process)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self) -> str:
        return self._line()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(self.timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
