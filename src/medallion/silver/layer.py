"""Silver tasks: read the Bronze rows appended since the last merge, validate, quarantine,
MERGE. The Bronze version merged through is recorded in the Silver commit (app transaction
``medallion.silver.<table>``), so a re-run reads nothing new and writes nothing.

The same code runs on every engine: lake tables go in as lazy scans, each table-sized result
is kept where the engine runs and written by it (:meth:`Engine.keep`, ``overwrite``,
``merge``, ``append``); only counts, and the change-sized rows noted where they are read,
pass through this process when the engine runs elsewhere. Whether a large change set is split
into groups is decided once (:func:`_batch_limit`): only an engine in this process needs it.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa

from medallion.audit import table_lease
from medallion.catalog import empty_bronze, source_table
from medallion.engine import Engine, Relation, default_engine, engine_for, rows_in
from medallion.errors import MedallionError, ReconciliationError
from medallion.faults import crash_point
from medallion.runner import Layer, RunContext, Task, TaskResult, per_table
from medallion.silver.contracts import Kind, SilverTable, silver_table, silver_tables
from medallion.silver.partitions import chained, groups, head, split_columns
from medallion.silver.transform import (
    CONTENT_HASH,
    TOMBSTONE,
    Keeping,
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
    without_tombstones,
)
from medallion.sql import quoted_list
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


@dataclass(frozen=True)
class _Job:
    """What the steps of one Silver task share: the run, the table and its Delta tables, the
    engine, and the Bronze version the task reads through."""

    ctx: RunContext
    spec: SilverTable
    t: _Tables
    engine: Engine
    through: int

    @property
    def keeping(self) -> Keeping:
        """This run's stamp, results kept near the Silver and quarantine tables."""
        return Keeping(self.ctx.run_id, self.ctx.started_at, self.t.target, self.t.quarantine)


def build_table(ctx: RunContext, spec: SilverTable) -> TaskResult:
    """Bring one Silver table up to date with Bronze; the runner's task function."""
    lake = Lake.from_settings(ctx.settings)
    with table_lease(ctx.settings, lake.table_uri(LAYER, spec.name), ctx.run_id) as audit:
        tables = _Tables.open(lake, spec)
        if spec.kind is Kind.AGGREGATE:
            return _build_aggregate(ctx, spec, tables)
        if not spec.references or ctx.full_refresh:  # no row waits / a rebuild retries none
            return _build_upsert(ctx, spec, lake, tables, retry=False)
        # the parents as they are before this task reads them, the rest as it leaves them
        parents = _parent_states(lake, spec)
        last = audit.last_success(f"{LAYER}.{spec.name}")
        retry = not _retried_since(last, parents, tables)
        result = _build_upsert(ctx, spec, lake, tables, retry=retry)
        result.metrics[RETRY_INPUTS] = parents | _own_states(tables)
        return result


def _merged_through(ctx: RunContext, target: DeltaHandle, spec: SilverTable) -> int | None:
    if ctx.full_refresh:
        return None
    return target.app_version(app_id(LAYER, spec.name))


Change: TypeAlias = "Relation | pa.RecordBatchReader"


def _change_set(bronze: DeltaHandle, before: int | None, limit: int) -> tuple[Change | None, int]:
    """The Bronze rows appended after version ``before`` and the version read through; a
    stream when they are more than ``limit`` (to be split into groups).

    All rows (``before`` None: a first build, a full refresh) are Bronze's snapshot, a lazy
    scan the engine reads itself. Bronze is only ever appended to, so the rows after a merge
    are the files the commits since added (:meth:`DeltaHandle.appended`), which an engine
    running elsewhere also reads itself (Sail reads no change data feed); only when the log
    says more than appends are they read here, from the change data feed."""
    if before is not None and before == bronze.version:  # no commit since: nothing to scan
        return None, before
    rows = bronze.relation() if before is None else bronze.appended(before)
    if rows is not None or before is None:
        if rows is None or rows_in(rows) <= limit:
            return rows, bronze.version or 0
        return rows.scanner().to_reader(), bronze.version or 0
    reader, through = bronze.change_reader(before)
    assert through is not None  # bronze exists: it was merged through before
    if reader is None:
        return None, through
    first, rest = head(reader, limit)
    return (first if rest is None else chained(first, rest)), through


