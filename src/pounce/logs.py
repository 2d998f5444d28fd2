"""Logging set-up: the error log (``pounce.error``) and the access log (``pounce.access``).

Both go to stderr, as text or as one JSON object per line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

ACCESS_FIELDS = ("client", "method", "path", "http_version", "status", "bytes", "duration_ms")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``2026-11-21T09:30:00.123Z [pid] INFO pounce.access: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object per line, with the access-log fields as keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: str = "info",
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    file: str | None = None,
) -> None:
    """Route every ``pounce.*`` logger, and ``asyncio``'s, to ``file`` (appended) or
    ``stream`` (stderr)."""
    handler: logging.Handler
    if file:
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("pounce")
    # asyncio's own warnings ("socket.send() raised exception.") take the same way, not
    # Python's last-resort handler (raw stderr); its errors come through LoopErrorHandler.
    for logger in (root, logging.getLogger("asyncio")):
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    root.setLevel(LEVELS.get(str(level).lower(), logging.INFO))


def reopen_log_files() -> None:
    """SIGUSR1: reopen log files (after logrotate moved them)."""
    for handler in logging.getLogger("pounce").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()


LOOP_ERRORS_BURST = 10
"""Event-loop errors logged in full per :data:`LOOP_ERRORS_WINDOW`, per process."""
LOOP_ERRORS_WINDOW = 10.0
"""Seconds; the errors past the burst in a window are counted and reported in one line."""


class LoopErrorHandler:
    """An event loop's exception handler that logs through ``pounce.error``, rate-limited.

    What asyncio reports outside any request ("Fatal error on transport", accept
    errors, "Task exception was never retrieved", a callback that raised) otherwise
    goes raw to stderr: no timestamp, not JSON, not in ``logging.file``.  At most
    ``burst`` of them are logged per ``window`` seconds; the rest are counted and one
    line at the end of the window says how many were left out.  ``clock`` is injected
    for tests.
    """

    def __init__(
        self,
        *,
        burst: int = LOOP_ERRORS_BURST,
        window: float = LOOP_ERRORS_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self.log = logger or logging.getLogger("pounce.error")
        self.window_start = -float("inf")
        self.logged = 0
        self.suppressed = 0
        self._report: asyncio.TimerHandle | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        now = self.clock()
        if now - self.window_start >= self.window:
            self.report_suppressed()
            self.window_start, self.logged = now, 0
        if self.logged < self.burst:
            self.logged += 1
            self._log(context)
            return
        self.suppressed += 1
        if self._report is None and not loop.is_closed():
            delay = max(self.window_start + self.window - now, 0.0)
            self._report = loop.call_later(delay, self.report_suppressed)

    def report_suppressed(self) -> None:
        """Log how many errors were left out of the current window, if any."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if self.suppressed:
            self.log.error(
                "%d more event-loop errors in %gs not logged (at most %d per %gs)",
                self.suppressed,
                self.window,
                self.burst,
                self.window,
            )
            self.suppressed = 0

    def _log(self, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "unhandled exception in the event loop")
        details = [
            f"{key}: {value!r}"
            for key, value in sorted(context.items())
            if key not in ("message", "exception")
        ]
        text = "; ".join([f"event loop: {message}", *details])
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.log.error("%s", text, exc_info=(type(exc), exc, exc.__traceback__))
        else:
            self.log.error("%s", text)


def install_loop_error_handler(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """Make ``loop`` report its errors through Pounce's logging (:class:`LoopErrorHandler`)."""
    loop.set_exception_handler(LoopErrorHandler())
    return loop


class ThrottledLog:
    """Log at most one record per key per ``interval`` seconds (no log storm under a flood).

    The next record of a key after a quiet spell says how many were left out since.
    """

    __slots__ = ("_clock", "_last", "_left_out", "interval", "logger")

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` as a warning unless ``key`` was logged within the interval."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return False
        self._last[key] = now
        left_out = self._left_out.pop(key, 0)
        if left_out:
            msg += " (%d more like this in the last %.0fs not logged)"
            args = (*args, left_out, now - last if last is not None else self.interval)
        self.logger.warning(msg, *args)
        return True
