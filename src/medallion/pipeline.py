"""The task graph of a run: which layer tasks exist for which tables, in which order.

Each layer module exports its :class:`Layer` (``LAYER_TASKS``); this module lists them. The
graph is built from the catalog, so adding a table is a declaration, not new wiring.
"""

from __future__ import annotations

from collections.abc import Sequence

from medallion.catalog import source_tables
from medallion.errors import CatalogError
from medallion.runner import Layer, Task


def layers() -> dict[str, Layer]:
    """The layers in run order. Imported here, lazily (their imports are heavy); no layer
    imports the pipeline, so imports run one way."""
    from medallion.bronze.layer import LAYER_TASKS as bronze
    from medallion.gold.layer import LAYER_TASKS as gold
    from medallion.silver.layer import LAYER_TASKS as silver

    return {layer.name: layer for layer in (bronze, silver, gold)}


def build_tasks(
    layer_names: Sequence[str] | None = None, tables: Sequence[str] | None = None
) -> list[Task]:
    """Tasks of the chosen layers (all by default) for the chosen tables (all by default)."""
    every = layers()
    chosen = list(layer_names or every)
    unknown = [name for name in chosen if name not in every]
    if unknown:
        raise CatalogError(f"unknown layer(s) {', '.join(unknown)}; valid: {', '.join(every)}")
    picked = source_tables(list(tables or []))
    tasks: list[Task] = []
    for name, layer in every.items():
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
