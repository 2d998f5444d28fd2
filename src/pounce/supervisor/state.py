"""The supervisor's states and the moves between them, as a table (as h11's ``_state.py``).

:class:`Lifecycle` holds the state; every change goes through :meth:`Lifecycle.move`,
which refuses a move the table does not list.  :data:`COMMANDS_ALLOWED` says in
which states each control command may start.  Pure: no asyncio, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pounce.control.handler import SupervisorState
from pounce.errors import PounceError

STARTING: Final = SupervisorState.STARTING
RUNNING: Final = SupervisorState.RUNNING
RELOADING: Final = SupervisorState.RELOADING
DRAINING: Final = SupervisorState.DRAINING
DRAINED: Final = SupervisorState.DRAINED
STOPPING: Final = SupervisorState.STOPPING

TRANSITIONS: Final[Mapping[SupervisorState, frozenset[SupervisorState]]] = {
    # the first generation is up; or (resume after a drain) its workers failed to start
    STARTING: frozenset({RUNNING, DRAINED, STOPPING}),
    RUNNING: frozenset({RELOADING, DRAINING, STOPPING}),
    # a reload ends, successful or not
    RELOADING: frozenset({RUNNING, STOPPING}),
    # the workers have stopped; or resume before they did
    DRAINING: frozenset({DRAINED, RUNNING, STOPPING}),
    # resume starts a new generation
    DRAINED: frozenset({STARTING, STOPPING}),
    STOPPING: frozenset(),
}
"""Each state to the states it may move to."""

COMMANDS_ALLOWED: Final[Mapping[str, frozenset[SupervisorState]]] = {
    "reload": frozenset({RUNNING}),
    "drain": frozenset({RUNNING, DRAINING, DRAINED}),
    "resume": frozenset({DRAINING, DRAINED}),
    "scale": frozenset({RUNNING}),
}
"""The states in which each state-changing command may start."""

ACCEPTING: Final = frozenset({RUNNING, RELOADING})
"""States in which workers serve (readiness can be true, replacements are started)."""

WINDING_DOWN: Final = frozenset({DRAINING, DRAINED, STOPPING})
"""States in which a worker's exit is expected and not replaced."""


class InvalidTransition(PounceError):
    """A move the transition table does not allow (a bug in the supervisor)."""


class Lifecycle:
    """The supervisor's state; moved only along :data:`TRANSITIONS`."""

    __slots__ = ("state",)

    def __init__(self, state: SupervisorState = STARTING) -> None:
        self.state = state

    def can_move(self, to: SupervisorState) -> bool:
        return to in TRANSITIONS[self.state]

    def move(self, to: SupervisorState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"the supervisor cannot go from {self.state} to {to}")
        self.state = to

    def move_from(self, expected: SupervisorState, to: SupervisorState) -> bool:
        """Move to ``to`` if the state is still ``expected``; whether it moved."""
        if self.state is not expected:
            return False
        self.move(to)
        return True

    def allows(self, command: str) -> bool:
        """Whether ``command`` (a key of :data:`COMMANDS_ALLOWED`) may start now."""
        return self.state in COMMANDS_ALLOWED[command]
