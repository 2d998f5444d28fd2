"""The errors Pounce raises on purpose that cross layers.

Each error carries its own remedy: an exit code for the CLI and, where it
applies, an HTTP status.  They are translated once, at a boundary (``cli`` for
exit codes, the connection for statuses), never by isinstance ladders.

Errors that one layer raises for its own use live next to their code instead:
``config.values.Invalid`` (a bad value, reported as part of a :class:`ConfigError`),
``protocols.websocket.UpgradeError`` (a :class:`ProtocolError` that carries response
headers), ``asgi.exchange.ASGIProtocolError`` and ``asgi.websocket.ClientDisconnected``
(what ASGI tells an app that misuses ``send()`` or sends to a closed WebSocket),
``supervisor.daemon.ReloadFailed`` and ``_BootFailed`` (:class:`PounceError` subclasses
carrying a reload's details or a boot failure's exit code), and the benchmark tool's own
(in ``benchmarks/pounce_bench``, outside the package).
"""

from __future__ import annotations

from collections.abc import Sequence


class PounceError(Exception):
    """Base class.  ``exit_code`` is what ``pounce`` exits with when this escapes."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(PounceError):
    """Bad command-line usage or an unreadable config file."""

    exit_code = 2


class ConfigError(PounceError):
    """The configuration is invalid.  ``errors`` lists every problem, each with its key path."""

    exit_code = 2

    def __init__(self, errors: Sequence[str], *, source: str | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.errors) == 1:
            message = f"{where}invalid configuration: {self.errors[0]}"
        else:
            lines = "\n".join(f"  {e}" for e in self.errors)
            message = f"{where}invalid configuration ({len(self.errors)} errors):\n{lines}"
        super().__init__(message)


class AppImportError(PounceError):
    """The ASGI application could not be imported or is not an ASGI 3 callable.

    ``app_traceback`` is the formatted traceback of the app's own frames when the
    app's code raised (Pounce's import machinery trimmed), else ``None``.
    """

    exit_code = 1

    def __init__(
        self, message: str, *, hint: str | None = None, app_traceback: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.app_traceback = app_traceback


class ListenerError(PounceError):
    """A listening socket could not be opened or inherited."""

    exit_code = 1


class LifespanError(PounceError):
    """The application's lifespan startup failed."""

    exit_code = 3


class ProtocolError(PounceError):
    """The peer sent bytes that break the protocol; ``status`` is what to answer with."""

    def __init__(self, message: str, status: int = 400, *, hint: str | None = None) -> None:
        # ``message`` is a fixed text that may go to the peer; ``hint`` (details that
        # may quote the peer's bytes) goes to the log only.
        super().__init__(message, hint=hint)
        self.status = status


class ControlError(PounceError):
    """The control socket could not be served or reached, or a peer broke its protocol."""

    exit_code = 1


class DaemonNotRunning(ControlError):
    """No daemon answers on the control socket: the socket is missing or refuses connections."""

    exit_code = 3


class FrameError(PounceError):
    """A length-prefixed JSON message is malformed.  ``fatal`` when the framing itself
    is broken, so the stream cannot be read any further and must be closed."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class ControlProtocolError(ControlError, FrameError):
    """A control message is malformed.  ``fatal`` when the framing itself is broken,
    so the connection cannot be read any further and must be closed."""


class LinkProtocolError(FrameError):
    """A message on the worker <-> supervisor link is malformed or of an unknown kind."""


class ControlCommandError(ControlError):
    """Raised by a control handler when a command fails; the message and ``details``
    (e.g. one line per config error) are sent back to the client."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


class ControlCommandFailed(ControlError):
    """The daemon answered a control command with an error (``ok: false``)."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)
