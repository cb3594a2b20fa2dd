"""Gold tasks. Each table records, as app transactions in its own commit, the version of
every input it was built from; a run whose inputs did not move writes nothing, and
``--full-refresh`` rebuilds from Silver, and SCD2 dimensions from every state Bronze captured
up to what Silver merged: the same events an incremental run folds, so the same tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.audit import table_lease
from medallion.catalog import SOURCE_TABLES, SourceTable, bronze_schema, source_table
from medallion.engine import Engine, default_engine
from medallion.errors import MedallionError
from medallion.gold.dimensions import (
    build_scd2,
    dimension_events,
    links,
    rows_of,
    touched_entities,
)
from medallion.gold.model import GOLD_TABLES, STREAMED_REVIEWS, GoldKind, GoldTable
from medallion.runner import Layer, RunContext, Task, TaskResult
from medallion.silver.contracts import silver_table
from medallion.silver.transform import empty_silver_sql, valid_history
from medallion.storage import Lake

log = logging.getLogger(__name__)

LAYER = "gold"
MISSING = -1  # the recorded version of an optional input that does not exist yet


def txn_id(table: str, ref: str) -> str:
    return f"medallion.gold.{table}:{ref}"


def make_tasks(tables: Sequence[SourceTable]) -> list[Task]:
    """All Gold tables when every source table is picked, else those reading a picked one."""
    picked = {f"silver.{t.name}" for t in tables}
    every = len(tables) == len(SOURCE_TABLES)
    chosen = [g for g in GOLD_TABLES if every or picked & set(g.inputs)]
    return [
        Task(
            f"{LAYER}.{g.name}",
            LAYER,
            g.name,
            lambda ctx, g=g: build_table(ctx, g),  # type: ignore[misc]
            tuple(i for i in g.inputs if i != STREAMED_REVIEWS),
        )
        for g in chosen
    ]


LAYER_TASKS = Layer(LAYER, make_tasks)


def build_table(ctx: RunContext, table: GoldTable) -> TaskResult:
    """Rebuild or extend one Gold table if any of its inputs moved; the task function."""
    lake = Lake.from_settings(ctx.settings)
    with table_lease(ctx.settings, lake.table_uri(LAYER, table.name), ctx.run_id):
        return _build(ctx, table, lake, default_engine())


def _input_versions(lake: Lake, table: GoldTable) -> dict[str, int]:
    """Each input's Delta version; MISSING for a Silver table never written (empty source)."""
    versions = {}
    for ref in table.inputs:
        layer, name = ref.split(".", 1)
        version = lake.version(layer, name)
        if version is None and layer == LAYER:
            raise_missing(ref, table)
        versions[ref] = MISSING if version is None else version
    return versions


def raise_missing(ref: str, table: GoldTable) -> None:
    raise MedallionError(f"gold.{table.name} needs {ref}, which does not exist yet; run it first")


def _build(ctx: RunContext, table: GoldTable, lake: Lake, engine: Engine) -> TaskResult:
    current = _input_versions(lake, table)
    recorded = {
        ref: lake.app_version(LAYER, table.name, txn_id(table.name, ref)) for ref in current
    }
    metrics: dict[str, Any] = {"inputs": current}
    if not ctx.full_refresh and all(recorded[r] == v for r, v in current.items()):
        metrics["delta_version"] = lake.version(LAYER, table.name)
        return TaskResult(metrics=metrics)
    transactions = {txn_id(table.name, ref): v for ref, v in current.items()}
    if table.kind is GoldKind.SCD2:
        data, read, through = _build_scd2(ctx, table, lake, engine)
        transactions |= {txn_id(table.name, ref): v for ref, v in through.items()}
        metrics["bronze_through"] = through
    else:
        inputs = {ref: _read(lake, ref, table) for ref in table.inputs}
        read = sum(t.num_rows for t in inputs.values())
        assert table.build is not None
        data = table.build(inputs, engine)
    version = lake.overwrite(
        LAYER,
        table.name,
        data,
        transactions=transactions,
        metadata={"run_id": ctx.run_id, "step": LAYER, "table": table.name, "inputs": current},
    )
    metrics["delta_version"] = version
    metrics["unknown_members"] = unknown_members(data)
    return TaskResult(rows_read=read, rows_written=data.num_rows, metrics=metrics)


