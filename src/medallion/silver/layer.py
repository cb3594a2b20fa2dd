"""Silver tasks: read the Bronze rows appended since the last merge, validate, quarantine,
MERGE. The Bronze version merged through is recorded in the Silver commit (app transaction
``medallion.silver.<table>``), so a re-run reads nothing new and writes nothing.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medallion.audit import table_lease
from medallion.catalog import empty_bronze, source_table
from medallion.engine import Engine, default_engine, engine_for
from medallion.errors import MedallionError, ReconciliationError
from medallion.faults import crash_point
from medallion.runner import Layer, RunContext, Task, TaskResult, per_table
from medallion.silver.contracts import Kind, SilverTable, silver_table, silver_tables
from medallion.silver.partitions import groups, head, split_columns
from medallion.silver.transform import (
    CONTENT_HASH,
    TOMBSTONE,
    Validated,
    aggregate_geolocation,
    empty_silver_sql,
    geolocation_points,
    geolocation_rejects,
    refresh_sql,
    retry_sql,
    silver_columns,
    validate,
    waiting_rules,
)
from medallion.storage import CDF, DeltaHandle, Lake, MergePlan, MergeResult, app_id

log = logging.getLogger(__name__)

LAYER = "silver"
QUARANTINE = "quarantine"


def make_task(table_name: str) -> Task | None:
    try:
        spec = silver_table(source_table(table_name).name)
    except MedallionError:
        return None
    upstream = (f"bronze.{spec.bronze}", *(f"silver.{u}" for u in spec.upstream))
    return Task(
        f"{LAYER}.{spec.name}", LAYER, spec.name, lambda ctx: build_table(ctx, spec), upstream
    )


LAYER_TASKS = Layer(LAYER, per_table(lambda table: make_task(table.name)))


@dataclass(frozen=True)
class _Tables:
    """The Delta tables one Silver task works on, each opened once for the whole task."""

    target: DeltaHandle
    bronze: DeltaHandle
    quarantine: DeltaHandle
    lookup: DeltaHandle | None

    @classmethod
    def open(cls, lake: Lake, spec: SilverTable) -> _Tables:
        lookup = lake.table(LAYER, spec.lookup.table) if spec.lookup else None
        return cls(
            lake.table(LAYER, spec.name),
            lake.table("bronze", spec.bronze),
            lake.table(QUARANTINE, spec.name),
            lookup,
        )


def build_table(ctx: RunContext, spec: SilverTable) -> TaskResult:
    """Bring one Silver table up to date with Bronze; the runner's task function."""
    lake = Lake.from_settings(ctx.settings)
    with table_lease(ctx.settings, lake.table_uri(LAYER, spec.name), ctx.run_id):
        tables = _Tables.open(lake, spec)
        if spec.kind is Kind.AGGREGATE:
            return _build_aggregate(ctx, spec, tables)
        return _build_upsert(ctx, spec, lake, tables)


def _merged_through(ctx: RunContext, target: DeltaHandle, spec: SilverTable) -> int | None:
    if ctx.full_refresh:
        return None
    return target.app_version(app_id(LAYER, spec.name))


def _build_upsert(ctx: RunContext, spec: SilverTable, lake: Lake, t: _Tables) -> TaskResult:
    before = _merged_through(ctx, t.target, spec)
    reader, through = t.bronze.change_reader(before)
    limit = ctx.settings.silver_batch_rows if split_columns(spec) else sys.maxsize
    bronze, rest = head(reader, limit) if reader is not None else (None, None)
    engine = engine_for(ctx.settings)
    lookup = _live_lookup(t, spec)
    relabel = not ctx.full_refresh and t.target.exists and _lookup_moved(spec, t)
    retry = None if ctx.full_refresh else _retry_candidates(spec, t, engine)
    fresh = bronze is not None and bronze.num_rows > 0
    if through is None or not (fresh or relabel or retry is not None):
        return _unchanged(t.target, before)
    metrics: dict[str, Any] = {"bronze_version_before": before, "bronze_version_after": through}
    result = TaskResult(metrics=metrics)
    if fresh or retry is not None:
        rows = bronze if bronze is not None else empty_bronze(spec.bronze)
        if rest is None:
            batch = _merge_batch(
                ctx, spec, lake, t, [(rows, retry)], through=through, lookup=lookup, stage=None
            )
        else:  # larger than one batch: validated group by group, staged on local disk
            metrics["batches_split"] = True
            with tempfile.TemporaryDirectory(prefix=f"medallion-{spec.name}-") as folder:
                parts = groups(
                    spec,
                    rows,
                    rest,
                    retry,
                    expected_rows=t.bronze.row_count() or ctx.settings.silver_batch_rows,
                    limit=ctx.settings.silver_batch_rows,
                    folder=Path(folder) / "bronze",
                )
                stage = Path(folder) / "merge"
                batch = _merge_batch(
                    ctx, spec, lake, t, parts, through=through, lookup=lookup, stage=stage
                )
        result = batch or result
    if relabel:  # after the batch: every row, deleted ones too, takes the labels in force now
        metrics["lookup_refreshed"] = _relabel(ctx, spec, t, lookup, engine)
    result.metrics = metrics | result.metrics
    result.delta_version = t.target.version
    return result


