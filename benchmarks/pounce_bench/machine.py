"""The machine a benchmark ran on, so that a table is never read without it."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from pounce_bench.wrk import wrk_version


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of a /proc/cpuinfo text, else the platform's guess."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model name", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return platform.system()


def machine_info(wrk: str) -> dict[str, Any]:
    """Python, CPU, cores, kernel, OS, wrk version and the load average right now."""
    try:
        wrk_out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
        wrk_text = wrk_out.stdout + wrk_out.stderr
    except (OSError, subprocess.SubprocessError):
        wrk_text = ""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cpu_model": cpu_model(_read("/proc/cpuinfo")),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "os": _os_name(),
        "arch": platform.machine(),
        "hostname": platform.node(),
        "wrk": wrk_version(wrk_text),
        "load_average_start": load_average(),
    }
