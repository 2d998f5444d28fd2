"""``pounce bench``: Pounce under wrk, alone or side by side with other ASGI servers.

The lead wires it into the ``pounce`` parser with :func:`add_bench_parser` and runs it
with :func:`run_bench`, which returns the exit code.  This package drives processes
(the servers, wrk, an idle-connections helper) and imports only the standard library
and :mod:`pounce.errors`, never the server itself.  Until it is wired in:
``python -m pounce.bench --quick``.
"""

from pounce.bench.command import add_bench_parser, run_bench

__all__ = ["add_bench_parser", "run_bench"]
