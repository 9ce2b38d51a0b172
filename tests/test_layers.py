"""The layers point down: ``workflows → plugins → hooks → core → registry``, and no module imports form a cycle.

Every ``import``/``from … import`` of every module is read from its source
(function-local and ``TYPE_CHECKING`` ones too), so a lazy import cannot hide
an upward edge. Imports under ``if TYPE_CHECKING:`` never run, so they count
for the layers but not for cycles. The root ``__init__.py`` is read too: it runs
before every ``vkit.*`` import, so it imports nothing of vkit until asked.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Lower number = lower layer; a module may import its own layer or any lower one.
LAYERS = {"registry": 0, "core": 1, "hooks": 2, "plugins": 3, "workflows": 4}
#: ``vkit/__init__.py`` re-exports ``hookimpl`` from ``vkit.hooks`` (lazily): the root counts as that layer.
ROOT_LAYER = LAYERS["hooks"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["vkit", *parts])


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")
             if "migrations" not in p.parts and "templates" not in p.parts}
    return {"vkit": ROOT / "__init__.py", **found}


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def _imports(name: str, path: Path, runtime_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_only(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "vkit" or m.startswith("vkit.")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS[parts[1]]
    return ROOT_LAYER if module in ("vkit", "vkit.hookimpl") else None


GRAPH = {name: _imports(name, path) for name, path in _modules().items()}
RUNTIME = {name: _imports(name, path, runtime_only=True) for name, path in _modules().items()}


def _resolve(target: str, modules: set[str]) -> str | None:
    """The module ``target`` names (``vkit.a.b.Name`` → ``vkit.a.b``)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_upward_import(module: str) -> None:
    own = _layer(module)
    upward = sorted(t for t in GRAPH[module] if (_layer(t) or -1) > own)
    assert not upward, f"{module} (layer {own}) imports upper layers: {upward}"


def test_no_import_cycles() -> None:
    modules = set(GRAPH)
    edges = {m: {r for t in RUNTIME[m] if (r := _resolve(t, modules)) and r != m and not m.startswith(r + ".")}
             for m in modules}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(modules):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read() -> None:
    """The parser sees lazy imports (a broken parser would make the tests above pass vacuously)."""
    assert "vkit.hooks.manager" in GRAPH["vkit.workflows.run"]
    assert any(t.startswith("vkit.registry") for t in GRAPH["vkit.core.engine"])


def test_root_package_imports_nothing_of_vkit_when_imported() -> None:
    """``vkit/__init__.py`` runs first on ``import vkit.registry``: an import at its top level (outside functions and
    ``TYPE_CHECKING``) would load that module for every layer; ``hookimpl`` is loaded by the root's ``__getattr__``."""
    tree = ast.parse((ROOT / "__init__.py").read_text(encoding="utf-8"))
    skip = _type_only(tree)
    eager: list[str] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or id(child) in skip:
                continue
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("vkit"):
                eager.append(ast.unparse(child))
            elif isinstance(child, ast.Import) and any(a.name.startswith("vkit") for a in child.names):
                eager.append(ast.unparse(child))
            walk(child)

    walk(tree)
    assert not eager, f"vkit/__init__.py imports at import time: {eager}"
    assert "vkit.hooks.hookspecs" in GRAPH["vkit"]  # the lazy one is read (and sits in the hooks layer)
    probe = "import sys, vkit.registry.errors; assert 'pluggy' not in sys.modules, 'pluggy loaded'; from vkit import hookimpl"
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