def _dimension_sources(table: GoldTable) -> list[str]:
    """The Silver tables whose Bronze history a dimension is folded from."""
    assert table.dimension is not None
    lookup = table.dimension.contract.lookup
    return [table.dimension.silver, *([lookup.table] if lookup else [])]


def unknown_members(data: pa.Table) -> dict[str, int]:
    """Fact rows pointing at an unknown member (sk or date key 0), per key column."""
    keys = [c for c in data.column_names if c.endswith(("_sk", "_date_key"))]
    if table_is_dimension(data):
        return {}
    return {c: int(pc.sum(pc.equal(data[c], 0)).as_py() or 0) for c in keys}


def table_is_dimension(data: pa.Table) -> bool:
    return "valid_from" in data.column_names or "date_key" in data.column_names


def _read(lake: Lake, ref: str, table: GoldTable) -> pa.Table:
    layer, name = ref.split(".", 1)
    data = lake.read(layer, name)
    if data is not None:
        return data
    if layer != "silver":
        raise_missing(ref, table)
    # a Silver table never written: its source is empty, or no review was streamed yet
    # (streamed reviews have the batch reviews' columns)
    spec = silver_table("order_reviews" if ref == STREAMED_REVIEWS else name)
    return default_engine().query(empty_silver_sql(spec))


def _build_scd2(
    ctx: RunContext, table: GoldTable, lake: Lake, engine: Engine
) -> tuple[pa.Table, int, dict[str, int]]:
    """Fold the entities whose Bronze history grew since the last build from ALL their valid
    Bronze states, up to the Bronze version Silver has merged (so Silver's current state and
    Gold's history always come from the same rows). Returns the dimension, the rows read, and
    the Bronze versions folded through (recorded with the commit)."""
    dim = table.dimension
    assert dim is not None
    lookup = dim.contract.lookup
    sources = _dimension_sources(table)
    through = {name: _silver_through(lake, name) for name in sources}
    folded = {
        name: lake.app_version(LAYER, table.name, txn_id(table.name, f"bronze.{name}"))
        for name in sources
    }
    rebuild = ctx.full_refresh or any(v is None for v in folded.values())
    rebuild = rebuild or lake.version(LAYER, table.name) is None
    bronze = _bronze(lake, dim.silver, through[dim.silver])
    lookup_history = (
        valid_history(
            silver_table(lookup.table), _bronze(lake, lookup.table, through[lookup.table]), engine
        )
        if lookup
        else None
    )
    stored, touched = None, None
    if not rebuild:
        new = {
            name: _valid_new(lake, name, folded[name], through[name], engine) for name in sources
        }
        lookup_new = new[lookup.table] if lookup else None
        linked = links(dim, bronze, engine)
        touched = touched_entities(dim, linked, new[dim.silver], lookup_new, engine)
        bronze = rows_of(dim, bronze, linked, touched, engine)
        stored = lake.read(LAYER, table.name)
    history = valid_history(dim.contract, bronze, engine)
    events = dimension_events(dim, history, lookup_history, engine)
    location = lake.read(LAYER, "dim_location") if dim.location_zip else None
    data = build_scd2(dim, stored, events, touched, location=location, engine=engine)
    versions = {f"bronze.{name}": MISSING if v is None else v for name, v in through.items()}
    return data, history.num_rows, versions


def _silver_through(lake: Lake, name: str) -> int | None:
    """The Bronze version Silver ``name`` has merged through (None: nothing merged yet)."""
    return lake.app_version("silver", name, f"medallion.silver.{name}")


def _bronze(lake: Lake, name: str, through: int | None) -> pa.Table:
    """The Bronze rows of Silver table ``name`` as of version ``through`` (None: none)."""
    spec = silver_table(name)
    rows = None if through is None else lake.read("bronze", spec.bronze, version=through)
    return rows if rows is not None else bronze_schema(source_table(spec.bronze)).empty_table()


def _valid_new(
    lake: Lake, name: str, after: int | None, through: int | None, engine: Engine
) -> pa.Table:
    """The valid Bronze states of ``name`` appended after version ``after`` up to ``through``."""
    spec = silver_table(name)
    rows = None
    if through is not None and (after is None or after < through):
        after = None if after == MISSING else after
        rows, _ = lake.read_changes("bronze", spec.bronze, after, until=through)
    if rows is None:
        rows = bronze_schema(source_table(spec.bronze)).empty_table()
    return valid_history(spec, rows, engine)