@dataclass
class _Merged:
    """What the groups of one batch gave: rows to write (tables, or files staged on disk),
    rows to quarantine, and the counts the reconciliation and the metrics need."""

    rows: list[pa.Table | Path] = field(default_factory=list)
    quarantine: list[pa.Table] = field(default_factory=list)
    schema: pa.Schema | None = None
    fresh: int = 0
    sourced: int = 0  # rows to merge, tombstones included
    written: int = 0  # rows to write (a new table's without its tombstones)
    retried: int = 0
    superseded: int = 0
    still_held: int = 0
    warnings: dict[str, int] = field(default_factory=dict)

    def add(self, batch: Validated, bronze: pa.Table, retry: pa.Table | None) -> None:
        retried = retry.num_rows if retry is not None else 0
        self.quarantine.append(batch.quarantine)
        self.fresh += bronze.num_rows
        self.retried += retried
        self.superseded += batch.superseded
        self.still_held += batch.still_held
        for rule, n in batch.warnings.items():
            self.warnings[rule] = self.warnings.get(rule, 0) + n

    @property
    def read(self) -> int:
        """Rows read: the Bronze rows and the retried quarantined ones."""
        return self.fresh + self.retried

    def source(self) -> pa.Table | pa.RecordBatchReader:
        """The rows to write: the one table, or a stream over the groups."""
        assert self.schema is not None
        if len(self.rows) == 1 and isinstance(self.rows[0], pa.Table):
            return self.rows[0]

        def batches() -> Iterator[pa.RecordBatch]:
            for part in self.rows:
                yield from (
                    part if isinstance(part, pa.Table) else pq.read_table(part)
                ).to_batches()

        return pa.RecordBatchReader.from_batches(self.schema, batches())


def _validated(
    ctx: RunContext,
    spec: SilverTable,
    lake: Lake,
    t: _Tables,
    parts: Iterable[tuple[pa.Table, pa.Table | None]],
    *,
    lookup: pa.Table | None,
    stage: Path | None,
) -> _Merged:
    """Each group validated, its rows to write kept (or staged in ``stage``), counts added."""
    engine = engine_for(ctx.settings)
    refs = {r.table: _read_keys(lake, r.table, r.key) for r in spec.references}
    existing = _existing_content(t.target, spec)
    merged = _Merged()
    for number, (bronze, retry) in enumerate(parts):
        batch = validate(spec, bronze, refs, lookup, engine=engine, existing=existing, retry=retry)
        merged.add(batch, bronze, retry)
        source = _stamp(batch.merge, ctx)
        merged.sourced += source.num_rows
        if ctx.full_refresh or not t.target.exists:  # a new table: no row for a tombstone
            source = source.filter(pc.invert(source[TOMBSTONE])).drop_columns([TOMBSTONE])
        merged.written += source.num_rows
        merged.schema = source.schema
        if stage is None:
            merged.rows.append(source)
            continue
        stage.mkdir(parents=True, exist_ok=True)
        pq.write_table(source, stage / f"{number}.parquet")
        merged.rows.append(stage / f"{number}.parquet")
    return merged