def _batch_limit(ctx: RunContext, spec: SilverTable, engine: Engine) -> int:
    """Rows above which a change set is validated in groups: only by an engine in this
    process (memory here is what is bounded), and only for tables that can be split."""
    if engine.in_process and split_columns(spec):
        return ctx.settings.silver_batch_rows
    return sys.maxsize


def _build_upsert(
    ctx: RunContext, spec: SilverTable, lake: Lake, t: _Tables, *, retry: bool
) -> TaskResult:
    """``retry``: look for quarantined rows whose parent may have arrived."""
    before = _merged_through(ctx, t.target, spec)
    engine = engine_for(ctx.settings)
    if not t.bronze.exists:
        return _unchanged(t.target, before)
    change, through = _change_set(t.bronze, before, _batch_limit(ctx, spec, engine))
    relabel = not ctx.full_refresh and t.target.exists and _lookup_moved(spec, t)
    retried = _retry_candidates(spec, t, engine) if retry else None
    fresh = change is not None and (not _is_relation(change) or rows_in(change) > 0)
    if not (fresh or relabel or retried is not None):
        return _unchanged(t.target, before)
    lookup = _live_lookup(t, spec)
    metrics: dict[str, Any] = {"bronze_version_before": before, "bronze_version_after": through}
    result = TaskResult(metrics=metrics)
    if fresh or retried is not None:
        job = _Job(ctx, spec, t, engine, through)
        batch = _merge_change(job, lake, change, retried, lookup)
        if isinstance(change, pa.RecordBatchReader):  # validated group by group
            metrics["batches_split"] = True
        result = batch or result
    if relabel:  # after the batch: every row, deleted ones too, takes the labels in force now
        metrics["lookup_refreshed"] = _relabel(ctx, spec, t, lookup, engine)
    result.metrics = metrics | result.metrics
    result.delta_version = t.target.version
    return result


def _is_relation(change: Change) -> bool:
    return not isinstance(change, pa.RecordBatchReader)


def _merge_change(
    job: _Job,
    lake: Lake,
    change: Change | None,
    retry: pa.Table | None,
    lookup: Relation | None,
) -> TaskResult | None:
    """The change set merged in one batch, or (a stream: too large for one) in groups
    staged on local disk."""
    if not isinstance(change, pa.RecordBatchReader):
        rows = change if change is not None else empty_bronze(job.spec.bronze)
        return _merge_batch(job, lake, [(rows, retry)], lookup=lookup, stage=None)
    limit = job.ctx.settings.silver_batch_rows
    with tempfile.TemporaryDirectory(prefix=f"medallion-{job.spec.name}-") as folder:
        parts = groups(
            job.spec,
            change,
            retry,
            expected_rows=job.t.bronze.row_count() or limit,
            limit=limit,
            folder=Path(folder) / "bronze",
        )
        return _merge_batch(job, lake, parts, lookup=lookup, stage=Path(folder) / "merge")


@dataclass
class _Merged:
    """What the groups of one batch gave: rows to write (one relation, or groups staged on
    disk), rows to quarantine, and the counts the reconciliation and the metrics need."""

    rows: list[Relation] = field(default_factory=list)
    quarantine: list[Relation] = field(default_factory=list)
    stage: Path | None = None
    schema: pa.Schema | None = None
    fresh: int = 0
    sourced: int = 0  # rows to merge, tombstones included
    written: int = 0  # rows to write (a new table's without its tombstones)
    retried: int = 0
    superseded: int = 0
    quarantined: int = 0
    still_held: int = 0
    warnings: dict[str, int] = field(default_factory=dict)

    def add(self, batch: Validated, fresh: int, retried: int) -> None:
        self.quarantine.append(batch.quarantine)
        self.fresh += fresh
        self.retried += retried
        self.sourced += batch.merge_rows
        self.superseded += batch.superseded
        self.quarantined += batch.quarantined
        self.still_held += batch.still_held
        for rule, n in batch.warnings.items():
            self.warnings[rule] = self.warnings.get(rule, 0) + n

    @property
    def read(self) -> int:
        """Rows read: the Bronze rows and the retried quarantined ones."""
        return self.fresh + self.retried

    def source(self) -> Relation:
        """The rows to write: the one relation, or the groups staged on disk."""
        if self.stage is None:
            return self.rows[0]
        import pyarrow.dataset as pads  # only here: it imports pandas

        return pads.dataset(self.stage, schema=self.schema, format="parquet")


