"""The side-by-side benchmark in one command.

    .venv/bin/python benchmarks/run.py                  # the full run (about 25 minutes)
    .venv/bin/python benchmarks/run.py --quick          # a smoke run (about 1.5 minutes)
    .venv/bin/python benchmarks/run.py --duration 10 --reps 5 --workloads hello,json

It installs what is missing (the peers into their own venv under
~/.cache/pounce-bench/peers-venv with pip, wrk with apt-get), runs Pounce from this
checkout and every peer (uvicorn h11, uvicorn httptools+uvloop, hypercorn, granian),
one worker each pinned to CPU 0 with wrk pinned to CPU 1, and writes
benchmarks/results/latest.json and benchmarks/results/latest.md.  Any option of
``pounce bench`` may follow (``--help`` lists them); later options win, so
``--compare uvicorn-h11`` or ``--no-install`` override the defaults below.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

sys.path.insert(0, str(ROOT / "src"))  # this checkout's pounce, installed or not
sys.path.append(str(ROOT / "benchmarks"))  # the benchmark tool (not in the wheel)

from pounce_bench.__main__ import main  # noqa: E402

DEFAULTS = [
    "--compare",
    "all",
    "--install",
    "--json",
    str(RESULTS / "latest.json"),
    "--markdown",
    str(RESULTS / "latest.md"),
]

if __name__ == "__main__":
    sys.exit(main([*DEFAULTS, *sys.argv[1:]], prog="benchmarks/run.py"))
