"""Gold tasks. Each table records, as app transactions in its own commit, the version of
every input it was built from; a run whose inputs did not move writes nothing, and
``--full-refresh`` rebuilds from Silver, and SCD2 dimensions from every state Bronze captured
up to what Silver merged: the same events an incremental run folds, so the same tables.

Builds run where the engine runs: inputs are lazy scans, results and intermediates are kept by
the engine (the results near their table, committed by it as they lie, the rest deleted once
the build is done), and only counts, keys of a change and touched entities come here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.audit import table_lease
from medallion.catalog import SOURCE_TABLES, SourceTable, TableRef, empty_bronze, silver_ref
from medallion.engine import Engine, Relation, default_engine, engine_for, rows_in
from medallion.errors import MedallionError
from medallion.gold.dimensions import (
    SCD2Dimension,
    dimension_events,
    touched_entities,
    with_derived,
)
from medallion.gold.increment import (
    MISSING,
    Written,
    same_columns,
    touched_keys,
    write_changes,
)
from medallion.gold.links import current_links, rows_of
from medallion.gold.model import GOLD_TABLES, DateDimension, Dimension, GoldTable, Snapshot
from medallion.gold.scd2 import UNKNOWN_KEY, fold_scd2
from medallion.runner import Layer, RunContext, Task, TaskResult
from medallion.silver.contracts import silver_table
from medallion.silver.transform import empty_silver_sql, valid_history
from medallion.sql import quote, quoted_list
from medallion.storage import CDF, DeltaHandle, Lake, app_id

log = logging.getLogger(__name__)

LAYER = "gold"


def txn_id(table: str, ref: TableRef) -> str:
    return f"medallion.gold.{table}:{ref}"


def make_tasks(
    tables: Sequence[SourceTable], declared: Sequence[GoldTable] = GOLD_TABLES
) -> list[Task]:
    """All Gold tables when every source table is picked, else those reading a picked one."""
    picked = {silver_ref(t.name) for t in tables}
    every = len(tables) == len(SOURCE_TABLES)
    chosen = [g for g in declared if every or picked & set(g.inputs)]
    return [
        Task(
            str(g.ref),
            LAYER,
            g.name,
            lambda ctx, g=g: build_table(ctx, g),  # type: ignore[misc]
            tuple(str(i) for i in g.inputs),
        )
        for g in chosen
    ]


LAYER_TASKS = Layer(LAYER, make_tasks)


def build_table(ctx: RunContext, table: GoldTable) -> TaskResult:
    """Rebuild or extend one Gold table if any of its inputs moved; the task function."""
    lake = Lake.from_settings(ctx.settings)
    with table_lease(ctx.settings, lake.table_uri(LAYER, table.name), ctx.run_id):
        return _build(ctx, table, lake, engine_for(ctx.settings))


def _open_inputs(lake: Lake, table: GoldTable) -> dict[TableRef, DeltaHandle]:
    """Each input opened once: its version and its rows come from one snapshot."""
    handles = {}
    for ref in table.reads:
        handles[ref] = lake.table(ref.layer, ref.name)
        if ref.layer == LAYER and not handles[ref].exists:
            raise_missing(ref, table)
    return handles


def raise_missing(ref: TableRef, table: GoldTable) -> None:
    raise MedallionError(f"gold.{table.name} needs {ref}, which does not exist yet; run it first")


def _build(ctx: RunContext, table: GoldTable, lake: Lake, engine: Engine) -> TaskResult:
    inputs = _open_inputs(lake, table)
    # MISSING for a Silver table never written (empty source, or no review streamed yet); a
    # compaction (`medallion maintain`) moves no data_version, so it rebuilds nothing
    current = {ref: _or_missing(h.data_version) for ref, h in inputs.items()}
    target = lake.table(LAYER, table.name)
    recorded = {ref: target.app_version(txn_id(table.name, ref)) for ref in current}
    metrics: dict[str, Any] = {"inputs": {str(ref): v for ref, v in current.items()}}
    if not ctx.full_refresh and all(recorded[r] == v for r, v in current.items()):
        return TaskResult(metrics=metrics, delta_version=target.version)
    transactions = {txn_id(table.name, ref): v for ref, v in current.items()}
    whole = ctx.full_refresh or not target.exists
    if isinstance(table, DateDimension) and not whole and _days_held(table, inputs, target, engine):
        meta = {"run_id": ctx.run_id, "step": LAYER, "table": table.name, **metrics}
        version = target.record(transactions, meta)
        return TaskResult(metrics=metrics | {"days_held": True}, delta_version=version)
    scope: tuple[str, pa.Array] | None = None
    if isinstance(table, Dimension):
        located = TableRef(LAYER, "dim_location")  # lat/lng are joined onto every row
        moved = located in current and recorded[located] != current[located]
        fold = partial(_build_scd2, ctx, table, lake, target=target, inputs=inputs, engine=engine)
        data, read, through, scope = fold(whole=moved)
        if scope is not None and not same_columns(target, data):  # its columns changed
            engine.discard(data)
            data, read, through, scope = fold(whole=True)
        transactions |= {txn_id(table.name, ref): v for ref, v in through.items()}
        metrics["bronze_through"] = {str(ref): v for ref, v in through.items()}
        if scope is not None:
            metrics["keys_rebuilt"] = len(scope[1])
    else:
        assert isinstance(table, Snapshot)
        keys = (
            None
            if whole or table.by_key is None
            else _touched(ctx, table, inputs, recorded=recorded, current=current, engine=engine)
        )
        data, read = _build_snapshot(table, inputs, keys, engine, target)
        if keys is not None and not same_columns(target, data):  # its columns changed
            engine.discard(data)
            keys = None
            data, read = _build_snapshot(table, inputs, keys, engine, target)
        if keys is not None:
            assert table.by_key is not None
            scope = (table.by_key.key, keys)
            metrics["keys_rebuilt"] = len(keys)
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": table.name, "inputs": metrics["inputs"]}
    if whole or not same_columns(target, data):  # a new table, or new columns: replace it
        inserted = rows_in(data)
        version = engine.overwrite(
            target,
            data,
            transactions=transactions,
            metadata=meta,
            configuration=CDF,
            key=table.lookup_key,
        )
        written = Written(version, inserted=inserted)
    else:  # commits ``data`` or discards it
        written = write_changes(
            target,
            data,
            table.grain,
            scope=scope,
            transactions=transactions,
            metadata=meta,
            engine=engine,
            key=table.lookup_key,
        )
        metrics |= written.metrics
    metrics["unknown_members"] = unknown_members(table, target, engine)
    changed = written.inserted + written.updated + written.deleted
    return TaskResult(read, changed, metrics=metrics, delta_version=written.version)


def _days_held(
    table: DateDimension, inputs: dict[TableRef, DeltaHandle], target: DeltaHandle, engine: Engine
) -> bool:
    """Whether ``target`` holds every day of the span its inputs need and no other (and the
    unknown member): a change that moves no fact date into another year rebuilds nothing,
    where generating the days and their holidays cost more than the diff would find. The
    same span is the same rows (a full refresh generates them again)."""
    start, end = table.span({ref: _lazy(h, ref, table) for ref, h in inputs.items()}, engine)
    held = engine.query(
        "SELECT min(date) AS lo, max(date) AS hi, count(DISTINCT date) AS days, "
        "count(*) AS n, sum(CASE WHEN date_key = 0 THEN 1 ELSE 0 END) AS unknown FROM d",
        {"d": target.relation()},
    ).to_pylist()[0]
    days = (end - start).days + 1
    found = (held["lo"], held["hi"], held["days"], held["n"], held["unknown"])
    return found == (start, end, days, days + 1, 1)


def _touched(
    ctx: RunContext,
    table: Snapshot,
    inputs: dict[TableRef, DeltaHandle],
    *,
    recorded: dict[TableRef, int | None],
    current: dict[TableRef, int],
    engine: Engine,
) -> pa.Array | None:
    assert table.by_key is not None
    views = {ref.name: _lazy(h, ref, table) for ref, h in inputs.items()}
    return touched_keys(
        table.by_key, inputs, recorded, current, views=views, engine=engine, run=ctx.run_id
    )


def _build_snapshot(
    table: Snapshot,
    inputs: dict[TableRef, DeltaHandle],
    keys: pa.Array | None,
    engine: Engine,
    target: DeltaHandle,
) -> tuple[Relation, int]:
    """The table's rows (only those of ``keys`` when given), kept near ``target``, and the
    rows of the inputs reduced to those keys (every input is a lazy scan the build reads
    only the columns of it needs; a reduced one is kept by the engine until the build is
    done)."""
    by = table.by_key
    frames = {ref: _lazy(handle, ref, table) for ref, handle in inputs.items()}
    with ExitStack() as scratch:
        if keys is not None and by is not None:
            wanted = pa.table({"v": keys})
            for ref in by.filtered:
                reduced = engine.keep(
                    f"SELECT {_content(frames[ref])} FROM t "
                    f"WHERE {quote(by.key)} IN (SELECT v FROM k)",
                    {"t": frames[ref], "k": wanted},
                )
                scratch.callback(engine.discard, reduced)
                frames[ref] = reduced
        read = sum(rows_in(frames[ref]) for ref in (by.filtered if keys is not None and by else ()))
        return table.build(frames, engine, target), read


def _content(relation: Relation) -> str:
    """The columns builds read: every one but the lineage (``_run_id``...), which Sail also
    cannot read where delta-rs wrote a non-NULL text column as string views."""
    return quoted_list([n for n in relation.schema.names if not n.startswith("_")])


def _or_missing(version: int | None) -> int:
    return MISSING if version is None else version


def _dimension_sources(table: Dimension) -> list[str]:
    """The Silver tables whose Bronze history a dimension is folded from."""
    lookup = table.fold.contract.lookup
    return [table.fold.silver, *([lookup.table] if lookup else [])]


def unknown_members(table: GoldTable, target: DeltaHandle, engine: Engine) -> dict[str, int]:
    """Rows pointing at an unknown member (surrogate or date key 0), per declared key column,
    over the whole table: one small answer (a scan of only those columns)."""
    keys = [*table.dimension_keys, *table.date_keys]
    data = target.relation()
    if not keys or data is None:
        return {}
    counts = ", ".join(
        f"sum(CASE WHEN {quote(c)} = 0 THEN 1 ELSE 0 END) AS {quote(c)}" for c in keys
    )
    row = engine.query(f"SELECT {counts} FROM t", {"t": data}).to_pylist()[0]
    return {c: int(row[c] or 0) for c in keys}


def _lazy(handle: DeltaHandle, ref: TableRef, table: GoldTable) -> Relation:
    """The input as a lazy scan (a query reads only the columns it needs); a Silver table
    never written reads as its empty shape: its source is empty, or an optional input
    (streamed reviews) has not been written yet."""
    data = handle.relation()
    if data is not None:
        return data
    if ref.layer != "silver":
        raise_missing(ref, table)
    shape = next((o.shaped_like for o in table.optional_inputs if o.ref == ref), ref)
    return default_engine().query(empty_silver_sql(silver_table(shape.name)))


def _build_scd2(
    ctx: RunContext,
    table: Dimension,
    lake: Lake,
    *,
    target: DeltaHandle,
    inputs: dict[TableRef, DeltaHandle],
    engine: Engine,
    whole: bool,
) -> tuple[Relation, int, dict[TableRef, int], tuple[str, pa.Array] | None]:
    """Fold the entities whose Bronze history grew since the last build from ALL their valid
    Bronze states, up to the Bronze version Silver has merged (so Silver's current state and
    Gold's history always come from the same rows). Returns the rows to write (kept near the
    target), the rows read, the Bronze versions folded through (recorded with the commit) and
    the scope the rows replace: (natural key, the entities folded again), or None for the
    whole dimension (a rebuild, or ``whole``: every row changes, as when the locations moved).
    Bronze is read where the engine runs; only the touched entities come here."""
    dim = table.fold
    lookup = dim.contract.lookup
    sources = _dimension_sources(table)
    # the Silver snapshots this build recorded as its inputs say how far Bronze was merged
    through = {n: inputs[silver_ref(n)].app_version(app_id("silver", n)) for n in sources}
    folded = {n: target.app_version(txn_id(table.name, TableRef("bronze", n))) for n in sources}
    rebuild = ctx.full_refresh or not target.exists or any(v is None for v in folded.values())
    bronze = {n: lake.table("bronze", silver_table(n).bronze) for n in sources}
    with ExitStack() as scratch:
        kept = partial(_scratch, scratch, engine)
        rows = _bronze_rows(bronze[dim.silver], dim.silver, through[dim.silver])
        lookup_history = None
        if lookup is not None:
            lookup_rows = _bronze_rows(bronze[lookup.table], lookup.table, through[lookup.table])
            lookup_history = kept(valid_history(silver_table(lookup.table), lookup_rows, engine))
        # brought up to date by every build, a rebuild too: the next build only extends them
        own, meta = dim.silver, {"run_id": ctx.run_id, "step": LAYER, "table": table.name}
        linked = current_links(
            dim,
            lake,
            bronze[own],
            rows,
            through=through[own],
            engine=engine,
            metadata=meta,
            anew=ctx.full_refresh,
        )
        stored, touched, scope = None, None, None
        if not rebuild:
            rows, touched = _touched_rows(
                dim, bronze, rows, linked, folded=folded, through=through, kept=kept, engine=engine
            )
            entities = touched["e"].combine_chunks()
            if whole or pc.any(pc.equal(entities.cast(pa.string()), UNKNOWN_KEY)).as_py():
                stored = target.relation()  # every row, or the unknown member's natural key
            else:
                scope = (dim.spec.natural_key[0], entities)
        # a rebuild's steps are each as large as the table (held here when the engine runs
        # in this process): each one's input goes once it is made
        history = kept(valid_history(dim.contract, rows, engine))
        read = rows_in(history)
        events = kept(dimension_events(dim, history, lookup_history, engine))
        del history
        folded = fold_scd2(dim.spec, None, events, engine)
        del events
        location = inputs[TableRef(LAYER, "dim_location")].relation() if dim.location_zip else None
        data = with_derived(
            dim, stored, folded, touched, location=location, engine=engine, near=target
        )
    versions = {TableRef("bronze", n): MISSING if v is None else v for n, v in through.items()}
    return data, read, versions, scope


def _touched_rows(
    dim: SCD2Dimension,
    bronze: dict[str, DeltaHandle],
    rows: Relation,
    linked: Relation,
    *,
    folded: dict[str, int | None],
    through: dict[str, int | None],
    kept: Callable[[Relation], Relation],
    engine: Engine,
) -> tuple[Relation, pa.Table]:
    """The Bronze ``rows`` of the entities whose history grew since the versions ``folded``
    (kept), and those entities (a small answer), found by the keys' ``linked`` entities."""
    lookup = dim.contract.lookup
    new = {n: kept(_valid_new(h, n, folded[n], through[n], engine)) for n, h in bronze.items()}
    lookup_new = new[lookup.table] if lookup else None
    touched = touched_entities(dim, linked, new[dim.silver], lookup_new, engine)
    return kept(rows_of(dim, rows, linked, touched, engine)), touched


