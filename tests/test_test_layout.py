"""The suite's own layout: helpers come from ``tests/helpers``, and a test that starts a
server is marked ``slow`` (so ``pytest -m "not slow"`` stays the fast layer)."""

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
