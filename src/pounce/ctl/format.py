"""Plain-text formatting shared by ``pounce ctl`` output: no rich, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_duration(seconds: object) -> str:
    """A short, human duration: ``350ms``, ``4.2s``, ``42s``, ``5m 03s``, ``3h 02m``, ``2d 04h``.

    Anything that is not a number (a field missing from an older daemon) is ``-``.
    """
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds != seconds:
        return "-"
    s = max(float(seconds), 0.0)
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    whole = int(s)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def format_count(value: object) -> str:
    """An integer with thousands separators, or ``-`` when it is not one."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "-"
    return f"{value:,}"


def format_text(value: object) -> str:
    """A status field as text: ``-`` when it is missing or not a plain value."""
    if value is None or isinstance(value, Mapping | list):
        return "-"
    return str(value)


def as_list(value: object) -> list[Any]:
    """A status field that should be a list; ``[]`` when it is not one."""
    return value if isinstance(value, list) else []
