"""``pounce bench``: its options, and the run from options to report files."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pounce.bench.machine import load_average, machine_info
from pounce.bench.report import build_report, render_markdown
from pounce.bench.runner import Runner, Settings
from pounce.bench.servers import (
    PEERS,
    ServerSpec,
    default_peers_venv,
    ensure_wrk,
    install_peers,
    install_pounce_uvloop,
    parse_peer_list,
    peer_specs,
    pounce_specs,
    venv_python,
)
from pounce.bench.workloads import BY_NAME, select_workloads
from pounce.errors import UsageError

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
    )
    add_bench_arguments(bench)
    return bench


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pounce bench`` (shared with ``python -m pounce.bench``)."""
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


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def settings_from(ns: argparse.Namespace, wrk: str) -> Settings:
    """Settings from the parsed options; ``--quick`` changes only what was not given."""
    quick = bool(ns.quick)

    def pick(value: int | None, normal: int, fast: int) -> int:
        return value if value is not None else (fast if quick else normal)

    server_cpu, client_cpu = _cpus(ns)
    return Settings(
        wrk=wrk,
        workloads=tuple(select_workloads(ns.workloads)),
        duration_s=pick(ns.duration, 5, 1),
        warmup_s=pick(ns.warmup, 1, 0),
        connections=ns.connections,
        reps=pick(ns.reps, 3, 1),
        idle_connections=ns.idle_connections,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )


def _cpus(ns: argparse.Namespace) -> tuple[int | None, int | None]:
    if ns.no_pin:
        return None, None
    if ns.server_cpu == ns.client_cpu:
        raise UsageError("--server-cpu and --client-cpu must differ (or give --no-pin)")
    allowed = os.sched_getaffinity(0)
    if shutil.which("taskset") is None or not {ns.server_cpu, ns.client_cpu} <= allowed:
        _log(f"not pinning: needs taskset and CPUs {ns.server_cpu} and {ns.client_cpu}")
        return None, None
    return int(ns.server_cpu), int(ns.client_cpu)


def choose_servers(ns: argparse.Namespace) -> tuple[list[ServerSpec], dict[str, str]]:
    """Pounce's variants and the wanted peers that are installed; the rest, with reasons."""
    wanted = ns.pounce_variants
    unknown = [v for v in wanted or () if v not in POUNCE_VARIANTS]
    if unknown:
        raise UsageError(f"unknown Pounce variant(s): {', '.join(unknown)}")
    ours, skipped = pounce_specs(sys.executable, wanted)
    if not ours:
        raise UsageError("no Pounce variant to run", hint="; ".join(skipped.values()) or None)
    pythons = [str(venv_python(ns.peers_venv))] if venv_python(ns.peers_venv).exists() else []
    pythons.append(sys.executable)
    peers, missing = peer_specs(parse_peer_list(ns.compare), pythons)
    return ours + peers, {**skipped, **missing}


def run_bench(ns: argparse.Namespace) -> int:
    """Run the benchmark ``ns`` describes; print the tables, write the files asked for."""
    peers_wanted = parse_peer_list(ns.compare)
    wrk = ensure_wrk(install=ns.install, log=_log)
    if ns.install:
        install_pounce_uvloop(sys.executable, log=_log)
        if peers_wanted:
            install_peers(ns.peers_venv, log=_log)
    settings = settings_from(ns, wrk)
    servers, skipped = choose_servers(ns)
    for name, why in skipped.items():
        _log(f"skipping {name}: {why}")
    machine = machine_info(wrk)
    runs_planned = settings.reps * len(settings.workloads) * len(servers)
    minutes = runs_planned * (settings.duration_s + settings.warmup_s + 2) / 60
    _log(f"{runs_planned} runs of {', '.join(s.name for s in servers)}: about {minutes:.0f} min")
    started = _now()
    with tempfile.TemporaryDirectory(prefix="pounce-bench-") as tmp:
        runs = Runner(settings, Path(tmp), _log).run(servers)
    machine["load_average_end"] = load_average()
    report = build_report(
        machine=machine,
        settings=_settings_dict(settings, ns),
        servers={s.name: _server_dict(s) for s in servers},
        skipped=skipped,
        runs=runs,
        workloads=[w.name for w in settings.workloads],
        started_at=started,
        finished_at=_now(),
    )
    markdown = render_markdown(report)
    if ns.json:
        _write(Path(ns.json), json.dumps(report, indent=2) + "\n")
    if ns.markdown:
        _write(Path(ns.markdown), markdown)
    sys.stdout.write(markdown)
    return 0 if all(r.ok for r in runs) else 1


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    _log(f"wrote {path}")


def _settings_dict(settings: Settings, ns: argparse.Namespace) -> dict[str, Any]:
    return {
        "duration_s": settings.duration_s,
        "warmup_s": settings.warmup_s,
        "connections": settings.connections,
        "wrk_threads": 1,
        "reps": settings.reps,
        "idle_connections": settings.idle_connections,
        "server_cpu": settings.server_cpu,
        "client_cpu": settings.client_cpu,
        "quick": bool(ns.quick),
        "workloads": {w.name: w.description for w in settings.workloads},
        "order": "interleaved: each repetition runs every workload on every server, "
        "server order rotated per repetition; a fresh server process per run",
    }


def _server_dict(spec: ServerSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "version": spec.version,
        "versions": spec.versions,
        "python": spec.python,
        "python_version": spec.python_version,
        "command": [spec.python, *spec.args],
    }
