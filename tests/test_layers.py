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
    {"ctl"},
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
