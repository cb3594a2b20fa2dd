"""The task graph of a run: which layer tasks exist for which tables, in which order.

Layers register a task factory here (``LAYERS``); the graph is built from the catalog, so
adding a table or a layer is a declaration, not new wiring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medallion.catalog import SourceTable, source_tables
from medallion.errors import CatalogError
from medallion.runner import Task


@dataclass(frozen=True)
class Layer:
    """A layer: its name and the tasks it runs for a set of source tables."""

    name: str
    make_tasks: Callable[[Sequence[SourceTable]], list[Task]]


def per_table(
    make_task: Callable[[SourceTable], Task | None],
) -> Callable[[Sequence[SourceTable]], list[Task]]:
    """A task factory for layers with one task per source table."""

    def make_tasks(tables: Sequence[SourceTable]) -> list[Task]:
        return [t for t in (make_task(table) for table in tables) if t is not None]

    return make_tasks


LAYERS: dict[str, Layer] = {}


def register_layer(layer: Layer) -> None:
    if layer.name in LAYERS:
        raise CatalogError(f"layer {layer.name} registered twice")
    LAYERS[layer.name] = layer


def build_tasks(
    layers: Sequence[str] | None = None, tables: Sequence[str] | None = None
) -> list[Task]:
    """Tasks of the chosen layers (all by default) for the chosen tables (all by default)."""
    _load_layers()
    chosen = list(layers or LAYERS)
    unknown = [name for name in chosen if name not in LAYERS]
    if unknown:
        raise CatalogError(f"unknown layer(s) {', '.join(unknown)}; valid: {', '.join(LAYERS)}")
    picked = source_tables(list(tables or []))
    tasks: list[Task] = []
    for name, layer in LAYERS.items():
        if name in chosen:
            tasks += layer.make_tasks(picked)
    return _drop_missing_upstream(tasks)


def _drop_missing_upstream(tasks: list[Task]) -> list[Task]:
    """A run of one layer does not wait for tasks of layers it was not asked to run."""
    names = {t.name for t in tasks}
    return [
        Task(t.name, t.layer, t.table, t.fn, tuple(u for u in t.upstream if u in names))
        for t in tasks
    ]


def _load_layers() -> None:
    """Import the layer modules, which register themselves (kept lazy: imports are heavy)."""
    import medallion.bronze
    import medallion.gold.layer
    import medallion.silver.layer  # noqa: F401
