"""The package's own shape: each layer imports only from the layers to its left."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "pounce"
LAYERS = [
    {"errors", "types", "logs", "metrics"},
    {"config"},
    {"net"},
    {"protocols"},
    {"asgi"},
    {"worker"},
    {"control"},
    {"supervisor"},
    {"ctl", "bench"},
    {"cli"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pounce" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_every_module_belongs_to_a_layer() -> None:
    for path in SRC.iterdir():
        name = path.stem
        if name.startswith("_") or name == "py":
            continue
        assert name in RANK, (
            f"{path.name} is in no layer: add it to LAYERS and docs/architecture.md"
        )


def test_layers_import_only_leftwards() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own not in RANK:
            continue
        for module in _imports(path):
            layer = _layer_of(module)
            if layer is None or layer not in RANK:
                continue
            if RANK[layer] > RANK[own]:
                problems.append(f"{rel} imports {module} ({own} may not depend on {layer})")
    assert problems == []


def test_protocols_are_sans_io() -> None:
    for path in (SRC / "protocols").rglob("*.py"):
        for module in _imports(path):
            root = module.split(".")[0]
            assert root not in {"asyncio", "socket", "time", "selectors"}, f"{path.name}: {module}"


def _module_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, at any place in
    the file: under ``TYPE_CHECKING`` and inside functions too (no exemptions)."""
    modules: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in modules:
                    deps.add(node.module)
                # `from pounce.worker import h2hooks` imports the module h2hooks
                deps |= {
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if f"{node.module}.{alias.name}" in modules
                }
        # (a module's own packages are imported before it: not an edge of a cycle)
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """No module imports (even for typing only) a module that imports it back: the
    worker's shared context lives in worker/context.py, not in the composition root."""
    assert _cycles(_module_graph()) == []
