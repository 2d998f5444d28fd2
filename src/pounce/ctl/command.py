"""``pounce ctl``: talk to a running daemon over its control socket.

Imports only the control client (no asyncio) and, to draw tables on a terminal,
rich.  ``-c FILE`` reads only ``[control] socket`` from the file (no validation, no
environment layering), so a half-edited config or a stray ``POUNCE_*`` variable
cannot stop ``ctl stop``.  Exit codes: 0 done, 1 failed, 2 bad command line or
unreadable config file, 3 daemon not running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from pounce.control.client import DEFAULT_TIMEOUT, ControlClient
from pounce.control.paths import default_socket_path
from pounce.ctl.format import format_duration
from pounce.errors import (
    ControlCommandFailed,
    ControlError,
    DaemonNotRunning,
    PounceError,
    UsageError,
)

if TYPE_CHECKING:
    from rich.console import Console

EPILOG = (
    "exit status: 0 done, 1 failed, 2 bad command line or unreadable config file, "
    "3 daemon not running"
)
EXIT_CODES = (0, 1, 2, 3)
"""Every exit code ``pounce ctl`` returns, as :data:`EPILOG` documents them."""

SOCKET_ENV = "POUNCE_CONTROL_SOCKET"
CONFIG_ENV = "POUNCE_CONFIG"
STOP_WAIT = 300.0
"""How long ``ctl stop`` waits for the daemon to exit when ``--timeout`` is not given."""


def add_ctl_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``ctl`` subcommand to the ``pounce`` parser and return it."""
    ctl = subparsers.add_parser(
        "ctl",
        help="control a running daemon",
        description="Control a running pounce daemon over its control socket.",
        epilog=EPILOG,
        allow_abbrev=False,
    )
    ctl.set_defaults(config=None, socket=None, ctl_timeout=None)
    _add_common(ctl, timeout=True)
    commands = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND")
    commands.required = True

    def command(name: str, text: str, *, timeout: bool = True) -> argparse.ArgumentParser:
        # The common options may also follow the command: `pounce ctl status -c FILE`.
        parser = commands.add_parser(name, help=text, epilog=EPILOG, allow_abbrev=False)
        _add_common(parser, timeout=timeout, suppress=True)
        return parser

    status = command("status", "show the daemon, its workers and listeners")
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    reload = command("reload", "re-read the config and replace the workers")
    reload.add_argument(
        "--no-wait", dest="wait", action="store_false", help="return once the request is sent"
    )
    drain = command("drain", "stop accepting connections, let open ones finish", timeout=False)
    drain.add_argument("--wait", action="store_true", help="return once drained")
    drain.add_argument(
        "--timeout",
        dest="drain_timeout",
        type=_seconds,
        metavar="S",
        help="with --wait, give up waiting after S seconds",
    )
    command("resume", "accept connections again after a drain")
    stop = command("stop", "shut the daemon down gracefully and wait until it has exited")
    stop.add_argument("--now", action="store_true", help="do not wait for open connections")
    stop.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help=f"return once the daemon has the request (default: wait until it has exited, "
        f"at most --timeout or {STOP_WAIT:g}s)",
    )
    scale = command("scale", "change the number of workers")
    scale.add_argument("workers", type=_positive_int, metavar="N", help="the new worker count")
    workers = command("workers", "list the workers")
    workers.add_argument("--json", action="store_true", help="print the raw list as JSON")
    return ctl


