"""Choosing the event loop implementation (``server.loop``)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

from pounce.config import LoopKind
from pounce.errors import UsageError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve_loop(kind: LoopKind) -> LoopKind:
    """``auto`` becomes ``uvloop`` when it is installed, else ``asyncio``."""
    if kind is LoopKind.AUTO:
        return LoopKind.UVLOOP if uvloop_available() else LoopKind.ASYNCIO
    if kind is LoopKind.UVLOOP and not uvloop_available():
        raise UsageError(
            "server.loop = uvloop, but uvloop is not installed",
            hint="pip install 'pounce[fast]', or use loop = auto",
        )
    return kind


def loop_factory(kind: LoopKind) -> LoopFactory:
    """A callable making a new loop of the resolved kind."""
    if resolve_loop(kind) is LoopKind.UVLOOP:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