def _scratch(stack: ExitStack, engine: Engine, relation: Relation) -> Relation:
    """``relation``, an intermediate result the engine kept, deleted when ``stack`` closes
    (files an engine elsewhere wrote; rows in this process go when the last name for them
    does, so the stack holds none)."""
    if not engine.in_process:
        stack.callback(engine.discard, relation)
    return relation


def _bronze_rows(bronze: DeltaHandle, name: str, through: int | None) -> Relation:
    """The Bronze rows of Silver table ``name`` as of version ``through`` (None: none), as a
    lazy scan the engine reads where it runs."""
    rows = bronze.relation(version=through) if through is not None else None
    return rows if rows is not None else empty_bronze(silver_table(name).bronze)


def _valid_new(
    bronze: DeltaHandle, name: str, after: int | None, through: int | None, engine: Engine
) -> Relation:
    """The valid Bronze states of ``name`` appended after version ``after`` up to ``through``:
    the files those commits added, which the engine reads where it runs (the change data feed,
    read here, when the log says more than appends)."""
    spec = silver_table(name)
    rows: Relation | None = None
    if through is not None and (after is None or after < through):
        since = None if after == MISSING else after
        rows = bronze.appended(since, until=through)
        if rows is None:
            rows, _ = bronze.changes(since, until=through)
    if rows is None:
        rows = empty_bronze(spec.bronze)
    return valid_history(spec, rows, engine)
