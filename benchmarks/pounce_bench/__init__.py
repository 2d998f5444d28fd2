"""``pounce bench``: Pounce under wrk, alone or side by side with other ASGI servers.

It lives in the checkout's ``benchmarks/``, not in the wheel: ``pounce.cli.bench`` finds it
there, adds the subcommand with :func:`add_bench_parser` and runs it with
:func:`run_bench`, which returns the exit code.  This package drives processes (the
servers, wrk, an idle-connections helper) and imports only the standard library and
:mod:`pounce.errors`, never the server itself.  Building the parser is cheap; the
machinery is imported only when a benchmark runs.
"""

from __future__ import annotations

import argparse

from pounce_bench.command import add_bench_parser

__all__ = ["add_bench_parser", "run_bench"]


def run_bench(ns: argparse.Namespace) -> int:
    """Run the benchmark ``ns`` describes; the exit code (0 all runs succeeded, 1 some failed)."""
    from pounce_bench.session import run_bench as run

    return run(ns)
