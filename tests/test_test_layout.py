"""The suite's own layout: helpers come from ``tests/helpers`` (never from conftest or from
another test module), and a test that starts a server is marked ``slow`` (so
``pytest -m "not slow"`` stays the fast layer)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Fixtures (conftest.py) and helpers that start a pounce server or daemon.
SERVER_FIXTURES = {"serve", "launch", "daemons"}
SERVER_CALLS = {"start_server", "spawn", "start_tls"}


def _modules() -> list[Path]:
    return sorted(TESTS.glob("test_*.py"))


def _marked_slow(node: ast.expr) -> bool:
    return "mark.slow" in ast.unparse(node)


def _module_slow(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            return _marked_slow(stmt.value)
    return False


def test_no_test_module_imports_conftest() -> None:
    offenders = []
    for path in [*_modules(), *(TESTS / "helpers").glob("*.py"), *(TESTS / "apps").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if "conftest" in names:
                offenders.append(path.name)
    assert offenders == [], f"import from helpers.* instead of conftest: {offenders}"


def _imported_modules(tree: ast.Module) -> list[str]:
    """Every module an import statement anywhere in ``tree`` names, dotted, as written."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.append(base)
            # ``from tests import test_x`` and ``from . import test_x`` import a module too.
            names += [f"{base}.{a.name}" if base else a.name for a in node.names]
    return names


def test_no_module_imports_a_test_module() -> None:
    offenders = set()
    for path in [*_modules(), *(TESTS / "helpers").glob("*.py"), *(TESTS / "apps").glob("*.py")]:
        for name in _imported_modules(ast.parse(path.read_text())):
            parts = name.split(".")
            for i, part in enumerate(parts):
                if part.startswith("test_"):
                    offenders.add(f"{path.name} imports {'.'.join(parts[: i + 1])}")
                    break
    assert sorted(offenders) == [], f"move what they share into tests/helpers: {sorted(offenders)}"


def test_tests_that_start_servers_are_marked_slow() -> None:
    starters, unmarked = [], []
    for path in _modules():
        tree = ast.parse(path.read_text())
        module_slow = _module_slow(tree)
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            calls = {
                n.func.id
                for n in ast.walk(node)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            }
            params = {a.arg for a in node.args.args}
            if not (params & SERVER_FIXTURES or calls & SERVER_CALLS):
                continue
            starters.append(node.name)
            if not module_slow and not any(_marked_slow(d) for d in node.decorator_list):
                unmarked.append(f"{path.name}::{node.name}")
    assert len(starters) > 50, "the check no longer sees the tests that start servers"
    assert unmarked == [], f"mark these slow (or their module): {unmarked}"
