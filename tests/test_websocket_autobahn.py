"""Autobahn|Testsuite (fuzzingclient) against ``pounce serve apps.ws_echo:app``.

The suite (``autobahntestsuite`` 0.8.2) runs on Python 2.7, from a virtualenv in
``$POUNCE_AUTOBAHN_CACHE`` (default ``~/.cache/pounce-autobahn``) that
``.ci/install-tools`` makes with ``python2.7`` (``$POUNCE_AUTOBAHN_PYTHON``; with pyenv,
``PYENV_VERSION`` defaults to 2.7.18).

The test suite runs every case but the compression ones (12.* and 13.*, several
minutes).  Those run with::

    .venv/bin/python tests/test_websocket_autobahn.py --compression   # 12.* and 13.*
    .venv/bin/python tests/test_websocket_autobahn.py --all           # everything

which prints a summary and exits 1 when a case FAILED (NON-STRICT and
INFORMATIONAL are fine).  The HTML report is written under ``--outdir``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.server import start_server

pytestmark = pytest.mark.slow

VERSION = "0.8.2"
CACHE = Path(os.environ.get("POUNCE_AUTOBAHN_CACHE", "~/.cache/pounce-autobahn")).expanduser()
COMPRESSION = ["12.*", "13.*"]


def _py27_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYENV_VERSION", "2.7.18")
    return env


def _run(cmd: Sequence[str], log: Path, timeout: float = 900) -> int:
    with log.open("ab") as out:
        return subprocess.call(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, env=_py27_env(), timeout=timeout
        )


def ensure_wstest() -> Path:
    """The ``wstest`` command, which ``.ci/install-tools`` installs."""
    wstest = CACHE / "venv" / "bin" / "wstest"
    if not wstest.exists():
        raise RuntimeError(f"{wstest} is missing: run .ci/install-tools")
    return wstest


def run_fuzzingclient(
    cases: Sequence[str], exclude: Sequence[str], outdir: Path, timeout: float = 900
) -> dict[str, dict[str, str]]:
    """Run the cases against a fresh server; the per-case results of ``index.json``."""
    wstest = ensure_wstest()
    server = start_server("apps.ws_echo:app", "--no-access-log")
    try:
        spec = {
            "outdir": str(outdir / "reports"),
            "servers": [{"agent": "pounce", "url": f"ws://{server.host}:{server.port}"}],
            "cases": list(cases),
            "exclude-cases": list(exclude),
            "exclude-agent-cases": {},
        }
        spec_path = outdir / "fuzzingclient.json"
        spec_path.write_text(json.dumps(spec))
        rc = _run(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
            outdir / "wstest.log",
            timeout,
        )
        assert rc == 0, (outdir / "wstest.log").read_text()[-3000:]
    finally:
        server.stop()
    report = json.loads((outdir / "reports" / "index.json").read_text())
    results: dict[str, dict[str, str]] = report["pounce"]
    return results


def failures(results: dict[str, dict[str, str]]) -> list[str]:
    return sorted(
        f"{case}: {r['behavior']}/{r['behaviorClose']}"
        for case, r in results.items()
        if r["behavior"] == "FAILED" or r["behaviorClose"] == "FAILED"
    )


@contextlib.contextmanager
def _outdir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="pounce-autobahn-") as tmp:
        yield Path(tmp)


def test_autobahn_without_compression_cases(tmp_path: Path) -> None:
    results = run_fuzzingclient(["*"], COMPRESSION, tmp_path, timeout=300)
    assert len(results) > 250  # sections 1-10 ran
    assert not any(case.startswith(("12.", "13.")) for case in results)
    assert failures(results) == []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Autobahn|Testsuite against Pounce.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--compression", action="store_true", help="only 12.* and 13.*")
    group.add_argument("--all", action="store_true", help="every case")
    group.add_argument("--cases", nargs="+", metavar="CASE", help='only these, e.g. "12.1.*"')
    parser.add_argument("--outdir", help="keep the reports here (default: a temporary dir)")
    args = parser.parse_args(argv)
    if args.cases:
        cases, exclude = args.cases, []
    elif args.compression:
        cases, exclude = COMPRESSION, []
    elif args.all:
        cases, exclude = ["*"], []
    else:
        cases, exclude = ["*"], COMPRESSION
    with _outdir(args.outdir) as outdir:
        results = run_fuzzingclient(cases, exclude, outdir, timeout=3600)
        counts = collections.Counter(r["behavior"] for r in results.values())
        print(f"{len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        failed = failures(results)
        for line in failed:
            print("FAILED", line)
        if args.outdir:
            print(f"report: {outdir / 'reports' / 'index.html'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