def _merge_batch(
    ctx: RunContext,
    spec: SilverTable,
    lake: Lake,
    t: _Tables,
    parts: Iterable[tuple[pa.Table, pa.Table | None]],
    *,
    through: int,
    lookup: pa.Table | None,
    stage: Path | None,
) -> TaskResult | None:
    """Validate, quarantine and write one batch of Bronze rows (and retried quarantined rows)
    given in ``parts`` (groups of keys; their rows to write staged in ``stage`` when given):
    the quarantine first, then the table, each in one commit. None when only retried rows came
    and all still wait for their parents."""
    merged = _validated(ctx, spec, lake, t, parts, lookup=lookup, stage=stage)
    if merged.schema is None or (merged.fresh == 0 and merged.sourced == 0):
        return None
    rejected = pa.concat_tables(merged.quarantine)
    quarantined = _quarantine(ctx, t.quarantine, spec.name, rejected, through)
    transactions = {app_id(LAYER, spec.name): through}
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": spec.name, "bronze_version": through}
    if ctx.full_refresh or not t.target.exists:
        transactions |= _lookup_txn(spec, t)  # labelled from the lookup as it is now
        version = t.target.overwrite(
            merged.source(), transactions=transactions, metadata=meta, configuration=CDF
        )
        result = MergeResult(version, merged.sourced, merged.written, 0, 0, 0, 0)
    else:
        result = t.target.merge(
            merged.source(), _merge_plan(spec), transactions=transactions, metadata=meta
        )
    crash_point("silver.after_commit")
    changed = result.inserted + result.updated
    accounted = result.source_rows + merged.still_held
    _reconcile(spec.name, merged.read, accounted, quarantined, merged.superseded)
    metrics: dict[str, Any] = {
        "superseded": merged.superseded,
        "warnings": merged.warnings,
        "merge_source_rows": result.source_rows,
        "retried_from_quarantine": merged.retried,
        "released_from_quarantine": merged.retried - merged.still_held,
        "stale_or_unchanged": result.source_rows - changed,
        "quarantined": quarantined,
        "files_rewritten": result.files_removed,
    }
    return TaskResult(merged.fresh, changed, quarantined, metrics)


def _relabel(
    ctx: RunContext, spec: SilverTable, t: _Tables, lookup: pa.Table | None, engine: Engine
) -> int:
    """Set the looked-up columns of every row whose labels changed since the lookup table last
    moved, in a commit that records the lookup's version; rows keep their own updated_at."""
    assert t.lookup is not None and lookup is not None
    version = t.lookup.data_version
    assert version is not None
    current = t.target.read()
    assert current is not None
    changed = _stamp(engine.query(refresh_sql(spec), {"s": current, "lookup": lookup}), ctx)
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": spec.name, "lookup_version": version}
    t.target.merge(
        changed, _relabel_plan(spec), transactions={lookup_id(spec): version}, metadata=meta
    )
    return int(changed.num_rows)


def _retry_candidates(spec: SilverTable, t: _Tables, engine: Engine) -> pa.Table | None:
    """Quarantined rows held back only by a missing parent; None when there are none."""
    if not spec.references:
        return None
    held = t.quarantine.read()
    current = t.target.read(list(spec.key))
    if held is None or held.num_rows == 0 or current is None:
        return None
    rows = engine.query(
        retry_sql(spec, held.column_names),
        {"quarantine": held, "silver": current},
        {"waiting": waiting_rules(spec)},
    )
    return rows if rows.num_rows else None


def _live_lookup(t: _Tables, spec: SilverTable) -> pa.Table | None:
    """The lookup table's live rows (a deleted translation no longer translates)."""
    if spec.lookup is None or t.lookup is None:
        return None
    rows = t.lookup.read()
    if rows is None:
        rows = default_engine().query(empty_silver_sql(silver_table(spec.lookup.table)))
    return rows.filter(pc.invert(pc.fill_null(rows["is_deleted"], False)))


def _lookup_txn(spec: SilverTable, t: _Tables) -> dict[str, int]:
    """The lookup table's version, recorded with each write so a later change is noticed."""
    version = t.lookup.data_version if t.lookup is not None else None
    return {} if version is None else {lookup_id(spec): version}


def lookup_id(spec: SilverTable) -> str:
    return f"{app_id(LAYER, spec.name)}:lookup"


def _lookup_moved(spec: SilverTable, t: _Tables) -> bool:
    """The lookup table moved since this table last took its labels from it."""
    version = t.lookup.data_version if t.lookup is not None else None
    return version is not None and t.target.app_version(lookup_id(spec)) != version


def _unchanged(target: DeltaHandle, before: int | None) -> TaskResult:
    return TaskResult(metrics={"bronze_version_before": before}, delta_version=target.version)


def _existing_content(target: DeltaHandle, spec: SilverTable) -> pa.Table | None:
    if not spec.unique_content:
        return None
    return target.read([*spec.key, CONTENT_HASH, "updated_at", "is_deleted"])


