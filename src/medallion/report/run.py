"""The run as the audit store recorded it: its attempts, checks and predecessor, and every
micro-batch of the review stream."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from medallion.audit import AuditStore
from medallion.errors import AuditError, MedallionError
from medallion.report.style import NO_RUN, Row
from medallion.runner import EXPORT_JOB, MAINTAIN_JOB, STREAM_JOB
from medallion.settings import Settings


# -- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """One run as the audit store recorded it, and every review stream micro-batch."""

    run_id: str
    attempts: list[Row]  # one row per task attempt, oldest first
    previous: str | None  # the run before this one, if any
    checks: list[Row]
    stream: list[Row] = field(default_factory=list)  # micro-batches of every consume, oldest first
    exports: list[Row] = field(default_factory=list)  # every table export, oldest first

    @property
    def final(self) -> dict[str, Row]:
        """The last attempt of every task, by task name."""
        last: dict[str, Row] = {}
        for row in self.attempts:
            seen = last.get(row["task"])
            if seen is None or (row["attempt"], row["id"]) >= (seen["attempt"], seen["id"]):
                last[row["task"]] = row
        return last


def load_run(settings: Settings, run_id: str | None = None) -> RunData:
    """The run's attempts and check results (default: the latest run), and its predecessor."""
    with AuditStore(settings.audit_location) as store:
        order = _run_ids(store)
        if not order:
            raise MedallionError(NO_RUN)
        chosen = run_id or order[-1]
        if chosen not in order:
            raise MedallionError(f"run {chosen!r} is not in the audit log; see `medallion audit`")
        at = order.index(chosen)
        previous = order[at - 1] if at else None
        attempts, checks = store.run_logs(run_id=chosen), store.dq_results(chosen)
        exports = _job_rows(store, EXPORT_JOB)
        return RunData(chosen, attempts, previous, checks, _stream_batches(store), exports)


def _run_ids(store: AuditStore) -> list[str]:
    """Every pipeline run id in the order the runs started (stream consumes, exports and
    maintenance are not pages: a report's run and its predecessor are pipeline runs)."""
    rl = store.t["run_logs"]
    stmt = (
        sa.select(rl.c.run_id)
        .where(rl.c.job.not_in([STREAM_JOB, EXPORT_JOB, MAINTAIN_JOB]))
        .group_by(rl.c.run_id)
        .order_by(sa.func.min(rl.c.id))
    )
    return [str(r["run_id"]) for r in _select(store, stmt)]


def _job_rows(store: AuditStore, job: str) -> list[Row]:
    """Every attempt of a job's runs, oldest first."""
    rl = store.t["run_logs"]
    return _select(store, sa.select(rl).where(rl.c.job == job).order_by(rl.c.id))


def _stream_batches(store: AuditStore) -> list[Row]:
    """Every micro-batch of every stream consume (one row each), oldest first; the final
    Silver catch-up of a consume (``#silver``) is not a batch."""
    rl = store.t["run_logs"]
    columns = ("id", "run_id", "status", "started_at", "ended_at", "rows_read", "metrics")
    stmt = (
        sa.select(*(rl.c[name] for name in columns))
        .where(rl.c.job == STREAM_JOB, ~rl.c.task.endswith("#silver"))
        .order_by(rl.c.id)
    )
    return _select(store, stmt)


def _select(store: AuditStore, stmt: sa.Select[Any]) -> list[Row]:
    try:
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit log: {' '.join(str(exc).split())[:300]}") from None


@dataclass(frozen=True)
class LakeViews:
    """What the report shows from the lake, handed in by the API (the report reads no lake):
    the quarantine summary, the named business queries and the review stream's quarantine."""

    quarantine: Callable[[], list[dict[str, Any]]]
    query: Callable[[str], pa.Table]
    # quarantined review events per consume run and reason: run_id, reason, rows, released
    # (how many of them Silver has merged since)
    stream_quarantine: Callable[[], list[dict[str, Any]]]


def report_name(run_id: str) -> str:
    """The report's file name; a run id given by a scheduler may hold any character."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip(".") + ".html"