def _validated(
    job: _Job,
    lake: Lake,
    parts: Iterable[tuple[Relation, pa.Table | None]],
    *,
    lookup: Relation | None,
    stage: Path | None,
) -> _Merged:
    """Each group validated, its rows to write kept (or staged in ``stage``), counts added."""
    spec, t, engine = job.spec, job.t, job.engine
    refs = {r.table: _keys(lake, r.table, r.key) for r in spec.references}
    existing = _existing_content(t.target, spec)
    if stage is not None:  # many groups: what each one reads of other tables, read once
        keys = {r.table: r.key for r in spec.references}
        refs = {name: _held(rows, keys[name], engine) for name, rows in refs.items()}
        if existing is not None:
            existing = _held(existing, (*spec.key, CONTENT_HASH, *_TIMES), engine)
    new_table = job.ctx.full_refresh or not t.target.exists
    merged = _Merged(stage=stage)
    for number, (bronze, retry) in enumerate(parts):
        batch = validate(
            spec, bronze, refs, lookup, engine=engine, keeping=job.keeping, existing=existing,
            retry=retry,
        )  # fmt: skip
        merged.add(batch, rows_in(bronze), retry.num_rows if retry is not None else 0)
        source = batch.merge
        if new_table:  # a new table: no row for a tombstone
            source = without_tombstones(batch.merge, engine, near=t.target)
            engine.discard(batch.merge)
        merged.written += rows_in(source)
        merged.schema = source.schema
        if stage is None:
            merged.rows.append(source)
        else:
            import pyarrow.dataset as pads  # only here: it imports pandas

            pads.write_dataset(source, stage / str(number), format="parquet")
    return merged


_TIMES = ("updated_at", "is_deleted")  # what the duplicate-content rule reads besides keys


def _held(rows: Relation, columns: tuple[str, ...], engine: Engine) -> Relation:
    """The ``columns`` the checks read of ``rows``, kept by the engine: read once for the
    many groups that read them."""
    return engine.keep(f"SELECT {quoted_list(columns)} FROM rows", {"rows": rows})


def _merge_batch(
    job: _Job,
    lake: Lake,
    parts: Iterable[tuple[Relation, pa.Table | None]],
    *,
    lookup: Relation | None,
    stage: Path | None,
) -> TaskResult | None:
    """Validate, quarantine and write one batch of Bronze rows (and retried quarantined rows)
    given in ``parts`` (groups of keys; their rows to write staged in ``stage`` when given):
    the quarantine first, then the table, each in one commit. None when only retried rows came
    and all still wait for their parents."""
    ctx, spec, t, engine, through = job.ctx, job.spec, job.t, job.engine, job.through
    merged = _validated(job, lake, parts, lookup=lookup, stage=stage)
    if merged.schema is None or (merged.fresh == 0 and merged.sourced == 0):
        for rows in merged.rows + merged.quarantine:
            engine.discard(rows)
        return None
    rejected = _together(merged.quarantine, engine, t.quarantine)
    quarantined = _quarantine(job, rejected, merged.quarantined)
    transactions = {app_id(LAYER, spec.name): through}
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": spec.name, "bronze_version": through}
    source = merged.source()
    if ctx.full_refresh or not t.target.exists:
        transactions |= _lookup_txn(spec, t)  # labelled from the lookup as it is now
        version = engine.overwrite(
            t.target,
            source,
            transactions=transactions,
            metadata=meta,
            configuration=CDF,
            key=spec.key,
        )
        result = MergeResult(version, merged.sourced, merged.written, 0, 0, 0, 0)
    else:
        plan = _merge_plan(spec)
        result = engine.merge(t.target, source, plan, transactions=transactions, metadata=meta)
        engine.discard(source)
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