def _read_keys(lake: Lake, table: str, key: tuple[str, ...]) -> pa.Table:
    keys = lake.read(LAYER, table, list(key))
    if keys is None:
        return pa.table({k: pa.array([], pa.string()) for k in key})
    return keys


def _stamp(rows: pa.Table, ctx: RunContext) -> pa.Table:
    return rows.append_column("_run_id", pa.repeat(pa.scalar(ctx.run_id), rows.num_rows))


def _merge_plan(spec: SilverTable) -> MergePlan:
    """Newer rows win; on equal times a delete wins; a tombstone only flips the flags."""
    cols = silver_columns(spec)
    match = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
    newer = (
        "(s.updated_at > t.updated_at OR (s.updated_at = t.updated_at AND s.is_deleted "
        "AND NOT t.is_deleted))"
    )
    flags = {
        c: f"s.{c}" for c in ("updated_at", "is_deleted", "deleted_at", "_bronze_run_id", "_run_id")
    }
    everything = {c: f"s.{c}" for c in cols}
    return MergePlan(
        predicate=match,
        matched_updates=(
            (f"{newer} AND s.{TOMBSTONE}", flags),
            (f"{newer} AND NOT s.{TOMBSTONE}", everything),
        ),
        not_matched_inserts=((f"NOT s.{TOMBSTONE}", everything),),
    )


def _relabel_plan(spec: SilverTable) -> MergePlan:
    """Only the looked-up columns of matching rows change."""
    assert spec.lookup is not None
    looked_up = [c.name for c in spec.lookup.columns]
    differs = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in looked_up)
    return MergePlan(
        predicate=" AND ".join(f"t.{k} = s.{k}" for k in spec.key),
        matched_updates=((differs, {c: f"s.{c}" for c in [*looked_up, "_run_id"]}),),
    )


def _quarantine(
    ctx: RunContext, quarantine: DeltaHandle, table: str, rows: pa.Table, through: int
) -> int:
    """Append rejected rows once per Bronze version range (a re-run after a crash skips it)."""
    if rows.num_rows == 0:
        return 0
    qid = app_id(QUARANTINE, table)
    done = quarantine.app_version(qid)
    if done is not None and done >= through:
        return int(rows.num_rows)
    stamped = rows.append_column(
        "_quarantine_run_id", pa.repeat(pa.scalar(ctx.run_id), rows.num_rows)
    ).append_column(
        "_quarantined_at",
        pa.repeat(
            pa.scalar(ctx.started_at.replace(tzinfo=None), pa.timestamp("us")), rows.num_rows
        ),
    )
    quarantine.append(
        stamped,
        transactions={qid: through},
        expected={qid: done},
        metadata={"run_id": ctx.run_id, "step": QUARANTINE, "table": table, "rows": rows.num_rows},
        evolve_schema=True,
    )
    crash_point("silver.after_quarantine")
    return int(rows.num_rows)


def _reconcile(table: str, read: int, merged: int, quarantined: int, superseded: int) -> None:
    if read != merged + quarantined + superseded:
        raise ReconciliationError(
            f"silver.{table}: {read} rows read != {merged} merged + {quarantined} quarantined "
            f"+ {superseded} superseded"
        )


def _build_aggregate(ctx: RunContext, spec: SilverTable, t: _Tables) -> TaskResult:
    before = _merged_through(ctx, t.target, spec)
    new, through = t.bronze.changes(before)
    if new is None or through is None or new.num_rows == 0:
        return _unchanged(t.target, before)
    engine = engine_for(ctx.settings)
    history = t.bronze.read(version=through)
    assert history is not None
    points = geolocation_points(spec, history, engine)
    rejects = geolocation_rejects(spec, new, points, engine)
    quarantined = _quarantine(ctx, t.quarantine, spec.name, rejects, through)
    aggregate = _stamp(aggregate_geolocation(points, engine), ctx)
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": spec.name, "bronze_version": through}
    version = t.target.overwrite(
        aggregate,
        transactions={app_id(LAYER, spec.name): through},
        metadata=meta,
        configuration=CDF,
    )
    metrics = {
        "bronze_version_before": before,
        "bronze_version_after": through,
        "points": points.num_rows,
        "zip_prefixes": aggregate.num_rows,
        "quarantined": quarantined,
    }
    return TaskResult(new.num_rows, aggregate.num_rows, quarantined, metrics, delta_version=version)


def silver_table_names() -> list[str]:
    return [t.name for t in silver_tables()]
