"""The control socket: wire protocol, the interface the supervisor implements, server, client.

``pounce ctl`` imports only the light parts (protocol, client, paths), so it starts
without loading asyncio; :class:`~pounce.control.server.ControlServer` is imported
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pounce.control.client import ControlClient
from pounce.control.handler import (
    AfterReply,
    ControlHandler,
    CrashBudget,
    DrainResult,
    ReloadResult,
    ScaleResult,
    StateResult,
    StatusResult,
    SupervisorState,
    WorkerInfo,
    WorkersResult,
    WorkerState,
)
from pounce.control.paths import default_socket_path, socket_path_for
from pounce.control.protocol import COMMANDS, MAX_MESSAGE_SIZE, PROTOCOL_VERSION
from pounce.errors import (
    ControlCommandError,
    ControlCommandFailed,
    ControlError,
    ControlProtocolError,
    DaemonNotRunning,
)

if TYPE_CHECKING:
    from pounce.control.server import ControlServer

__all__ = [
    "COMMANDS",
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "AfterReply",
    "ControlClient",
    "ControlCommandError",
    "ControlCommandFailed",
    "ControlError",
    "ControlHandler",
    "ControlProtocolError",
    "ControlServer",
    "CrashBudget",
    "DaemonNotRunning",
    "DrainResult",
    "ReloadResult",
    "ScaleResult",
    "StateResult",
    "StatusResult",
    "SupervisorState",
    "WorkerInfo",
    "WorkerState",
    "WorkersResult",
    "default_socket_path",
    "socket_path_for",
]


def __getattr__(name: str) -> object:
    # ControlServer pulls in asyncio; only the daemon needs it.
    if name == "ControlServer":
        from pounce.control.server import ControlServer

        return ControlServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
