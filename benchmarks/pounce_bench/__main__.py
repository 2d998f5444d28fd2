"""``python -m pounce_bench`` is the same as ``pounce bench``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pounce.errors import PounceError
from pounce_bench.command import EPILOG, add_bench_arguments
from pounce_bench.session import run_bench


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m pounce_bench") -> int:
    """Parse ``argv``, run the benchmark, return the exit code."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark Pounce with wrk, alone or side by side with other ASGI servers.",
        epilog=EPILOG,
        allow_abbrev=False,
    )
    add_bench_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        return run_bench(ns)
    except PounceError as exc:
        print(f"pounce bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
