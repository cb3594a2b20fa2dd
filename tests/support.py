"""Helpers the test tiers share (fixtures live in ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from medallion import api
from medallion.catalog import source_table
from medallion.runner import RunReport
from medallion.settings import Settings
from medallion.source.db import open_source
from medallion.storage import Lake


def run_ok(
    settings: Settings, layers: Sequence[str] | None = None, *, full_refresh: bool = False
) -> RunReport:
    """Run the pipeline (or some layers) and fail the test, naming each failed task, unless
    every task succeeded."""
    report = api.run(settings, list(layers) if layers else None, full_refresh=full_refresh)
    assert report.ok, [(o.task.name, o.error) for o in report.outcomes if o.error]
    return report


def put(settings: Settings, name: str, rows: list[dict]) -> None:
    """Upsert hand-written rows into a source table (missing columns are NULL)."""
    table = source_table(name)
    schema = table.arrow_schema()
    full = [{f.name: r.get(f.name) for f in schema} for r in rows]
    with open_source(settings.source_location) as db:
        db.upsert(table, pa.Table.from_pylist(full, schema=schema))


def read(settings: Settings, layer: str, name: str) -> pa.Table:
    """A lake table that must exist."""
    data = Lake(settings.lake_location).read(layer, name)
    assert data is not None, f"{layer}.{name} does not exist"
    return data
