"""deploy/Containerfile: linted by hadolint, read instruction by instruction, and its
HEALTHCHECK command run against a real Pounce on the image's config.

No container engine runs here, so the image itself is never built by these tests.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from apps.deploy_support import (
    CHART_DIR,
    DEPLOY_DIR,
    ROOT,
    Proc,
    both,
    free_port,
    pounce_cmd,
    read_toml,
    run,
    short_tmpdir,
    status,
    tool,
    wait_for,
    write_toml,
)

pytestmark = pytest.mark.timeout(60)

CONTAINERFILE = DEPLOY_DIR / "Containerfile"
IMAGE_CONFIG = DEPLOY_DIR / "container" / "pounce.toml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    found = instructions(CONTAINERFILE.read_text())
    last_from = max(i for i, (word, _) in enumerate(found) if word == "FROM")
    return found[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_hadolint_finds_nothing() -> None:
    result = run([tool("hadolint", venv=True), "--no-color", str(CONTAINERFILE)])
    assert result.returncode == 0, both(result)
    assert result.stdout.strip() == "", both(result)


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = run([tool("hadolint", venv=True), "--no-color", str(bad)])
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3015" in result.stdout, both(result)


def test_image_is_slim_non_root_and_stops_gracefully() -> None:
    stage = final_stage()
    words = [w for w, _ in stage]
    base = stage[0][1]
    assert re.search(r"python:\$\{PYTHON_VERSION\}-slim|python:3\.\d+-slim", base), base

    user = [args for word, args in stage if word == "USER"]
    assert user, "no USER in the final stage"
    uid = user[-1].split(":")[0]
    assert uid not in ("root", "0")
    # The uid the Helm chart runs the pod as.
    values = (CHART_DIR / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values

    assert ("STOPSIGNAL", "SIGTERM") in stage
    entrypoint = exec_form(next(a for w, a in stage if w == "ENTRYPOINT"))
    cmd = exec_form(next(a for w, a in stage if w == "CMD"))
    assert entrypoint + cmd == ["pounce", "serve", "-c", "/etc/pounce/pounce.toml"]
    assert words.index("USER") < words.index("ENTRYPOINT")


def test_copied_files_and_ports_match_the_config() -> None:
    stage = instructions(CONTAINERFILE.read_text())
    for word, args in stage:
        if word == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    copies = [a.split() for w, a in stage if w == "COPY"]
    assert [str(IMAGE_CONFIG.relative_to(ROOT)), "/etc/pounce/pounce.toml"] in copies

    config = read_toml(IMAGE_CONFIG)
    exposed = {int(p) for w, a in final_stage() if w == "EXPOSE" for p in a.split()}
    assert exposed == {config["listen"][0]["port"], config["admin"]["port"]}
    assert config["listen"][0]["host"] == "0.0.0.0"
    assert config["admin"]["host"] == "0.0.0.0"
    assert config["control"]["socket"].startswith("/run/pounce/")
    assert "install -d -o pounce -g pounce -m 0750 /run/pounce" in CONTAINERFILE.read_text()


def healthcheck_argv() -> list[str]:
    args = next(a for w, a in final_stage() if w == "HEALTHCHECK")
    options, _, command = args.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options, options
    argv = exec_form(command)
    assert argv[0] == "python", argv  # no curl in a slim image
    return argv


def test_healthcheck_command_works_against_pounce() -> None:
    """The HEALTHCHECK's own command, run against Pounce on the image's config."""
    argv = healthcheck_argv()
    config = read_toml(IMAGE_CONFIG)
    admin_port = config["admin"]["port"]
    assert f"127.0.0.1:{admin_port}/health/live" in argv[-1], argv

    tmp = short_tmpdir()
    port, test_admin_port = free_port(), free_port()
    config["listen"][0].update(host="127.0.0.1", port=port)
    config["admin"].update(host="127.0.0.1", port=test_admin_port)
    config["control"]["socket"] = str(tmp / "pounce.sock")
    cfg = write_toml(tmp / "pounce.toml", config)
    check = [
        tool("python", venv=True),
        *(a.replace(f":{admin_port}/", f":{test_admin_port}/") for a in argv[1:]),
    ]
    server = Proc.start(pounce_cmd("serve", "-c", str(cfg)))
    try:
        admin = f"http://127.0.0.1:{test_admin_port}"
        assert wait_for(lambda: status(admin + "/health/live") == 200, 30), server.output
        result = run(check, timeout=10)
        assert result.returncode == 0, both(result)
        assert server.stop() == 0, server.output
        result = run(check, timeout=10)
        assert result.returncode != 0, both(result)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_healthcheck_is_a_single_exec_form_python_call() -> None:
    argv = healthcheck_argv()
    assert argv[1] == "-c"
    # One line of Python that compiles.
    compile(argv[2], "<HEALTHCHECK>", "exec")
    assert shlex.join(argv).count("\n") == 0
