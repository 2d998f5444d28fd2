"""``pounce ctl``: talk to a running daemon over its control socket.

Imports only the control client (no asyncio) and, to draw tables, rich; the config
is read only for ``-c``.  Exit codes: 0 done, 1 failed, 3 daemon not running.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from pounce.control.client import DEFAULT_TIMEOUT, ControlClient
from pounce.control.paths import default_socket_path, socket_path_for
from pounce.ctl.format import format_duration
from pounce.errors import ControlCommandFailed, PounceError

if TYPE_CHECKING:
    from rich.console import Console

EPILOG = "exit status: 0 done, 1 failed, 3 daemon not running"


def add_ctl_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``ctl`` subcommand to the ``pounce`` parser and return it."""
    ctl = subparsers.add_parser(
        "ctl",
        help="control a running daemon",
        description="Control a running pounce daemon over its control socket.",
        epilog=EPILOG,
    )
    where = ctl.add_mutually_exclusive_group()
    where.add_argument(
        "-c", "--config", metavar="FILE", help="read the control socket path from this pounce.toml"
    )
    where.add_argument(
        "--socket", metavar="PATH", help=f"the control socket (default: {default_socket_path()})"
    )
    ctl.add_argument(
        "--timeout",
        dest="ctl_timeout",
        type=_seconds,
        metavar="S",
        help=f"seconds to wait for the reply (default: {DEFAULT_TIMEOUT:g}; "
        "reload and drain --wait wait until done)",
    )
    commands = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND")
    commands.required = True
    status = commands.add_parser("status", help="show the daemon, its workers and listeners")
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    reload = commands.add_parser("reload", help="re-read the config and replace the workers")
    reload.add_argument(
        "--no-wait", dest="wait", action="store_false", help="return once the request is sent"
    )
    drain = commands.add_parser("drain", help="stop accepting connections, let open ones finish")
    drain.add_argument("--wait", action="store_true", help="return once drained")
    drain.add_argument(
        "--timeout",
        dest="drain_timeout",
        type=_seconds,
        metavar="S",
        help="with --wait, give up waiting after S seconds",
    )
    commands.add_parser("resume", help="accept connections again after a drain")
    stop = commands.add_parser("stop", help="shut the daemon down gracefully")
    stop.add_argument("--now", action="store_true", help="do not wait for open connections")
    scale = commands.add_parser("scale", help="change the number of workers")
    scale.add_argument("workers", type=_positive_int, metavar="N", help="the new worker count")
    workers = commands.add_parser("workers", help="list the workers")
    workers.add_argument("--json", action="store_true", help="print the raw list as JSON")
    return ctl


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


def socket_path(ns: argparse.Namespace) -> str:
    """``--socket``, else ``[control] socket`` of the ``-c`` config, else the default."""
    if ns.socket:
        return str(ns.socket)
    if ns.config:
        from pounce.config import load_config

        control = getattr(load_config(ns.config), "control", None)
        return socket_path_for(getattr(control, "socket", None))
    return default_socket_path()


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


def _status(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("status")
    if ns.json:
        _print_json(result, out)
        return 0
    from pounce.ctl.render import render_status

    _console(out).print(render_status(result))
    return 0


def _workers(client: ControlClient, ns: argparse.Namespace, out: TextIO) -> int:
    result = client.call("workers")
    if ns.json:
        _print_json(result, out)
        return 0
    from pounce.ctl.render import workers_table

    workers = result.get("workers")
    _console(out).print(workers_table(workers if isinstance(workers, list) else [], result))
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
    result = client.call("stop", now=ns.now)
    how = "now" if ns.now else "gracefully"
    print(f"{result.get('state', 'stopping')} ({how})", file=out)
    return 0


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
