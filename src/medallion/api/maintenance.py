"""`medallion maintain`: compaction, z-order, vacuum and checkpoints of the lake's tables, so
that many small incremental commits do not slow reads down.

A compaction commits a new version that changes no row: app transactions stay as they were,
change-data-feed readers skip it, and readers that record the versions they read compare the
table's ``data_version`` (the last commit that changed rows), so the next run writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medallion.audit import AuditStore
from medallion.catalog import SOURCE_TABLES, TableRef
from medallion.errors import ConfigError, MedallionError
from medallion.gold.dimensions import DIMENSIONS
from medallion.gold.links import links_name
from medallion.gold.model import GOLD_TABLES
from medallion.runner import (
    MAINTAIN_JOB,
    RunContext,
    Status,
    Task,
    TaskOutcome,
    TaskResult,
    new_run_id,
)
from medallion.silver.contracts import silver_tables
from medallion.storage import Lake
from medallion.stream.lake import BRONZE_KEY, SILVER_KEY
from medallion.stream.lake import NAME as REVIEW_EVENTS

if TYPE_CHECKING:
    from medallion.settings import Settings

MIN_RETENTION_HOURS = 1  # below this, --force: a running reader may still need the files
LAYERS = ("bronze", "silver", "quarantine", "gold")


@dataclass(frozen=True)
class Maintained:
    """One table before and after: data files, their bytes, versions, what was done."""

    ref: TableRef
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    version_before: int
    version_after: int
    z_order: tuple[str, ...]
    vacuumed: int
    seconds: float


@dataclass
class MaintainReport:
    run_id: str
    tables: list[Maintained]
    retention_hours: int
    seconds: float


def lake_tables_with_keys() -> dict[TableRef, tuple[str, ...]]:
    """Every table the pipeline and the stream write, with the key its lookups filter by, a
    z-order sorts by and its files are laid out for (:func:`~medallion.storage.file_layout`;
    the quarantine tables have none: they hold rejected rows of any shape), the state Gold
    keeps beside its dimensions too."""
    tables = {TableRef("bronze", t.name): t.row_key for t in SOURCE_TABLES}
    tables[TableRef("bronze", REVIEW_EVENTS)] = BRONZE_KEY
    tables |= {TableRef("silver", t.name): t.key for t in silver_tables()}
    tables[TableRef("silver", REVIEW_EVENTS)] = SILVER_KEY
    tables |= {TableRef("quarantine", t.name): () for t in silver_tables()}
    tables[TableRef("quarantine", REVIEW_EVENTS)] = ()
    tables |= {TableRef("gold", t.name): t.lookup_key for t in GOLD_TABLES}
    # the SCD2 dimensions' kept links: a small append every run
    tables |= {TableRef("gold", links_name(d)): d.contract.key for d in DIMENSIONS}
    return tables


def chosen_tables(
    layers: list[str] | None, tables: list[str] | None
) -> dict[TableRef, tuple[str, ...]]:
    """The tables of ``layers`` named ``tables`` (all when None); bad names are errors."""
    every = lake_tables_with_keys()
    unknown = sorted(set(layers or ()) - set(LAYERS))
    if unknown:
        raise ConfigError(f"unknown layer {', '.join(unknown)}; choose from {', '.join(LAYERS)}")
    names = {ref.name for ref in every}
    unknown = sorted(set(tables or ()) - names)
    if unknown:
        raise ConfigError(
            f"unknown table {', '.join(unknown)}; choose from {', '.join(sorted(names))}"
        )
    return {
        ref: key
        for ref, key in every.items()
        if (not layers or ref.layer in layers) and (not tables or ref.name in tables)
    }


def check_retention(hours: int, *, force: bool) -> None:
    if hours < 0:
        raise ConfigError(f"the vacuum retention must be 0 hours or more, got {hours}")
    if hours < MIN_RETENTION_HOURS and not force:
        raise ConfigError(
            f"a vacuum retention of {hours} h can delete files a running reader still needs; "
            f"use at least {MIN_RETENTION_HOURS} h (maintain_retention_hours), or --force"
        )


def maintain(
    settings: Settings,
    layers: list[str] | None = None,
    tables: list[str] | None = None,
    *,
    z_order: bool | None = None,
    retention_hours: int | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> MaintainReport:
    """Compact (z-ordered by the key when ``z_order``, default the ``maintain_z_order``
    setting), vacuum (files unused for ``retention_hours``, default the setting) and
    checkpoint every chosen table that exists. Each is an audit row (job
    ``medallion_maintain``)."""
    chosen = chosen_tables(layers, tables)
    hours = settings.maintain_retention_hours if retention_hours is None else retention_hours
    check_retention(hours, force=force)
    order = settings.maintain_z_order if z_order is None else z_order
    lake = Lake.from_settings(settings)
    lake.probe()
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, job=MAINTAIN_JOB)
    start = time.perf_counter()
    done: list[Maintained] = []
    with AuditStore(settings.audit_location) as audit:
        for ref, key in chosen.items():
            result = _maintain_logged(audit, ctx, lake, ref, key=key, z_order=order, hours=hours)
            if result is not None:
                done.append(result)
    return MaintainReport(ctx.run_id, done, hours, time.perf_counter() - start)


def _maintain_logged(
    audit: AuditStore,
    ctx: RunContext,
    lake: Lake,
    ref: TableRef,
    *,
    key: tuple[str, ...],
    z_order: bool,
    hours: int,
) -> Maintained | None:
    """One table, recorded in the audit log (a table never written is skipped, unrecorded)."""
    handle = lake.table(ref.layer, ref.name)
    if not handle.exists:
        return None
    task = Task(f"maintain.{ref}", "maintain", ref.name, lambda _ctx: TaskResult())
    audit.task_started(ctx, task, 1)
    began = time.time()
    try:
        done = maintain_table(lake, ref, key, hours, ctx.run_id, z_order=z_order)
    except MedallionError as exc:
        outcome = TaskOutcome(task, Status.FAILED, 1, str(exc), None, began, time.time())
        audit.task_finished(ctx, outcome)
        raise
    metrics = {
        "files_before": done.files_before,
        "files_after": done.files_after,
        "bytes_before": done.bytes_before,
        "bytes_after": done.bytes_after,
        "version_before": done.version_before,
        "z_order": list(done.z_order),
        "vacuumed_files": done.vacuumed,
        "retention_hours": hours,
        "seconds": round(done.seconds, 3),
    }
    result = TaskResult(metrics=metrics, delta_version=done.version_after)
    audit.task_finished(ctx, TaskOutcome(task, Status.SUCCESS, 1, None, result, began, time.time()))
    return done


def maintain_table(
    lake: Lake,
    ref: TableRef,
    key: tuple[str, ...],
    hours: int,
    run_id: str,
    *,
    z_order: bool = True,
) -> Maintained:
    """Compact (z-ordered by ``key`` when ``z_order``; the files laid out for lookups by
    ``key`` either way) when the table has more than one file, vacuum, then checkpoint."""
    clock = time.perf_counter()
    handle = lake.table(ref.layer, ref.name)
    files, size = handle.files()
    version = handle.version
    assert version is not None
    metadata = {"run_id": run_id, "step": "maintain", "table": str(ref)}
    schema = handle.schema
    held = tuple(c for c in key if schema is not None and c in schema.names)
    order = list(held) if z_order else []
    if files > 1:
        handle.compact(order or None, metadata, key=held)
    vacuumed = handle.vacuum(hours, metadata)
    handle.checkpoint()
    files_after, size_after = handle.files()
    after = handle.version
    assert after is not None
    seconds = time.perf_counter() - clock
    return Maintained(
        ref, files, files_after, size, size_after, version, after, tuple(order), vacuumed, seconds
    )
