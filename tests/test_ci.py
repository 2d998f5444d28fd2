"""The project's own habits: what .ci/run runs and in which order, the system tools
declared in one install step (never installed from a test), the license and changelog."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    _, _, rest = readme.partition("Set up and run the whole test suite")
    assert rest, "README lost its test command"
    block = re.search(r"```sh\n(.+?)\n```", rest, re.S)
    assert block is not None
    return block.group(1).strip()


def _commands(script: str) -> list[str]:
    lines = (ROOT / script).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_command_then_lint_format_types_and_python_313() -> None:
    commands = _commands(".ci/run")
    start = commands.index("set -euo pipefail")
    steps = commands[start + 2 :]  # after the cd to the checkout
    assert _readme_test_command().startswith(".ci/install-tools && ")
    assert steps == [
        _readme_test_command(),
        ".venv/bin/ruff check src tests benchmarks",
        ".venv/bin/ruff format --check src tests benchmarks",
        ".venv/bin/mypy",
        ".ci/smoke-py313",
    ]
    smoke = (ROOT / ".ci/smoke-py313").read_text()
    assert "sys.version_info[:2] == (3, 13)" in smoke
    assert ".venv313/bin/pytest" in smoke


def _required_tools() -> set[tuple[str, str]]:
    """Every ``require_tool("binary", "package")`` call in the tests."""
    found = set()
    for path in [*TESTS.glob("*.py"), *(TESTS / "apps").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "require_tool"
                and all(isinstance(arg, ast.Constant) for arg in node.args)
            ):
                binary, package = (arg.value for arg in node.args)
                found.add((binary, package))
    return found


def test_every_tool_a_test_requires_is_declared_in_install_tools() -> None:
    script = (ROOT / ".ci/install-tools").read_text()
    declared = set(re.findall(r"^\s+([\w.-]+):([\w.+-]+)", script, re.M))
    required = _required_tools()
    assert {("chromium", "chromium"), ("testssl", "testssl.sh")} <= required
    assert required <= declared
    # Autobahn|Testsuite, the version test_websocket_autobahn.py expects
    version = re.search(
        r'^VERSION = "(.+)"$', (TESTS / "test_websocket_autobahn.py").read_text(), re.M
    )
    assert version is not None
    assert f"'autobahntestsuite=={version.group(1)}'" in script


def test_no_test_installs_packages() -> None:
    installs = re.compile(
        r"""\[\s*["'](apt-get|apt|npm|dnf|yum)["']|["']pip["']\)?,\s*["']install["']"""
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*TESTS.glob("*.py"), *(TESTS / "apps").glob("*.py")]
        if installs.search(path.read_text())
    ]
    assert offenders == []


def test_license_and_changelog() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in license_text
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog\n")
