"""deploy/Containerfile: linted by hadolint, read instruction by instruction, its
HEALTHCHECK command run against a real Pounce on the image's config, its bytecode
compilation run on the app, and the build context .dockerignore leaves computed.

No container engine runs here, so the image itself is never built by these tests.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from helpers.deploy import (
    CHART_DIR,
    DEPLOY_DIR,
    Proc,
    read_toml,
    run,
    short_tmpdir,
    status,
    tool,
    write_toml,
)
from helpers.server import ROOT, both, free_port, pounce_cmd, wait_for

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


def build_args(found: list[tuple[str, str]]) -> dict[str, str]:
    """The ``ARG NAME=default`` values declared in ``found``."""
    args = {}
    for word, rest in found:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


def expand(text: str, args: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced by the build args' defaults."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def global_args() -> dict[str, str]:
    found = instructions(CONTAINERFILE.read_text())
    first_from = next(i for i, (word, _) in enumerate(found) if word == "FROM")
    return build_args(found[:first_from])


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


@pytest.mark.slow
def test_image_is_slim_non_root_and_stops_gracefully() -> None:
    stage = final_stage()
    words = [w for w, _ in stage]
    base = expand(stage[0][1], global_args())
    assert re.search(r"python:3\.\d+(\.\d+)?-slim", base), base

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


@pytest.mark.slow
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


# -- the base image, the extras, the bytecode --------------------------------------------------


def stages() -> list[list[tuple[str, str]]]:
    found = instructions(CONTAINERFILE.read_text())
    starts = [i for i, (word, _) in enumerate(found) if word == "FROM"]
    return [found[a:b] for a, b in zip(starts, [*starts[1:], len(found)], strict=True)]


def test_base_image_is_pinned_by_digest() -> None:
    args = global_args()
    names = set()
    for stage in stages():
        image, *alias = expand(stage[0][1], args).split()
        names.update(alias[-1:])
        if image in names:
            continue  # FROM an earlier stage
        match = re.fullmatch(
            r"docker\.io/library/python:(3\.\d+\.\d+-slim-\w+)@sha256:[0-9a-f]{64}", image
        )
        assert match, image
        # The comment tells how to refresh the pin, for this very tag.
        text = CONTAINERFILE.read_text()
        assert (
            f"inspect --format '{{{{.Digest}}}}' docker://docker.io/library/python:{match[1]}"
            in (text)
        )


def extras_closure(requested: list[str]) -> set[str]:
    """The distributions an install of ``pounce[requested]`` pulls in, extras expanded."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names: set[str] = set()
    todo, seen = list(requested), set()
    while todo:
        extra = todo.pop()
        assert extra in optional, f"pounce has no extra {extra!r}"
        seen.add(extra)
        for requirement in optional[extra]:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert name
            if name[0] == "pounce":
                todo += [
                    e for e in re.findall(r"[\w-]+", requirement[len("pounce") :]) if e not in seen
                ]
            else:
                names.add(name[0].lower())
    return names


def test_image_installs_http2_and_websocket() -> None:
    build = stages()[0]
    args = {**global_args(), **build_args(build)}
    (install,) = [expand(a, args) for w, a in build if w == "RUN" and "pip install" in a]
    target = next(w for w in shlex.split(install) if w.startswith("/src"))
    match = re.fullmatch(r"/src\[([\w,-]+)\]", target)
    assert match, target
    assert {"h2", "wsproto"} <= extras_closure(match[1].split(",")), match[1]


def compileall_runs(stage: list[tuple[str, str]]) -> list[list[str]]:
    runs = []
    for word, args in stage:
        if word == "RUN":
            for command in args.split("&&"):
                argv = shlex.split(command)
                if "compileall" in argv:
                    runs.append(argv)
    return runs


def test_bytecode_is_compiled_at_build_time() -> None:
    (build_compile,) = compileall_runs(stages()[0])
    assert build_compile[-1] == "/opt/pounce"
    final = final_stage()
    (app_compile,) = compileall_runs(final)
    assert app_compile[-1] == "/app"
    # After the last COPY into /app, before the image drops root.
    words = [(w, a) for w, a in final]
    compile_at = next(i for i, (w, a) in enumerate(words) if w == "RUN" and "compileall" in a)
    app_copies = [
        i for i, (w, a) in enumerate(words) if w == "COPY" and a.split()[-1].startswith("/app")
    ]
    user_at = next(i for i, (w, _) in enumerate(words) if w == "USER")
    assert max(app_copies) < compile_at < user_at


def test_compiled_app_is_loaded_from_its_bytecode(tmp_path: Path) -> None:
    """The image's own compileall command, run on a copy of the app: the .pyc it writes
    is used on import under PYTHONDONTWRITEBYTECODE even once the source's mtime moved
    (as it may between build layers), and ignored once the source changed."""
    (argv,) = compileall_runs(final_stage())
    app = tmp_path / "app"
    # As the build context has it: no __pycache__ (.dockerignore).
    shutil.copytree(
        ROOT / "examples", app / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = run([sys.executable, *argv[1:-1], str(app)])
    assert result.returncode == 0, both(result)
    source = app / "examples" / "hello.py"
    os.utime(source, (1, 1))

    def loaded_from_bytecode() -> bool:
        probe = run(
            [sys.executable, "-v", "-c", "import examples.hello"],
            env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(app)},
            cwd=app,
        )
        assert probe.returncode == 0, both(probe)
        return f"code object from '{app}/examples/__pycache__/hello." in probe.stderr

    assert loaded_from_bytecode()
    source.write_text(source.read_text() + "\n# changed\n")
    assert not loaded_from_bytecode()


# -- the build context ---------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per line of .dockerignore, in Docker's own syntax: paths from
    the context root, ``*`` and ``?`` within one segment, ``**`` across segments, ``!``
    re-includes, the last matching line wins."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((exclude, re.compile(regex)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``relative`` out of the context (it or a parent matches)."""
    parts = relative.split("/")
    verdict = False
    for exclude, regex in rules:
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = exclude
    return verdict


def build_context() -> set[str]:
    """The files ``docker build`` / ``podman build`` would send from the repository root."""
    rules = dockerignore_rules()
    reincludes = any(not exclude for exclude, _ in rules)
    files = set()
    for directory, subdirs, names in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if here == "." else here + "/"
        if not reincludes:
            subdirs[:] = [d for d in subdirs if not ignored(prefix + d, rules)]
        files |= {prefix + n for n in names if not ignored(prefix + n, rules)}
    return files


def test_dockerignore_keeps_virtualenvs_and_caches_out() -> None:
    rules = dockerignore_rules()
    for path in (
        ".venv/bin/python",
        ".venv/lib/python3.12/site-packages/h2/__init__.py",
        "examples/.venv/pyvenv.cfg",
        ".git/HEAD",
        "src/pounce/__pycache__/app.cpython-312.pyc",
        "examples/hello.pyc",
        ".mypy_cache/3.12/x.json",
        ".env",
        "pounce.egg-info/PKG-INFO",
    ):
        assert ignored(path, rules), path
    context = build_context()
    assert not [f for f in context if f.startswith((".venv/", ".git/")) or "__pycache__" in f]


def test_build_context_holds_everything_the_image_copies() -> None:
    """Every file under version control that a COPY names is sent to the builder."""
    context = build_context()
    for word, args in instructions(CONTAINERFILE.read_text()):
        if word == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                listed = run(["git", "ls-files", "--", source.rstrip("/")])
                assert listed.returncode == 0, both(listed)
                tracked = listed.stdout.split()
                assert tracked, source
                missing = [f for f in tracked if f not in context]
                assert not missing, (source, missing)