def _together(parts: list[Relation], engine: Engine, near: DeltaHandle) -> Relation:
    """The groups' rows as one relation (kept near ``near``)."""
    if len(parts) == 1:
        return parts[0]
    union = " UNION ALL ".join(f"SELECT * FROM p{i}" for i in range(len(parts)))
    together = engine.keep(union, {f"p{i}": p for i, p in enumerate(parts)}, near=near)
    for part in parts:
        engine.discard(part)
    return together


def _relabel(
    ctx: RunContext, spec: SilverTable, t: _Tables, lookup: Relation | None, engine: Engine
) -> int:
    """Set the looked-up columns of every row whose labels changed since the lookup table last
    moved, in a commit that records the lookup's version; rows keep their own updated_at."""
    assert t.lookup is not None and lookup is not None
    version = t.lookup.data_version
    assert version is not None
    current = t.target.relation()
    assert current is not None
    changed = engine.keep(
        refresh_sql(spec), {"s": current, "lookup": lookup}, {"run_id": ctx.run_id}, near=t.target
    )
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": spec.name, "lookup_version": version}
    plan = _relabel_plan(spec)
    transactions = {lookup_id(spec): version}
    engine.merge(t.target, changed, plan, transactions=transactions, metadata=meta, all_new=False)
    relabelled = rows_in(changed)
    engine.discard(changed)
    return relabelled


RETRY_INPUTS = "retry_inputs"  # task metrics: the states of the tables a retry reads


State: TypeAlias = "list[str | int | None]"  # a table's id and data version (JSON-safe)


def _state(handle: DeltaHandle) -> State:
    """A table as a retry reads it: made again at its place, it is another table."""
    return [handle.identity, handle.data_version]


def _parent_states(lake: Lake, spec: SilverTable) -> dict[str, State]:
    """The state of each table ``spec`` references."""
    return {f"{LAYER}.{r.table}": _state(lake.table(LAYER, r.table)) for r in spec.references}


def _own_states(t: _Tables) -> dict[str, State]:
    return {QUARANTINE: _state(t.quarantine), LAYER: _state(t.target)}


def _retried_since(last: dict[str, Any] | None, parents: dict[str, State], t: _Tables) -> bool:
    """Whether nothing a retry reads changed since this task last ended well: the parents
    are as it found them before reading them, the quarantine and the table as it left them.
    Then no quarantined row can be released: that task retried every waiting row (or found,
    as this one, nothing changed since one that did), and judged every row it quarantined
    against those parents or later ones."""
    recorded = last["metrics"].get(RETRY_INPUTS) if last is not None else None
    return recorded is not None and recorded == parents | _own_states(t)


def _retry_candidates(spec: SilverTable, t: _Tables, engine: Engine) -> pa.Table | None:
    """Quarantined rows held back only by a missing parent; None when there are none. A
    small answer: at most one row per key still waiting for its parent."""
    if not t.quarantine.exists or t.quarantine.row_count() == 0:
        return None  # known from the log: no data read
    held = t.quarantine.relation()
    current = t.target.relation()
    if held is None or current is None or rows_in(held) == 0:
        return None
    rows = engine.query(
        retry_sql(spec, held.schema.names),
        {"quarantine": held, "silver": current},
        {"waiting": waiting_rules(spec)},
    )
    return rows if rows.num_rows else None


def _live_lookup(t: _Tables, spec: SilverTable) -> Relation | None:
    """The lookup table (the SQL reads its live rows only), or an empty one."""
    if spec.lookup is None or t.lookup is None:
        return None
    rows = t.lookup.relation()
    if rows is None:
        return default_engine().query(empty_silver_sql(silver_table(spec.lookup.table)))
    return rows


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


