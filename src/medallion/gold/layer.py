"""Gold tasks. Each table records, as app transactions in its own commit, the version of
every input it was built from; a run whose inputs did not move writes nothing, and
``--full-refresh`` rebuilds from Silver (SCD2 history from Silver's full change feed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.audit import table_lease
from medallion.catalog import SOURCE_TABLES, SourceTable
from medallion.engine import Engine, default_engine
from medallion.errors import MedallionError
from medallion.gold.dimensions import build_scd2, scd2_events
from medallion.gold.model import GOLD_TABLES, STREAMED_REVIEWS, GoldKind, GoldTable
from medallion.pipeline import Layer, register_layer
from medallion.runner import RunContext, Task, TaskResult
from medallion.silver.contracts import silver_table
from medallion.silver.transform import empty_silver_sql
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


register_layer(Layer(LAYER, make_tasks))


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
    if table.kind is GoldKind.SCD2:
        data, read = _build_scd2(ctx, table, lake, engine, recorded)
    else:
        inputs = {ref: _read(lake, ref, table) for ref in table.inputs}
        read = sum(t.num_rows for t in inputs.values())
        assert table.build is not None
        data = table.build(inputs, engine)
    version = lake.overwrite(
        LAYER,
        table.name,
        data,
        transactions={txn_id(table.name, ref): v for ref, v in current.items()},
        metadata={"run_id": ctx.run_id, "step": LAYER, "table": table.name, "inputs": current},
    )
    metrics["delta_version"] = version
    metrics["unknown_members"] = unknown_members(data)
    return TaskResult(rows_read=read, rows_written=data.num_rows, metrics=metrics)


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


def events_table(table: GoldTable) -> str:
    """Where a dimension keeps every event it was folded from (beside it in the Gold layer)."""
    return f"_events_{table.name}"


def _build_scd2(
    ctx: RunContext, table: GoldTable, lake: Lake, engine: Engine, recorded: dict[str, int | None]
) -> tuple[pa.Table, int]:
    dim = table.dimension
    assert dim is not None
    source = f"silver.{dim.silver}"
    after = None if ctx.full_refresh else recorded.get(source)
    history = None if ctx.full_refresh else lake.read(LAYER, table.name)
    known = None if ctx.full_refresh else lake.read(LAYER, events_table(table))
    changes, _ = lake.read_changes("silver", dim.silver, after, with_change_type=True)
    current = _read(lake, source, table)
    if changes is None or changes.num_rows == 0:  # only dim_location moved: re-attach lat/lng
        changes = _no_changes(current)
    events = scd2_events(dim, changes, current, engine)
    location = lake.read(LAYER, "dim_location") if dim.location_zip else None
    data, everything = build_scd2(
        dim, history, events, known=known, location=location, engine=engine
    )
    # the events first: a crash before the dimension's commit re-reads the same change feed,
    # and the union with the stored events is distinct, so nothing doubles
    if events.num_rows:
        lake.overwrite(
            LAYER, events_table(table), everything, transactions={},
            metadata={"run_id": ctx.run_id, "step": LAYER, "table": events_table(table)},
        )  # fmt: skip
    return data, changes.num_rows


def _no_changes(current: pa.Table) -> pa.Table:
    return current.schema.empty_table().append_column("_change_type", pa.array([], pa.string()))
