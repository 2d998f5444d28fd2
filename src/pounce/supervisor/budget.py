"""The crash budget: how many unexpected worker exits are replaced before the daemon gives up.

A sliding window of restart times; each restart waits a back-off that doubles from
0.1 s up to 10 s.  Pure: the clock is injected, the limits are passed in (a reload
may change them).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from pounce.control.handler import CrashBudget as CrashBudgetInfo

FIRST_BACKOFF: Final = 0.1
MAX_BACKOFF: Final = 10.0


class CrashBudget:
    """Restarts within the last ``window`` seconds, at most ``max_restarts``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._times: deque[float] = deque()

    def charge(self, max_restarts: int, window: float) -> float | None:
        """Count one restart; the back-off before it, or None when the budget is spent
        (the restart is then not counted)."""
        now = self.clock()
        while self._times and self._times[0] < now - window:
            self._times.popleft()
        if len(self._times) >= max_restarts:
            return None
        self._times.append(now)
        return float(min(FIRST_BACKOFF * 2 ** (len(self._times) - 1), MAX_BACKOFF))

    def __len__(self) -> int:
        """Restarts counted at the last :meth:`charge` (the window as it was then)."""
        return len(self._times)

    def used(self, window: float) -> int:
        """Restarts within the last ``window`` seconds."""
        now = self.clock()
        return sum(1 for t in self._times if t >= now - window)

    def info(self, max_restarts: int, window: float) -> CrashBudgetInfo:
        used = self.used(window)
        return {
            "max_restarts": max_restarts,
            "window": window,
            "used": used,
            "left": max(max_restarts - used, 0),
        }
