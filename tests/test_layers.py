"""The package's own shape: each layer imports only from the layers its allow-list names
(all to its left), and no module imports itself back through others."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
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
    {"api", "testing"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}

#: What each layer may import, by name ("pounce" is the package root: its version).
#: Each list names only layers to the left; a new dependency is a decision: add it here
#: and to the layer table in docs/architecture.md.
BASE = {"errors", "types"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "types": set(),
    "logs": {"errors"},
    "metrics": {"pounce", "errors"},
    "config": BASE,
    "net": BASE | {"config", "logs"},
    # sans-I/O: bytes in, events out; no config, sockets or TLS (the worker link's
    # messages carry a metrics snapshot: plain data)
    "protocols": BASE | {"metrics"},
    "asgi": BASE | {"logs", "metrics", "config", "protocols"},
    "worker": BASE | {"logs", "metrics", "config", "net", "protocols", "asgi"},
    # the wire protocol (over the frame codec of protocols/framing.py) and the handler
    # interface only, never supervisor internals
    "control": BASE | {"protocols"},
    "supervisor": BASE
    | {"pounce", "logs", "metrics", "config", "net", "protocols", "worker", "control"},
    # only the control client (and rich), so that `pounce ctl` starts instantly
    "ctl": BASE | {"control"},
    "cli": BASE
    | {"pounce", "logs", "metrics", "config", "net", "asgi", "worker", "supervisor", "ctl"},
    # pounce.run: the daemon of `pounce serve` (cli.main.serve), from Python
    "api": BASE | {"config", "asgi", "supervisor", "cli"},
    # TestServer: one Worker on a thread, configured as pounce.run is
    "testing": BASE | {"logs", "config", "net", "asgi", "worker", "api"},
}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pounce" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path, *, modules: Iterable[str] = ()) -> list[str]:
    """Absolute module names ``path`` imports, relative imports resolved.  ``from a import
    b`` gives ``a.b`` when that is one of ``modules`` (a submodule), else ``a`` and ``a.b``."""
    known = set(modules)
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = ".".join(package[: len(package) - (node.level - 1)])
                base = f"{head}.{base}" if base else head
            names = [f"{base}.{alias.name}" for alias in node.names]
            found += names if known and all(n in known for n in names) else [base, *names]
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(module: str) -> str | None:
    """The layer ``module`` belongs to; "pounce" for the package root; None if not ours."""
    if module == "pounce":
        return "pounce"
    layer = _layer_of(module)
    # a name of the package root (pounce.__version__) is the root
    return layer if layer is None or layer in RANK else "pounce"


def layer_problems(imports: Iterable[tuple[str, str, str]]) -> list[str]:
    """``(file, its layer, module imported)`` triples that break the allow-lists."""
    problems = []
    for rel, own, module in imports:
        layer = _target(module)
        if layer is None or layer == own:
            continue
        if layer not in ALLOWED.get(own, set()):
            problems.append(f"{rel} imports {module} ({own} may not depend on {layer})")
    return problems


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path, path.relative_to(SRC).parts[0].removesuffix(".py")


def module_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports, anywhere in the
    file: at the top, inside a function, and under ``if TYPE_CHECKING:`` (no exemptions)."""
    modules = {_module_name(path): path for path, _ in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = _imports(path, modules=modules)
        edges = {m for m in imported if m in modules}
        graph[name] = edges - {name}
    return graph


def test_every_module_belongs_to_a_layer() -> None:
    for path in SRC.iterdir():
        name = path.stem
        if name.startswith("_") or name == "py":
            continue
        assert name in RANK, (
            f"{path.name} is in no layer: add it to LAYERS and docs/architecture.md"
        )


def test_every_layer_has_an_allow_list_of_layers_to_its_left() -> None:
    assert set(ALLOWED) == set(RANK)
    for own, allowed in ALLOWED.items():
        for layer in allowed - {"pounce"}:
            assert RANK[layer] <= RANK[own], f"{own} may not import {layer}, to its right"


def test_layers_import_only_leftwards() -> None:
    problems = []
    for path, own in _sources():
        if own not in RANK:
            continue
        for module in _imports(path):
            layer = _layer_of(module)
            if layer is None or layer not in RANK:
                continue
            if RANK[layer] > RANK[own]:
                rel = path.relative_to(SRC)
                problems.append(f"{rel} imports {module} ({own} may not depend on {layer})")
    assert problems == []


def test_layers_import_only_their_allow_list() -> None:
    imports = [
        (str(path.relative_to(SRC)), own, module)
        for path, own in _sources()
        if own in RANK
        for module in _imports(path)
    ]
    assert layer_problems(imports) == []


def test_a_probe_import_from_protocols_into_net_fails() -> None:
    # Leftwards, yet not allowed: protocols are sans-I/O.
    probe = [("protocols/http11.py", "protocols", "pounce.net.listeners")]
    assert layer_problems(probe) == [
        "protocols/http11.py imports pounce.net.listeners (protocols may not depend on net)"
    ]
    assert layer_problems([("ctl/status.py", "ctl", "pounce.supervisor.daemon")]) != []
    assert layer_problems([("net/tls.py", "net", "pounce.config.model")]) == []


def test_no_import_cycles_between_modules() -> None:
    """No module imports (even for typing only) a module that imports it back: the
    worker's shared context lives in worker/context.py, not in the composition root."""
    assert cycles(module_graph()) == []


def test_the_cycle_check_finds_a_cycle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_module_graph_sees_lazy_and_type_only_imports() -> None:
    graph = module_graph()
    # server imports connection at the top; h2hooks imports h2connection in a function
    assert "pounce.worker.connection" in graph["pounce.worker.server"]
    assert "pounce.worker.h2connection" in graph["pounce.worker.h2hooks"]
    # h2connection names H2WebSocketStream for the type checker only: still an edge
    assert "pounce.asgi.h2websocket" in graph["pounce.worker.h2connection"]


def test_protocols_are_sans_io() -> None:
    for path in (SRC / "protocols").rglob("*.py"):
        for module in _imports(path):
            root = module.split(".")[0]
            assert root not in {"asyncio", "socket", "time", "selectors"}, f"{path.name}: {module}"
