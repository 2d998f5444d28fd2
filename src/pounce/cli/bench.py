"""``pounce bench``: a development command.  The benchmark tool is not in the wheel; it
lives in a checkout's ``benchmarks/pounce_bench`` and is found there when this ``pounce``
runs from one (an editable install), else the command says so in one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pounce.errors import UsageError

CHECKOUT = Path(__file__).resolve().parents[3]
"""The checkout this package would sit in as ``src/pounce``."""
NOT_HERE = (
    "pounce bench is a development command: run it from a Pounce checkout "
    "(python benchmarks/run.py, see docs/benchmarks.md)"
)


def bench_dir(checkout: Path = CHECKOUT) -> Path | None:
    """``checkout/benchmarks`` when it holds the ``pounce_bench`` package, else None."""
    found = checkout / "benchmarks"
    return found if (found / "pounce_bench" / "__init__.py").is_file() else None


def bench_package(checkout: Path = CHECKOUT) -> ModuleType | None:
    """The ``pounce_bench`` package: importable already, or from ``checkout``, else None."""
    try:
        return importlib.import_module("pounce_bench")
    except ModuleNotFoundError as exc:
        if exc.name != "pounce_bench":
            raise
    found = bench_dir(checkout)
    if found is None:
        return None
    sys.path.append(str(found))
    return importlib.import_module("pounce_bench")


def add_bench_parser(sub: Any) -> None:
    """The ``bench`` subcommand: the checkout's full parser, or one that takes anything."""
    package = bench_package()
    if package is not None:
        package.add_bench_parser(sub)
        return
    # No option characters: whatever follows (--quick, --help) is taken as is, and
    # run_bench answers with the one line.
    bench = sub.add_parser(
        "bench", help="development command (from a checkout)", add_help=False, prefix_chars="\0"
    )
    bench.add_argument("rest", nargs="*")


def run_bench(ns: argparse.Namespace) -> int:
    """Run the benchmark, or raise :class:`UsageError` outside a checkout."""
    package = bench_package()
    if package is None:
        raise UsageError(NOT_HERE)
    return int(package.run_bench(ns))
