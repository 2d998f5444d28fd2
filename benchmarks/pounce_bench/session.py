"""The run of ``pounce bench``: from parsed options to the report files."""

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

from pounce.errors import UsageError
from pounce_bench.command import POUNCE_VARIANTS
from pounce_bench.machine import load_average, machine_info
from pounce_bench.report import build_report, render_markdown
from pounce_bench.runner import Runner, Settings
from pounce_bench.servers import (
    ServerSpec,
    ensure_wrk,
    install_peers,
    install_pounce_uvloop,
    parse_peer_list,
    peer_specs,
    pounce_specs,
    venv_python,
)
from pounce_bench.workloads import select_workloads


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
    ours, skipped = pounce_specs(sys.executable, _variants(ns))
    if not ours:
        raise UsageError("no Pounce variant to run", hint="; ".join(skipped.values()) or None)
    pythons = [str(venv_python(ns.peers_venv))] if venv_python(ns.peers_venv).exists() else []
    pythons.append(sys.executable)
    peers, missing = peer_specs(parse_peer_list(ns.compare), pythons)
    return ours + peers, {**skipped, **missing}


def _variants(ns: argparse.Namespace) -> list[str] | None:
    wanted: list[str] | None = ns.pounce_variants
    unknown = [v for v in wanted or () if v not in POUNCE_VARIANTS]
    if unknown:
        raise UsageError(
            f"unknown Pounce variant(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(POUNCE_VARIANTS)}",
        )
    return wanted


def run_bench(ns: argparse.Namespace) -> int:
    """Run the benchmark ``ns`` describes; print the tables, write the files asked for."""
    peers_wanted = parse_peer_list(ns.compare)
    select_workloads(ns.workloads)  # a typo fails here, before anything is installed
    _variants(ns)
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
