"""Bronze: append-only raw history per source table, incremental from a watermark.

Per run and table (unless the source database reports no write since the table's last
successful extraction, :func:`~medallion.source.db.change_token`, recorded in that task's audit
row, and Bronze is still at the version it left: then that extraction's result stands, what
the checks need of the source rows included, and none of this is done):
1. read the watermark from the Bronze Delta log (app transaction ``medallion.bronze.<table>``,
   the maximum ``updated_at`` ever written, in microseconds);
2. list candidate rows (key, ``updated_at``) with ``updated_at > watermark - lag`` and drop
   those Bronze already holds, so the look-back never doubles a row;
3. find hard deletes: keys live in Bronze but gone from the source; nothing to compare when
   the source keys are those the last commit was reconciled with, and on large tables keys
   read only in the key-hash buckets whose summaries differ (:mod:`medallion.bronze.deletes`);
4. stream the new rows in bounded batches plus tombstones into ONE Delta commit that also
   records the new watermark. No new rows means no commit.
A table's first extraction (no watermark, no row) does 2-4 in one read of the source
(:func:`_first_load`).
A crash anywhere leaves either the whole commit (watermark included) or nothing.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.audit import AuditStore, table_lease
from medallion.bronze.deletes import (
    OP_DELETE,
    OP_UPSERT,
    SOURCE_KEYS,
    Listing,
    Reconciled,
    hard_deletes,
    shipped_with,
)
from medallion.catalog import DELETED_AT, UPDATED_AT, SourceTable, bronze_schema
from medallion.checks.declared import SOURCE_TOTALS, SOURCE_VERSION
from medallion.checks.state import encode_totals
from medallion.faults import crash_point
from medallion.runner import Layer, RunContext, Task, TaskResult, per_table
from medallion.source.db import SourceDatabase, change_token, open_source
from medallion.source.drift import check_drift
from medallion.storage import CDF, DeltaHandle, Lake
from medallion.storage import app_id as layer_app_id

log = logging.getLogger(__name__)

LAYER = "bronze"
PARTITION = ["_ingest_date"]
SOURCE_TOKEN = "source_token"  # task metrics: the source's change token, read before its rows
_EPOCH = datetime(1970, 1, 1)


def app_id(table: SourceTable) -> str:
    return layer_app_id(LAYER, table.name)


def to_micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class Window:
    """What one run extracts: rows after ``low`` (None = everything) up to ``high``."""

    low: datetime | None
    high: datetime


def make_task(table: SourceTable) -> Task:
    return Task(f"{LAYER}.{table.name}", LAYER, table.name, lambda ctx: extract_table(ctx, table))


LAYER_TASKS = Layer(LAYER, per_table(make_task))


def extract_table(ctx: RunContext, table: SourceTable) -> TaskResult:
    """Extract one table's changes into Bronze; the runner's task function."""
    lake = Lake.from_settings(ctx.settings)
    with table_lease(ctx.settings, lake.table_uri(LAYER, table.name), ctx.run_id) as audit:
        bronze = lake.table(LAYER, table.name)
        token = _change_token(ctx)
        standing = _unchanged(ctx, table, bronze, audit, token)
        if standing is not None:  # not even connected: the driver imports pandas (0.2 s)
            return standing
        with open_source(ctx.settings.source_location) as db:
            result = _extract(ctx, table, db, bronze)
        if token is None:
            return result
        return replace(result, metrics=result.metrics | {SOURCE_TOKEN: token})


def _change_token(ctx: RunContext) -> str | None:
    """The source's change token (None: none, or not to be trusted in this run), read
    before the source is opened."""
    if ctx.full_refresh or not ctx.settings.skip_unchanged_source:
        return None
    return change_token(ctx.settings.source_location)


def _unchanged(
    ctx: RunContext,
    table: SourceTable,
    bronze: DeltaHandle,
    audit: AuditStore,
    token: str | None,
) -> TaskResult | None:
    """The last successful extraction's result, when no write reached the source since it
    read its change token and Bronze is at the version it left (None otherwise): every step
    would read what it read and find what it found. What the checks need of the source rows
    is carried over from it."""
    if token is None:
        return None
    last = audit.last_success(f"{LAYER}.{table.name}")
    if last is None or last["metrics"].get(SOURCE_TOKEN) != token:
        return None
    if last["delta_version"] != bronze.version:
        return None
    carried = {k: v for k, v in last["metrics"].items() if k in _CARRIED}
    if ctx.settings.detect_hard_deletes and SOURCE_TOTALS not in carried:
        return None  # that run did not reconcile the keys
    watermark = _iso(bronze.app_version(app_id(table)))
    return TaskResult(
        metrics={"candidates": 0, "source_unchanged": True, **carried},
        delta_version=bronze.version,
        watermark_before=watermark,
        watermark_after=watermark,
    )


_CARRIED = (SOURCE_TOTALS, SOURCE_VERSION, SOURCE_TOKEN)


def _extract(
    ctx: RunContext, table: SourceTable, db: SourceDatabase, bronze: DeltaHandle
) -> TaskResult:
    db.require_tables([table])
    db.batch_rows = ctx.settings.extract_batch_rows
    drift = check_drift(table, db.table_columns(table), db.dialect)
    if drift.new_columns:
        log.warning(
            "%s: new source column(s) %s evolve into Bronze as text",
            table.name,
            ", ".join(drift.new_columns),
        )
    previous = bronze.app_version(app_id(table))
    if previous is None and (not bronze.exists or bronze.row_count() == 0):
        return _first_load(ctx, table, db, bronze, drift.new_columns)
    lag = timedelta(seconds=ctx.settings.extract_lag_s)
    low = None if previous is None or ctx.full_refresh else from_micros(previous) - lag
    # without a window every source row is a candidate: with what the checks' totals read
    extra = (
        shipped_with(table, ctx.settings)
        if low is None and ctx.settings.detect_hard_deletes
        else ()
    )
    candidates = db.changed_keys(table, low, extra)
    held = _bronze_keys(bronze, table, low)
    new_keys = _anti_join(candidates, held, [*table.row_key, UPDATED_AT])
    reconciled = (
        hard_deletes(db, bronze, table, ctx, low=low, candidates=candidates)
        if ctx.settings.detect_hard_deletes
        else Reconciled()
    )
    tombstones = reconciled.tombstones
    n_new, n_dead = new_keys.num_rows, (tombstones.num_rows if tombstones is not None else 0)
    metrics: dict[str, Any] = {
        "candidates": candidates.num_rows,
        "new_columns": list(drift.new_columns),
        **reconciled.metrics,
        **_source_seen(reconciled),
    }
    result = TaskResult(
        rows_read=candidates.num_rows,
        metrics=metrics,
        delta_version=bronze.version,
        watermark_before=_iso(previous),
        watermark_after=_iso(previous),
    )
    if n_new == 0 and n_dead == 0:
        return result
    high = pc.max(new_keys[UPDATED_AT]).as_py() if n_new else from_micros(previous or 0)
    watermark = max(to_micros(high), previous or 0)
    # columns evolved into Bronze earlier stay, NULL once the source dropped them again
    schema = bronze_schema(table, _evolved(bronze, table, drift.new_columns))
    counter = _Counter()
    batches = _rows_to_write(
        db,
        table=table,
        ctx=ctx,
        window=Window(low, high),
        held=held,
        schema=schema,
        extra=drift.new_columns,
        counter=counter,
    )
    tail = _as_bronze(tombstones, schema, ctx) if tombstones is not None and n_dead else None
    reader = pa.RecordBatchReader.from_batches(schema, _chain(_crashing_after_first(batches), tail))
    version = _commit(
        ctx,
        table,
        bronze,
        reader,
        previous=previous,
        watermark=watermark,
        listed=n_new + n_dead,
        reconciled=reconciled,
        evolve=bool(drift.new_columns),
    )
    metrics |= counter.metrics(hard_deletes=n_dead)
    return replace(
        result,
        rows_written=counter.upserts + counter.deletes + n_dead,
        delta_version=version,
        watermark_after=_iso(watermark),
    )


def _first_load(
    ctx: RunContext,
    table: SourceTable,
    db: SourceDatabase,
    bronze: DeltaHandle,
    new_columns: tuple[str, ...],
) -> TaskResult:
    """A table's first extraction (no watermark, no Bronze row) reads the source once: the
    rows stream to a local Arrow file, summarised on the way (the newest update, the key
    fingerprint and the checks' totals a first reconciliation records), and are committed
    from it. A later run lists the keys of its window first, a small read; here that list
    would be the whole table, read again for the rows."""
    schema = bronze_schema(table, _evolved(bronze, table, new_columns))
    listing = Listing(table, ctx.settings) if ctx.settings.detect_hard_deletes else None
    counter = _Counter()
    with tempfile.TemporaryDirectory(prefix=f"medallion-{table.name}-") as folder:
        spilled = Path(folder) / "rows.arrow"
        names = [*(c.name for c in table.all_columns), *new_columns]
        newest = _spill(
            db.rows_with_updates(table, names),
            spilled,
            schema=schema,
            ctx=ctx,
            listing=listing,
            counter=counter,
        )
        reconciled = listing.reconciled(db) if listing is not None else Reconciled()
        listed = counter.upserts + counter.deletes
        result = TaskResult(
            rows_read=listed,
            metrics={
                "candidates": listed,
                "new_columns": list(new_columns),
                **_source_seen(reconciled),
            },
            delta_version=bronze.version,
        )
        if newest is None:
            return result
        watermark = to_micros(newest)
        with pa.memory_map(str(spilled)) as source:
            batches = _oldest_first(pa.ipc.open_file(source).read_all())
            reader = pa.RecordBatchReader.from_batches(schema, _crashing_after_first(batches))
            version = _commit(
                ctx,
                table,
                bronze,
                reader,
                previous=None,
                watermark=watermark,
                listed=listed,
                reconciled=reconciled,
                evolve=bool(new_columns),
            )
    return replace(
        result,
        rows_written=listed,
        metrics=result.metrics | counter.metrics(hard_deletes=0),
        delta_version=version,
        watermark_after=_iso(watermark),
    )


def _spill(
    batches: Iterator[pa.RecordBatch],
    path: Path,
    *,
    schema: pa.Schema,
    ctx: RunContext,
    listing: Listing | None,
    counter: _Counter,
) -> datetime | None:
    """Write the source rows of ``batches`` as Bronze rows to an Arrow file at ``path``,
    each batch added to ``listing`` and counted; the newest ``updated_at`` (None: no row)."""
    newest = None
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as spill:
        for batch in batches:
            rows = pa.Table.from_batches([batch])
            if listing is not None:
                listing.add(rows)
            latest = pc.max(rows[UPDATED_AT]).as_py()
            newest = latest if newest is None else max(newest, latest)
            spill.write_table(_counted(_as_bronze(rows, schema, ctx), counter))
    return newest


def _oldest_first(rows: pa.Table, batch_rows: int = 1 << 16) -> Iterator[pa.RecordBatch]:
    """The batches of ``rows`` (a memory-mapped file's) ordered by ``_source_updated_at``,
    as every Bronze commit is, so that a window's read skips files by their statistics:
    as they are when they already are in that order, else taken in it a batch at a time."""
    updated = rows["_source_updated_at"]
    if rows.num_rows < 2 or pc.all(pc.less_equal(updated[:-1], updated[1:])).as_py():
        yield from rows.to_batches(batch_rows)
        return
    order = pc.sort_indices(updated)
    for start in range(0, rows.num_rows, batch_rows):
        yield from rows.take(order[start : start + batch_rows]).to_batches()


def _counted(stamped: pa.Table, counter: _Counter) -> pa.Table:
    """``stamped`` Bronze rows, counted as upserts and soft deletes."""
    deletes = pc.sum(pc.equal(stamped["_op"], OP_DELETE)).as_py() or 0
    counter.deletes += deletes
    counter.upserts += stamped.num_rows - deletes
    return stamped


def _crashing_after_first(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``; a test may crash the run after the first reached Delta."""
    for i, batch in enumerate(batches):
        yield batch
        if i == 0:
            crash_point("bronze.during_write")


def _commit(
    ctx: RunContext,
    table: SourceTable,
    bronze: DeltaHandle,
    reader: pa.RecordBatchReader,
    *,
    previous: int | None,
    watermark: int,
    listed: int,
    reconciled: Reconciled,
    evolve: bool,
) -> int:
    """Append ``reader`` in ONE commit that moves the watermark from ``previous`` (refused
    if another run moved it first) and records the source keys reconciled."""
    version = bronze.append(
        reader,
        partition_by=PARTITION,
        transactions={app_id(table): watermark},
        expected={app_id(table): previous},
        metadata={
            "run_id": ctx.run_id,
            "step": LAYER,
            "table": table.name,
            "watermark_from": _iso(previous),
            "watermark_to": _iso(watermark),
            "rows": listed,  # as listed: the commit's own metrics count the rows written
            **({SOURCE_KEYS: reconciled.source_keys.text} if reconciled.source_keys else {}),
        },
        evolve_schema=evolve,
        configuration=CDF,
        key=table.row_key,
    )
    crash_point("bronze.after_commit")
    return version


def _evolved(
    bronze: DeltaHandle, table: SourceTable, new_columns: tuple[str, ...]
) -> tuple[str, ...]:
    """The extra (undeclared) columns of the Bronze table, then the source's new ones."""
    current = bronze.schema
    declared = set(bronze_schema(table).names)
    held = [n for n in (current.names if current is not None else []) if n not in declared]
    return tuple(dict.fromkeys([*held, *new_columns]))


@dataclass
class _Counter:
    upserts: int = 0
    deletes: int = 0

    def metrics(self, *, hard_deletes: int) -> dict[str, int]:
        """The task metrics of what a commit wrote."""
        return {"upserts": self.upserts, "soft_deletes": self.deletes, "hard_deletes": hard_deletes}


def _chain(batches: Iterator[pa.RecordBatch], tail: pa.Table | None) -> Iterator[pa.RecordBatch]:
    yield from batches
    if tail is not None:
        yield from tail.to_batches()


def _iso(micros: int | None) -> str | None:
    return None if micros is None else from_micros(micros).isoformat()


def _bronze_keys(bronze: DeltaHandle, table: SourceTable, low: datetime | None) -> pa.Table | None:
    """(key, updated_at) of the Bronze rows inside the look-back window (all of them if low
    is None)."""
    filters = [("_source_updated_at", ">", low)] if low is not None else None
    held = bronze.read([*table.row_key, "_source_updated_at"], filters)
    if held is None:
        return None
    return held.rename_columns([*table.row_key, UPDATED_AT])


def _source_seen(reconciled: Reconciled) -> dict[str, Any]:
    """Task metrics: what the checks need of the source rows read (nothing when unread)."""
    seen = reconciled.source_seen
    if seen is None:
        return {}
    return {SOURCE_TOTALS: encode_totals(seen.totals), SOURCE_VERSION: seen.version}


def _anti_join(left: pa.Table, right: pa.Table | None, keys: list[str]) -> pa.Table:
    if right is None or right.num_rows == 0 or left.num_rows == 0:
        return left
    return left.join(
        right.select(keys).group_by(keys).aggregate([]), keys=keys, join_type="left anti"
    )


def _rows_to_write(
    db: SourceDatabase,
    *,
    table: SourceTable,
    ctx: RunContext,
    window: Window,
    held: pa.Table | None,
    schema: pa.Schema,
    extra: tuple[str, ...],
    counter: _Counter,
) -> Iterator[pa.RecordBatch]:
    """Stream the new rows of the window, typed and stamped, in bounded batches."""
    names = [c.name for c in table.all_columns]
    batches = db.rows_updated_between(table, [*names, *extra], window.low, window.high)
    for batch in batches:
        fresh = _anti_join(pa.Table.from_batches([batch]), held, [*table.row_key, UPDATED_AT])
        if fresh.num_rows == 0:
            continue
        yield from _counted(_as_bronze(fresh, schema, ctx), counter).to_batches()


def _as_bronze(rows: pa.Table, schema: pa.Schema, ctx: RunContext) -> pa.Table:
    """Add lineage columns; ``_op`` is 'delete' for soft-deleted rows and tombstones."""
    n = rows.num_rows
    if "_op" in rows.column_names:
        op = rows["_op"]
        source_ts = rows["_source_updated_at"]
        rows = rows.drop_columns(["_op", "_source_updated_at"])
    else:
        op = pc.if_else(pc.is_valid(rows[DELETED_AT]), OP_DELETE, OP_UPSERT)
        source_ts = rows[UPDATED_AT]
    ingested = ctx.started_at.replace(tzinfo=None)
    columns: dict[str, Any] = {name: rows[name] for name in rows.column_names}
    columns |= {
        "_run_id": pa.array([ctx.run_id] * n, pa.string()) if n < 2 else pa.repeat(ctx.run_id, n),
        "_ingested_at": pa.repeat(pa.scalar(ingested, pa.timestamp("us")), n),
        "_source_updated_at": source_ts,
        "_op": op,
        "_ingest_date": pa.repeat(pa.scalar(ingested.date(), pa.date32()), n),
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(
        [_as_type(a, f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema
    )


def _as_type(values: Any, type_: pa.DataType) -> Any:
    return values if values.type == type_ else pc.cast(values, type_)
