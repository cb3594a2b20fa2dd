"""Gold to a warehouse: the tables whose Delta version moved since the last export."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medallion.audit import AuditStore
from medallion.errors import ConfigError, MedallionError
from medallion.runner import (
    EXPORT_JOB,
    RunContext,
    Status,
    Task,
    TaskOutcome,
    TaskResult,
    new_run_id,
)
from medallion.settings import Settings
from medallion.storage import Lake

if TYPE_CHECKING:
    from medallion.export.core import TableExport


__all__ = ["EXPORT_JOB", "ExportReport", "export"]


@dataclass
class ExportReport:
    destination: str
    run_id: str
    tables: list[TableExport]
    seconds: float

    @property
    def exported(self) -> list[TableExport]:
        return [t for t in self.tables if t.status == "exported"]


def export(
    settings: Settings,
    to: str | None = None,
    tables: list[str] | None = None,
    *,
    full: bool = False,
    run_id: str | None = None,
) -> ExportReport:
    """Export the Gold tables whose Delta version moved since the last export to ``to``
    (default: the ``export_to`` setting); ``full`` re-exports every table. Each exported
    table is one audit row (job ``medallion_export``: rows, bytes, seconds)."""
    from medallion.export.core import export_table, gold_table_names
    from medallion.export.destinations import destination

    url = to or settings.export_to
    if not url:
        raise ConfigError("no export destination: pass --to URL or set export_to")
    names = gold_table_names(tables)
    lake = Lake.from_settings(settings)
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, job=EXPORT_JOB)
    start = time.perf_counter()
    results: list[TableExport] = []
    with (
        destination(url, settings, lake.uri) as dest,
        AuditStore(settings.audit_location) as audit,
    ):
        for name in names:
            task = Task(f"export.{name}", "export", name, lambda _ctx: TaskResult())
            audit.task_started(ctx, task, 1)
            began = time.time()
            try:
                done = export_table(dest, lake, name, full=full)
            except MedallionError as exc:
                audit.task_finished(
                    ctx, TaskOutcome(task, Status.FAILED, 1, str(exc), None, began, time.time())
                )
                raise
            metrics = {
                "destination": dest.label,
                "status": done.status,
                "bytes": done.bytes,
                "seconds": round(done.seconds, 3),
            }
            result = TaskResult(rows_written=done.rows, metrics=metrics, delta_version=done.version)
            audit.task_finished(
                ctx, TaskOutcome(task, Status.SUCCESS, 1, None, result, began, time.time())
            )
            results.append(done)
        label = dest.label
    return ExportReport(label, ctx.run_id, results, time.perf_counter() - start)