def _add_common(parser: argparse.ArgumentParser, *, timeout: bool, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help=f"read the control socket path from this pounce.toml (default: ${CONFIG_ENV})",
    )
    where.add_argument(
        "--socket",
        metavar="PATH",
        default=default,
        help=f"the control socket (default: ${SOCKET_ENV}, else {default_socket_path()})",
    )
    if timeout:
        parser.add_argument(
            "--timeout",
            dest="ctl_timeout",
            type=_seconds,
            metavar="S",
            default=default,
            help=f"seconds to wait for the reply (default: {DEFAULT_TIMEOUT:g}; "
            "reload and drain --wait wait until done)",
        )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def run_ctl(ns: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the parsed ``pounce ctl`` command line; return the exit code.

    Every :class:`~pounce.errors.PounceError` is reported on ``err`` (stderr) as
    one line, plus a line per detail the daemon sent, and becomes its exit code.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    command = ns.ctl_command
    try:
        if ns.config and ns.socket:
            raise UsageError("give either -c/--config or --socket, not both")
        with ControlClient(socket_path(ns), timeout=call_timeout(ns)) as client:
            return COMMANDS[command](client, ns, out)
    except ControlCommandFailed as exc:
        print(f"pounce ctl: {command} failed: {exc}", file=err)
        for detail in exc.details:
            print(f"  {detail}", file=err)
        return exc.exit_code
    except PounceError as exc:
        print(f"pounce ctl: error: {exc}", file=err)
        return exc.exit_code


def socket_path(ns: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon listens, as the daemon itself decides it: ``--socket``; else
    ``$POUNCE_CONTROL_SOCKET``; else ``[control] socket`` of the ``-c`` file (or of
    ``$POUNCE_CONFIG``); else the default."""
    env = os.environ if environ is None else environ
    if ns.socket:
        return str(ns.socket)
    if env.get(SOCKET_ENV):
        return env[SOCKET_ENV]
    config = ns.config or env.get(CONFIG_ENV)
    if config:
        return control_socket_in(str(config)) or default_socket_path(env)
    return default_socket_path(env)


_CONTROL_TABLE = re.compile(r"^\s*\[\s*control\s*\]\s*(?:#.*)?$")
_ANY_TABLE = re.compile(r"^\s*\[")
_SOCKET_KEY = re.compile(r"""^\s*socket\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$""")


def control_socket_in(path: str) -> str | None:
    """``[control] socket`` of the TOML file at ``path``, or None when it sets none.

    Nothing else of the file is read or checked.  A file that is no valid TOML (being
    edited) is scanned line by line for the key.  A missing or unreadable file is a
    :class:`UsageError`.
    """
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        control = tomllib.loads(text).get("control")
    except tomllib.TOMLDecodeError:
        return _scan_for_socket(text)
    socket = control.get("socket") if isinstance(control, dict) else None
    return socket if isinstance(socket, str) and socket else None


def _scan_for_socket(text: str) -> str | None:
    inside = False
    for line in text.splitlines():
        if _ANY_TABLE.match(line):
            inside = bool(_CONTROL_TABLE.match(line))
        elif inside and (found := _SOCKET_KEY.match(line)):
            return found.group(1) or found.group(2) or None
    return None


def call_timeout(ns: argparse.Namespace) -> float | None:
    """``--timeout``; else no limit for commands that wait for an outcome; else the default."""
    if ns.ctl_timeout is not None:
        return float(ns.ctl_timeout)
    waits = ns.ctl_command in {"reload", "drain"} and ns.wait
    return None if waits else DEFAULT_TIMEOUT


# -- the commands -------------------------------------------------------------------------


def _print_json(result: Mapping[str, Any], out: TextIO) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False), file=out)


def _console(out: TextIO) -> Console:
    from rich.console import Console

    return Console(file=out, highlight=False)


def _is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def _status(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("status")
    if ns.json:
        _print_json(result, out)
        return 0
    if not _is_terminal(out):  # piped or redirected: plain lines, no boxes, no padding
        from pounce.ctl.plain import status_text

        out.write(status_text(result))
        return 0
    from pounce.ctl.render import render_status

    _console(out).print(render_status(result))
    return 0


def _workers(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("workers")
    if ns.json:
        _print_json(result, out)
        return 0
    workers = result.get("workers")
    listed = workers if isinstance(workers, list) else []
    if not _is_terminal(out):
        from pounce.ctl.plain import workers_text

        out.write(workers_text(listed, result))
        return 0
    from pounce.ctl.render import workers_table

    _console(out).print(workers_table(listed, result))
    return 0


def _reload(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    if not ns.wait:
        client.send("reload")
        print("reload requested", file=out)
        return 0
    result = client.call("reload")
    print(reload_summary(result), file=out)
    return 0


def reload_summary(result: Mapping[str, Any]) -> str:
    """``reloaded: generation 4 ready in 2.3s (4 workers)``, and what needs a restart."""
    text = (
        f"reloaded: generation {result.get('generation', '-')} ready in "
        f"{format_duration(result.get('duration'))} ({result.get('workers', '-')} workers)"
    )
    pending = result.get("needs_restart")
    if isinstance(pending, list) and pending:
        text += "\nchanged settings that take effect only after a restart: "
        text += ", ".join(str(key) for key in pending)
    return text


def _drain(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("drain", wait=ns.wait, timeout=ns.drain_timeout)
    state = result.get("state", "-")
    connections = result.get("connections", "-")
    if ns.wait and state != "drained":
        print(f"not drained in time: {state}, {connections} connections still open", file=out)
        return 1
    print(f"{state} ({connections} connections open)", file=out)
    return 0


def _resume(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("resume")
    print(f"resumed: {result.get('state', '-')}", file=out)
    return 0


def _stop(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    wait = getattr(ns, "wait", False)
    began = time.monotonic()
    pid = client.call("status").get("pid") if wait else None
    result = client.call("stop", now=ns.now)
    how = "now" if ns.now else "gracefully"
    if not wait:
        print(f"{result.get('state', 'stopping')} ({how})", file=out)
        return 0
    client.close()
    limit = STOP_WAIT if ns.ctl_timeout is None else float(ns.ctl_timeout)
    deadline = began + limit
    while not _gone(client, pid if isinstance(pid, int) else None):
        if time.monotonic() >= deadline:
            who = f" (pid {pid})" if isinstance(pid, int) else ""
            raise ControlError(f"the daemon{who} has not exited within {limit:g}s")
        time.sleep(0.05)
    print(f"stopped ({how}) in {format_duration(time.monotonic() - began)}", file=out)
    return 0


def _gone(client: ControlClient, pid: int | None) -> bool:
    """The daemon has exited: its process is gone (or a zombie), or, when its pid is
    not known, its control socket no longer answers."""
    if pid is not None:
        return not _process_alive(pid)
    try:
        with ControlClient(client.path, timeout=client.timeout) as probe:
            probe.call("status")
    except DaemonNotRunning:
        return True
    except PounceError:
        return False
    return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie (exited, not yet reaped by its parent) has exited
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def _scale(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("scale", workers=ns.workers)
    print(f"workers: {result.get('previous', '-')} -> {result.get('workers', '-')}", file=out)
    configured = result.get("configured")
    if configured is not None:
        print(
            f"until the next reload, which returns to server.workers = {configured} "
            "unless the config changes it",
            file=out,
        )
    return 0


COMMANDS: Mapping[str, Callable[[ControlClient, argparse.Namespace, TextIO], int]] = {
    "status": _status,
    "reload": _reload,
    "drain": _drain,
    "resume": _resume,
    "stop": _stop,
    "scale": _scale,
    "workers": _workers,
}
"""Each ``pounce ctl`` command to the function that runs it and prints the outcome."""
