"""Imports run one way: the graph of every `medallion` import in `src/` (lazy ones included)
has no cycle, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import graphlib
import importlib
import logging
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "medallion").rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every medallion module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("medallion")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medallion"):
            base = node.module or ""
            for alias in node.names:  # `from medallion.gold import facts` names a module
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {name for name in found if name in MODULES}


def test_the_import_graph_has_no_cycle() -> None:
    graph = {name: imported(path) - {name} for name, path in MODULES.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_module_imports_on_its_own(name: str) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        importlib.import_module(name)
    finally:  # importing Airflow configures the root logger; the next tests do not want it
        root.handlers[:] = handlers
        root.setLevel(level)
