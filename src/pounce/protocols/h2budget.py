"""How many stream resets one HTTP/2 connection may cause (CVE-2023-44487, "rapid reset").

Sans-I/O: the clock comes in as an argument.  A connection spends one unit of
:class:`ResetBudget` for each stream that ends in RST_STREAM because of the client
(its own RST_STREAM, a malformed request, a refused stream); when the budget is
spent the connection gets GOAWAY ENHANCE_YOUR_CALM, as nginx and hyper do.
"""

from __future__ import annotations


class ResetBudget:
    """A token bucket of ``per_second`` resets (as large a burst) and a lifetime total.

    ``0`` turns either bound off.
    """

    __slots__ = ("_last", "_tokens", "per_second", "spent", "total")

    def __init__(self, per_second: int, total: int, now: float) -> None:
        self.per_second = per_second
        self.total = total
        self.spent = 0
        self._tokens = float(per_second)
        self._last = now

    def spend(self, now: float) -> bool:
        """Count one reset at ``now``; False once a bound is exceeded."""
        self.spent += 1
        if self.total and self.spent > self.total:
            return False
        if not self.per_second:
            return True
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.per_second), self._tokens + elapsed * self.per_second)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
