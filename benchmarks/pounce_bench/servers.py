"""The servers under test: their command lines, where they are installed, their versions.

Pounce runs from the interpreter running the benchmark (``python -m pounce serve``),
with its variants (``--loop uvloop``, ``--http-parser h11``) only when ``pounce serve
--help`` shows the flag.  The peers run from a virtual environment of their own
(:func:`default_peers_venv`), created by :func:`install_peers` with the same Python,
or, failing that, from the benchmark's own interpreter when it has them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pounce.errors import PounceError, UsageError

PEERS = ("uvicorn-h11", "uvicorn-httptools", "hypercorn", "granian")
PEER_PACKAGES = ("uvicorn[standard]", "hypercorn", "granian")
_MODULES = ("pounce", "uvicorn", "h11", "httptools", "uvloop", "hypercorn", "granian")
_NEEDS = {
    "uvicorn-h11": ("uvicorn", "h11"),
    "uvicorn-httptools": ("uvicorn", "httptools", "uvloop"),
    "hypercorn": ("hypercorn",),
    "granian": ("granian",),
}
# Every server gets these so that the idle-connections workload keeps its connections
# (Pounce and uvicorn close idle keep-alive connections after 5 s by default).
KEEP_ALIVE_S = 300
BACKLOG = 2048
_PROBE = (
    "import importlib, importlib.metadata as m, json, platform\n"
    "def v(n):\n"
    "    try:\n"
    "        return m.version(n)\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
    "    try:\n"
    "        return importlib.import_module(n).__version__\n"
    "    except Exception:\n"
    "        return None\n"
    "print(json.dumps({'python': platform.python_version(), "
    "'versions': {n: v(n) for n in %r}}))\n"
)


class BenchSetupError(PounceError):
    """A tool the benchmark needs is missing or could not be installed."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server variant.  ``args`` follow the interpreter and hold ``{app}``,
    ``{host}``, ``{port}`` and ``{control_socket}`` placeholders."""

    name: str
    kind: str  # "pounce" or "peer"
    python: str
    args: tuple[str, ...]
    versions: dict[str, str] = field(default_factory=dict)
    python_version: str = ""

    def command(self, *, app: str, host: str, port: int, control_socket: str) -> list[str]:
        values = {"app": app, "host": host, "port": str(port), "control_socket": control_socket}
        return [self.python, *(a.format(**values) for a in self.args)]

    @property
    def version(self) -> str:
        """e.g. ``uvicorn 0.30.1 (httptools 0.6.1, uvloop 0.19.0)``."""
        main, *extras = self.versions.items()
        text = f"{main[0]} {main[1]}"
        if extras:
            text += " (" + ", ".join(f"{k} {v}" for k, v in extras) + ")"
        return text


def default_peers_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pounce-bench" / "peers-venv"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def probe_python(python: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The Python version of ``python`` and the versions of the servers installed there."""
    try:
        out = subprocess.run(
            [python, "-c", _PROBE % (_MODULES,)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=env,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "", {}
    data = json.loads(out)
    return str(data["python"]), {k: v for k, v in data["versions"].items() if v}


def pounce_flags(python: str) -> set[str]:
    """Which optional flags ``pounce serve --help`` shows (``--loop``, ``--http-parser``)."""
    help_text = subprocess.run(
        [python, "-m", "pounce", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=pounce_env(None),
    ).stdout
    return {flag for flag in ("--loop", "--http-parser") if flag in help_text}


def pounce_src() -> Path:
    """The directory holding the ``pounce`` package this benchmark belongs to: the
    checkout's ``src/`` (this package lives in its ``benchmarks/``)."""
    return Path(__file__).resolve().parents[2] / "src"


def bench_dir() -> Path:
    """The directory holding this package (``benchmarks/``), for its helper processes."""
    return Path(__file__).resolve().parents[1]


def git_describe(where: Path) -> str | None:
    """``abc1234`` or ``abc1234-dirty`` for the checkout holding ``where``, else None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def pounce_env(app_dir: Path | None) -> dict[str, str]:
    """The environment of Pounce's processes: this checkout's pounce first on the path,
    no ``POUNCE_*`` variables."""
    paths = [str(app_dir)] if app_dir else []
    paths.append(str(pounce_src()))
    # POUNCE_* settings of the caller's shell would make the run differ from the report
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUNCE_")}
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def pounce_specs(
    python: str, wanted: Sequence[str] | None
) -> tuple[list[ServerSpec], dict[str, str]]:
    """Pounce's variants that this checkout and interpreter support, and why others are not."""
    py_version, versions = probe_python(python, pounce_env(None))
    flags = pounce_flags(python)
    base = (
        "-m", "pounce", "serve", "{app}", "--host", "{host}", "--port", "{port}",
        "--workers", "1", "--no-access-log", "--log-level", "warning",
        "--keep-alive-timeout", str(KEEP_ALIVE_S), "--backlog", str(BACKLOG),
        "--shutdown-timeout", "2", "--control-socket", "{control_socket}",
    )  # fmt: skip
    loop = ("--loop", "asyncio") if "--loop" in flags else ()
    fast = ("--http-parser", "fast") if "--http-parser" in flags else ()
    own = {"pounce": versions.get("pounce", "?")}
    commit = git_describe(pounce_src())
    if commit:
        own["git"] = commit
    candidates: dict[str, tuple[str, ...] | str] = {"pounce": (*base, *loop, *fast)}
    if "--loop" not in flags:
        candidates["pounce-uvloop"] = "this pounce has no --loop flag yet"
    elif "uvloop" not in versions:
        candidates["pounce-uvloop"] = "uvloop is not installed (pip install -e '.[fast]')"
    else:
        candidates["pounce-uvloop"] = (*base, "--loop", "uvloop", *fast)
    if "--http-parser" not in flags:
        candidates["pounce-h11"] = "this pounce has no --http-parser flag yet"
    else:
        candidates["pounce-h11"] = (*base, *loop, "--http-parser", "h11")
    specs, skipped = [], {}
    for name, args in candidates.items():
        if wanted is not None and name not in wanted:
            continue
        if isinstance(args, str):
            skipped[name] = args
            continue
        extra = {"uvloop": versions["uvloop"]} if name == "pounce-uvloop" else {}
        if name == "pounce-h11":
            extra = {"h11": versions.get("h11", "?")}
        specs.append(ServerSpec(name, "pounce", python, args, {**own, **extra}, py_version))
    return specs, skipped


def _peer_args(name: str) -> tuple[str, ...]:
    keep, backlog = str(KEEP_ALIVE_S), str(BACKLOG)
    if name.startswith("uvicorn"):
        http, loop = ("h11", "asyncio") if name == "uvicorn-h11" else ("httptools", "uvloop")
        return (
            "-m", "uvicorn", "{app}", "--host", "{host}", "--port", "{port}", "--workers", "1",
            "--http", http, "--loop", loop, "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", keep, "--backlog", backlog, "--timeout-graceful-shutdown", "2",
        )  # fmt: skip
    if name == "hypercorn":
        return (
            "-m", "hypercorn", "{app}", "--bind", "{host}:{port}", "--workers", "1",
            "--keep-alive", keep, "--backlog", backlog, "--log-level", "warning",
            "--graceful-timeout", "2",
        )  # fmt: skip
    return (
        "-m", "granian", "{app}", "--interface", "asgi", "--host", "{host}", "--port", "{port}",
        "--workers", "1", "--backlog", backlog, "--log-level", "warning",
    )  # fmt: skip


def peer_specs(
    wanted: Sequence[str], pythons: Sequence[str]
) -> tuple[list[ServerSpec], dict[str, str]]:
    """The wanted peers found in the first of ``pythons`` that has each, and the missing."""
    probes = [(py, *probe_python(py)) for py in pythons]
    specs, skipped = [], {}
    for name in wanted:
        needs = _NEEDS[name]
        for python, py_version, versions in probes:
            if all(n in versions for n in needs):
                own = {n: versions[n] for n in needs}
                specs.append(ServerSpec(name, "peer", python, _peer_args(name), own, py_version))
                break
        else:
            skipped[name] = f"not installed ({' + '.join(needs)}); run with --install"
    return specs, skipped


def parse_peer_list(text: str | None) -> list[str]:
    """``--compare`` value: None -> no peers; ``all`` -> every peer; else a comma list."""
    if text is None:
        return []
    if text.strip() == "all":
        return list(PEERS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise UsageError(
            f"unknown peer(s): {', '.join(unknown)}", hint=f"choose from all, {', '.join(PEERS)}"
        )
    return list(dict.fromkeys(names))


def install_peers(venv: Path, *, log: Callable[[str], None]) -> None:
    """Create ``venv`` with this interpreter (same Python version) and pip-install the peers."""
    python = venv_python(venv)
    if not python.exists():
        log(f"creating {venv}")
        _run([sys.executable, "-m", "venv", str(venv)], "create the peers' venv")
    log(f"pip install {' '.join(PEER_PACKAGES)} into {venv}")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_PACKAGES],
        "install the peers",
    )


def ensure_wrk(*, install: bool, log: Callable[[str], None]) -> str:
    """The path of wrk, installing the Debian package first when allowed and missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if not install:
        raise BenchSetupError("wrk is not installed", hint="apt-get install -y wrk, or --install")
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BenchSetupError("wrk is not installed", hint="install it: apt-get install -y wrk")
    log("apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The installers' output goes to stderr: stdout carries the report (--markdown -).
    done = subprocess.run(
        ["apt-get", "install", "-y", "-q", "wrk"], env=env, check=False, stdout=sys.stderr
    )
    if done.returncode != 0:
        _run(["apt-get", "update", "-q"], "apt-get update")
        _run(["apt-get", "install", "-y", "-q", "wrk"], "apt-get install wrk")
    found = shutil.which("wrk")
    if not found:
        raise BenchSetupError("wrk is still not on PATH after installing it")
    return found


def install_pounce_uvloop(python: str, *, log: Callable[[str], None]) -> None:
    """uvloop for ``pounce-uvloop`` (Pounce's ``fast`` extra), when ``--loop`` exists."""
    if "--loop" not in pounce_flags(python) or "uvloop" in probe_python(python)[1]:
        return
    log(f"pip install uvloop into {python} (pounce's 'fast' extra)")
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "uvloop"], "uvloop")


def _run(command: list[str], what: str) -> None:
    try:
        subprocess.run(command, check=True, stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchSetupError(f"could not {what}: {exc}") from exc
