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
from medallion.catalog import SOURCE_TABLES, SourceTable, empty_bronze
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
from medallion.storage import DeltaHandle, Lake, app_id

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


def _open_inputs(lake: Lake, table: GoldTable) -> dict[str, DeltaHandle]:
    """Each input opened once: its version and its rows come from one snapshot."""
    handles = {}
    for ref in table.inputs:
        layer, name = ref.split(".", 1)
        handles[ref] = lake.table(layer, name)
        if layer == LAYER and not handles[ref].exists:
            raise_missing(ref, table)
    return handles


def raise_missing(ref: str, table: GoldTable) -> None:
    raise MedallionError(f"gold.{table.name} needs {ref}, which does not exist yet; run it first")


def _build(ctx: RunContext, table: GoldTable, lake: Lake, engine: Engine) -> TaskResult:
    inputs = _open_inputs(lake, table)
    # MISSING for a Silver table never written (empty source, or no review streamed yet)
    current = {ref: MISSING if h.version is None else h.version for ref, h in inputs.items()}
    target = lake.table(LAYER, table.name)
    recorded = {ref: target.app_version(txn_id(table.name, ref)) for ref in current}
    metrics: dict[str, Any] = {"inputs": current}
    if not ctx.full_refresh and all(recorded[r] == v for r, v in current.items()):
        metrics["delta_version"] = target.version
        return TaskResult(metrics=metrics)
    transactions = {txn_id(table.name, ref): v for ref, v in current.items()}
    if table.kind is GoldKind.SCD2:
        data, read, through = _build_scd2(
            ctx, table, lake, target=target, inputs=inputs, engine=engine
        )
        transactions |= {txn_id(table.name, ref): v for ref, v in through.items()}
        metrics["bronze_through"] = through
    else:
        frames = {ref: _read(h, ref, table) for ref, h in inputs.items()}
        read = sum(t.num_rows for t in frames.values())
        assert table.build is not None
        data = table.build(frames, engine)
    version = target.overwrite(
        data,
        transactions=transactions,
        metadata={"run_id": ctx.run_id, "step": LAYER, "table": table.name, "inputs": current},
    )
    metrics["delta_version"] = version
    metrics["unknown_members"] = unknown_members(table, data)
    return TaskResult(rows_read=read, rows_written=data.num_rows, metrics=metrics)


def _dimension_sources(table: GoldTable) -> list[str]:
    """The Silver tables whose Bronze history a dimension is folded from."""
    assert table.dimension is not None
    lookup = table.dimension.contract.lookup
    return [table.dimension.silver, *([lookup.table] if lookup else [])]


def unknown_members(table: GoldTable, data: pa.Table) -> dict[str, int]:
    """Rows pointing at an unknown member (surrogate or date key 0), per declared key column."""
    keys = [*table.dimension_keys, *table.date_keys]
    return {c: int(pc.sum(pc.equal(data[c], 0)).as_py() or 0) for c in keys}


def _read(handle: DeltaHandle, ref: str, table: GoldTable) -> pa.Table:
    data = handle.read()
    if data is not None:
        return data
    layer, name = ref.split(".", 1)
    if layer != "silver":
        raise_missing(ref, table)
    # a Silver table never written: its source is empty, or no review was streamed yet
    # (streamed reviews have the batch reviews' columns)
    spec = silver_table("order_reviews" if ref == STREAMED_REVIEWS else name)
    return default_engine().query(empty_silver_sql(spec))


def _build_scd2(
    ctx: RunContext,
    table: GoldTable,
    lake: Lake,
    *,
    target: DeltaHandle,
    inputs: dict[str, DeltaHandle],
    engine: Engine,
) -> tuple[pa.Table, int, dict[str, int]]:
    """Fold the entities whose Bronze history grew since the last build from ALL their valid
    Bronze states, up to the Bronze version Silver has merged (so Silver's current state and
    Gold's history always come from the same rows). Returns the dimension, the rows read, and
    the Bronze versions folded through (recorded with the commit)."""
    dim = table.dimension
    assert dim is not None
    lookup = dim.contract.lookup
    sources = _dimension_sources(table)
    # the Silver snapshots this build recorded as its inputs say how far Bronze was merged
    through = {n: inputs[f"silver.{n}"].app_version(app_id("silver", n)) for n in sources}
    folded = {n: target.app_version(txn_id(table.name, f"bronze.{n}")) for n in sources}
    rebuild = ctx.full_refresh or not target.exists or any(v is None for v in folded.values())
    bronze = {n: lake.table("bronze", silver_table(n).bronze) for n in sources}
    rows = _bronze_rows(bronze[dim.silver], dim.silver, through[dim.silver])
    lookup_history = None
    if lookup is not None:
        lookup_rows = _bronze_rows(bronze[lookup.table], lookup.table, through[lookup.table])
        lookup_history = valid_history(silver_table(lookup.table), lookup_rows, engine)
    stored, touched = None, None
    if not rebuild:
        new = {n: _valid_new(bronze[n], n, folded[n], through[n], engine) for n in sources}
        linked = links(dim, rows, engine)
        touched = touched_entities(
            dim, linked, new[dim.silver], new[lookup.table] if lookup else None, engine
        )
        rows = rows_of(dim, rows, linked, touched, engine)
        stored = target.read()
    history = valid_history(dim.contract, rows, engine)
    events = dimension_events(dim, history, lookup_history, engine)
    location = inputs["gold.dim_location"].read() if dim.location_zip else None
    data = build_scd2(dim, stored, events, touched, location=location, engine=engine)
    versions = {f"bronze.{name}": MISSING if v is None else v for name, v in through.items()}
    return data, history.num_rows, versions


def _bronze_rows(bronze: DeltaHandle, name: str, through: int | None) -> pa.Table:
    """The Bronze rows of Silver table ``name`` as of version ``through`` (None: none)."""
    rows = None if through is None else bronze.read(version=through)
    return rows if rows is not None else empty_bronze(silver_table(name).bronze)


def _valid_new(
    bronze: DeltaHandle, name: str, after: int | None, through: int | None, engine: Engine
) -> pa.Table:
    """The valid Bronze states of ``name`` appended after version ``after`` up to ``through``."""
    spec = silver_table(name)
    rows = None
    if through is not None and (after is None or after < through):
        rows, _ = bronze.changes(None if after == MISSING else after, until=through)
    if rows is None:
        rows = empty_bronze(spec.bronze)
    return valid_history(spec, rows, engine)
