"""Everything Pounce says goes through its logging: event-loop errors (rate-limited),
hung workers' stack dumps, and, with ``--log-format json``, the banner."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.loop_errors_app import MARKER
from helpers.asgi import json_lines, output_lines
from helpers.daemon import Daemons, get
from helpers.server import Server, wait_for
from pounce.logs import LoopErrorHandler, configure_logging

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def log_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_entries(
    path: Path, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
) -> list[dict[str, Any]]:
    found: list[list[dict[str, Any]]] = []

    def check() -> bool:
        entries = log_entries(path)
        if predicate(entries):
            found.append(entries)
            return True
        return False

    assert wait_for(check, timeout), log_entries(path)
    return found[0]


APP_SAYS = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+)+( |$)")  # the test apps' own prints


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def not_json(text: str) -> list[str]:
    """Lines of the daemon's stdout/stderr that are no JSON object (app prints aside)."""
    lines = [line for line in output_lines(text) if not APP_SAYS.match(line)]
    return [line for line in lines if not is_json_object(line)]


# -- the handler, on a fake clock ---------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_loop_errors_are_logged_up_to_the_burst_then_counted() -> None:
    logger = logging.getLogger("pounce.tests.loop-errors")
    sink = Records()
    logger.addHandler(sink)
    logger.propagate = False
    now = [100.0]
    handler = LoopErrorHandler(burst=3, window=10.0, clock=lambda: now[0], logger=logger)
    loop = asyncio.new_event_loop()
    try:
        for i in range(5):
            handler(loop, {"message": f"boom {i}", "exception": RuntimeError(str(i))})
        assert [r.getMessage() for r in sink.records] == [
            "event loop: boom 0",
            "event loop: boom 1",
            "event loop: boom 2",
        ]
        assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in sink.records)
        now[0] += 10.0  # the next window: the count first, then the error in full
        handler(loop, {"message": "later", "transport": "<tr>"})
        assert [r.getMessage() for r in sink.records[3:]] == [
            "2 more event-loop errors in 10s not logged (at most 3 per 10s)",
            "event loop: later; transport: '<tr>'",
        ]
    finally:
        loop.close()
        logger.removeHandler(sink)


def test_the_count_is_logged_at_the_end_of_the_window_without_another_error() -> None:
    logger = logging.getLogger("pounce.tests.loop-errors-timer")
    sink = Records()
    logger.addHandler(sink)
    logger.propagate = False

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = LoopErrorHandler(burst=1, window=0.05, logger=logger)
        loop.set_exception_handler(handler)
        for _ in range(4):
            loop.call_exception_handler({"message": "x"})
        while len(sink.records) < 2:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), 10))
    logger.removeHandler(sink)
    assert [r.getMessage() for r in sink.records] == [
        "event loop: x",
        "3 more event-loop errors in 0.05s not logged (at most 1 per 0.05s)",
    ]


def test_asyncios_own_warnings_take_pounces_handler() -> None:
    loggers = [logging.getLogger(name) for name in ("pounce", "asyncio")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream=stream)
        logging.getLogger("asyncio").warning("socket.send() raised exception.")
        logging.getLogger("asyncio").debug("not shown at the default level")
    finally:
        for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers
            lg.propagate, lg.level = propagate, level
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["level"], e["message"]) for e in entries] == [
        ("asyncio", "warning", "socket.send() raised exception.")
    ]


# -- real daemons ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_loop_errors_go_to_the_log_file_as_json_and_are_rate_limited(
    daemons: Daemons, mode: str
) -> None:
    log = daemons.tmpdir() / "pounce.log"
    d = daemons.fd(
        "apps.loop_errors_app:app",
        "--log-format",
        "json",
        "--log-file",
        str(log),
        "--worker-mode",
        mode,
        workers=1,
    )
    assert get(d.port, "/?n=1").status == 200
    entries = wait_entries(log, lambda es: any(MARKER in e.get("exc_info", "") for e in es))
    first = next(e for e in entries if MARKER in e.get("exc_info", ""))
    assert first["level"] == "error" and first["logger"] == "pounce.error", first
    assert first["message"].startswith("event loop: Exception in callback"), first
    assert "RuntimeError: loop-error-marker-5521 #0" in first["exc_info"], first

    # 1000 more: 9 in full (10 per 10s window), the rest counted in one line.
    assert get(d.port, "/?n=1000").status == 200
    assert get(d.port, "/").status == 200  # served after the 1000 callbacks ran
    entries = wait_entries(log, lambda es: any("not logged" in e["message"] for e in es), 30)
    logged = [e for e in entries if MARKER in e.get("exc_info", "")]
    assert len(logged) == 10, [e["message"] for e in logged]
    counted = [e for e in entries if "not logged" in e["message"]]
    assert [e["message"] for e in counted] == [
        "991 more event-loop errors in 10s not logged (at most 10 per 10s)"
    ]
    assert MARKER not in d.output, d.output
    assert "Traceback" not in d.output, d.output


def test_a_hung_workers_stack_dump_goes_through_logging(daemons: Daemons) -> None:
    log = daemons.tmpdir() / "pounce.log"
    d = daemons.fd(
        "apps.daemon_app:app",
        "--worker-timeout",
        "2",
        "--heartbeat-interval",
        "0.2",
        "--log-format",
        "json",
        "--log-file",
        str(log),
        workers=1,
    )
    hung = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        hung.sendall(b"GET /hang?seconds=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert d.wait_output("HANG-STARTED"), d.output
        entries = wait_entries(log, lambda es: any("stack dump" in e["message"] for e in es))
    finally:
        hung.close()
    dump = next(e for e in entries if "stack dump" in e["message"])
    assert dump["level"] == "error", dump
    assert "hang_the_event_loop" in dump["message"], dump
    assert 'File "' in dump["message"], dump
    assert "hang_the_event_loop" not in d.output, d.output
    assert not not_json(d.output), d.output


def test_json_log_format_prints_only_json(serve: Callable[..., Server]) -> None:
    server = serve("apps.asgi_scope:app", "--log-format", "json", "--log-level", "debug")
    assert server.wait_output('"banner"'), server.output
    entries = json_lines(server.output)
    started = [e for e in entries if e["message"].startswith("pounce ") and "banner" in e]
    assert len(started) == 1, server.output
    banner = started[0]["banner"]
    assert banner["app"] == "apps.asgi_scope:app", banner
    assert banner["listen"] == f"http://127.0.0.1:{server.port}", banner
    assert not not_json(server.output), server.output
