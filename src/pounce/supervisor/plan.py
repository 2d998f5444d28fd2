"""Pure decisions of the supervisor: what a reload keeps, opens and closes, and which
workers to start or stop to reach the target count.  No asyncio, no sockets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pounce.config import Config, ListenConfig


class HasListenConfig(Protocol):
    @property
    def config(self) -> ListenConfig: ...


L = TypeVar("L", bound=HasListenConfig)


def listen_key(listener_config: Any) -> tuple[Any, ...]:
    """What makes two ``[[listen]]`` entries the same socket."""
    c = listener_config
    return (c.host, c.port, c.path, c.fd, c.name)


@dataclass(frozen=True, slots=True)
class ListenerPlan(Generic[L]):
    """A reload's listeners: for each new ``[[listen]]`` entry (in order) the open
    listener it keeps, or None when one must be opened; and the old ones no longer
    listed, closed once the old generation has gone."""

    slots: tuple[tuple[ListenConfig, L | None], ...]
    removed: tuple[L, ...]


def plan_listeners(old: Sequence[L], new: Sequence[ListenConfig]) -> ListenerPlan[L]:
    old_by_key = {listen_key(lst.config): lst for lst in old}
    slots = tuple((listen, old_by_key.get(listen_key(listen))) for listen in new)
    new_keys = {listen_key(listen) for listen in new}
    removed = tuple(lst for lst in old if listen_key(lst.config) not in new_keys)
    return ListenerPlan(slots, removed)


def needs_restart(old: Config, new: Config) -> list[str]:
    """Settings a reload can't apply; the operator must restart the daemon for them."""
    checks = {
        "control.socket": (old.control.socket, new.control.socket),
        "admin.host": (old.admin.host, new.admin.host),
        "admin.port": (old.admin.port, new.admin.port),
        "server.worker_mode": (old.server.worker_mode, new.server.worker_mode),
        "logging.file": (old.logging.file, new.logging.file),
    }
    return [key for key, (a, b) in checks.items() if a != b]


class Started(Protocol):
    @property
    def started(self) -> float: ...


W = TypeVar("W", bound=Started)


@dataclass(frozen=True, slots=True)
class WorkerPlan(Generic[W]):
    """To reach the target: how many workers to start, and which ones to stop."""

    start: int
    stop: tuple[W, ...]


def plan_workers(current: Sequence[W], target: int) -> WorkerPlan[W]:
    """Start the missing ones; stop the newest beyond ``target`` (the oldest stay,
    as their connections are warm)."""
    if len(current) < target:
        return WorkerPlan(target - len(current), ())
    surplus = sorted(current, key=lambda h: h.started)[target:]
    return WorkerPlan(0, tuple(surplus))