def _existing_content(target: DeltaHandle, spec: SilverTable) -> Relation | None:
    """The Silver table, for the duplicate-content rule (it reads keys, hashes, times)."""
    if not spec.unique_content:
        return None
    return target.relation()


def _keys(lake: Lake, table: str, key: tuple[str, ...]) -> Relation:
    """A referenced Silver table (the rules read its key), or no keys when it is not there."""
    rows = lake.table(LAYER, table).relation()
    if rows is None:
        return pa.table({k: pa.array([], pa.string()) for k in key})
    return rows


def _merge_plan(spec: SilverTable) -> MergePlan:
    """Newer rows win; on equal times a delete wins; a tombstone only flips the flags."""
    cols = silver_columns(spec)
    newer = (
        "(s.updated_at > t.updated_at OR (s.updated_at = t.updated_at AND s.is_deleted "
        "AND NOT t.is_deleted))"
    )
    flags = {
        c: f"s.{c}" for c in ("updated_at", "is_deleted", "deleted_at", "_bronze_run_id", "_run_id")
    }
    everything = {c: f"s.{c}" for c in cols}
    return MergePlan(
        keys=spec.key,
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
        keys=spec.key,
        matched_updates=((differs, {c: f"s.{c}" for c in [*looked_up, "_run_id"]}),),
    )


def _quarantine(job: _Job, rows: Relation, count: int) -> int:
    """Append the ``count`` rejected rows, already stamped with this run, once per Bronze
    version range (a re-run after a crash skips it)."""
    quarantine, table, engine = job.t.quarantine, job.spec.name, job.engine
    qid = app_id(QUARANTINE, table)
    done = quarantine.app_version(qid)
    if count == 0 or (done is not None and done >= job.through):
        engine.discard(rows)
        return count
    engine.append(
        quarantine,
        rows,
        transactions={qid: job.through},
        expected={qid: done},
        metadata={"run_id": job.ctx.run_id, "step": QUARANTINE, "table": table, "rows": count},
        evolve_schema=True,
    )
    crash_point("silver.after_quarantine")
    return count


def _reconcile(table: str, read: int, merged: int, quarantined: int, superseded: int) -> None:
    if read != merged + quarantined + superseded:
        raise ReconciliationError(
            f"silver.{table}: {read} rows read != {merged} merged + {quarantined} quarantined "
            f"+ {superseded} superseded"
        )


def _build_aggregate(ctx: RunContext, spec: SilverTable, t: _Tables) -> TaskResult:
    """Rebuild the aggregate from Bronze's current state, which the engine reads itself;
    only the new points are checked for the quarantine."""
    before = _merged_through(ctx, t.target, spec)
    new, through = _change_set(t.bronze, before, sys.maxsize) if t.bronze.exists else (None, 0)
    assert not isinstance(new, pa.RecordBatchReader)  # no limit: never a stream
    arrived = rows_in(new) if new is not None else 0
    if new is None or arrived == 0:
        return _unchanged(t.target, before)
    job = _Job(ctx, spec, t, engine_for(ctx.settings), through)
    engine = job.engine
    history = t.bronze.relation(version=through)
    assert history is not None
    points = geolocation_points(spec, history, engine)
    rejects, count = geolocation_rejects(spec, new, points, engine=engine, keeping=job.keeping)
    quarantined = _quarantine(job, rejects, count)
    aggregate = aggregate_geolocation(points, engine=engine, keeping=job.keeping)
    meta = {"run_id": ctx.run_id, "step": LAYER, "table": spec.name, "bronze_version": through}
    version = engine.overwrite(
        t.target,
        aggregate,
        transactions={app_id(LAYER, spec.name): through},
        metadata=meta,
        configuration=CDF,
        key=spec.key,
    )
    zips = rows_in(aggregate)
    metrics = {
        "bronze_version_before": before,
        "bronze_version_after": through,
        "points": rows_in(points),
        "zip_prefixes": zips,
        "quarantined": quarantined,
    }
    engine.discard(points)
    return TaskResult(arrived, zips, quarantined, metrics, delta_version=version)


def silver_table_names() -> list[str]:
    return [t.name for t in silver_tables()]
