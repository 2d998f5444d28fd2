"""``pounce bench``: its options.  Light to import: every ``pounce`` command builds
this parser; the run itself lives in :mod:`pounce_bench.session`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pounce_bench.servers import PEERS, default_peers_venv
from pounce_bench.workloads import BY_NAME

POUNCE_VARIANTS = ("pounce", "pounce-uvloop", "pounce-h11")
EPILOG = (
    "exit status: 0 every run succeeded, 1 some run failed (the report says which), "
    "2 bad usage or missing tools"
)


def add_bench_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to the ``pounce`` parser and return it."""
    bench = subparsers.add_parser(
        "bench",
        help="benchmark Pounce, alone or side by side with other ASGI servers",
        description="Benchmark Pounce with wrk, alone or side by side with other ASGI "
        "servers: one worker each, pinned to one CPU, wrk pinned to another.",
        epilog=EPILOG,
        allow_abbrev=False,
    )
    add_bench_arguments(bench)
    return bench


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pounce bench`` (shared with ``python -m pounce_bench``)."""
    add = parser.add_argument
    add("--duration", type=_positive, metavar="S", help="seconds of load per run (default 5)")
    add("--warmup", type=_non_negative, metavar="S", help="seconds of warm-up load (default 1)")
    add("--connections", type=_positive, default=64, metavar="N", help="wrk connections (64)")
    add("--reps", type=_positive, metavar="N", help="repetitions, interleaved (default 3)")
    add(
        "--workloads",
        type=_names,
        metavar="LIST",
        help=f"comma-separated, of: {', '.join(BY_NAME)} (default: all)",
    )
    add(
        "--compare",
        nargs="?",
        const="all",
        metavar="PEERS",
        help=f"also run peers: all (the default with no value) or a comma list of "
        f"{', '.join(PEERS)}; those not installed are skipped",
    )
    add(
        "--pounce-variants",
        type=_names,
        metavar="LIST",
        help=f"which of {', '.join(POUNCE_VARIANTS)} to run (default: every one this "
        "checkout supports)",
    )
    add("--json", metavar="PATH", help="write the report as JSON here")
    add("--markdown", metavar="PATH", help="write the markdown tables here")
    add("--quick", action="store_true", help="a smoke run: 1 s per run, 1 repetition, no warm-up")
    add(
        "--install",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="install what is missing: the peers into --peers-venv (pip), wrk (apt-get), "
        "uvloop for pounce-uvloop (pip, Pounce's 'fast' extra)",
    )
    add(
        "--peers-venv",
        type=Path,
        default=default_peers_venv(),
        metavar="DIR",
        help="virtual environment of the peers (default: %(default)s)",
    )
    add(
        "--idle-connections",
        type=_non_negative,
        default=1000,
        metavar="N",
        help="idle keep-alive connections held open during idle-1k (1000)",
    )
    add("--server-cpu", type=_non_negative, default=0, metavar="CPU", help="the server's CPU (0)")
    add("--client-cpu", type=_non_negative, default=1, metavar="CPU", help="wrk's CPU (1)")
    add("--no-pin", action="store_true", help="do not pin the server and wrk to CPUs")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(text)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]
