"""The run as the audit store recorded it: its attempts, checks and predecessor, and every
micro-batch of the review stream."""

from __future__ import annotations

import json
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
        if run_id is None:
            chosen = _started_last(store)
            if chosen is None:
                raise MedallionError(NO_RUN)
        else:
            chosen = run_id
        first = _first_attempt(store, chosen)
        if first is None:
            raise MedallionError(f"run {chosen!r} is not in the audit log; see `medallion audit`")
        previous = _started_last(store, before=first)
        attempts, checks = store.run_logs(run_id=chosen), store.dq_results(chosen)
        exports = _job_rows(store, EXPORT_JOB)
        return RunData(chosen, attempts, previous, checks, _stream_batches(store), exports)


# stream consumes, exports and maintenance are not pages: a report's run and its predecessor
# are pipeline runs, ordered by their first attempt
_NOT_PIPELINE = (STREAM_JOB, EXPORT_JOB, MAINTAIN_JOB)
_WINDOW = 256  # attempts read first when looking back for a run's start (about four runs)


def _first_attempt(store: AuditStore, run_id: str) -> int | None:
    """The id of the pipeline run's first attempt (None: no such run)."""
    rl = store.t["run_logs"]
    return _id(store, sa.func.min(rl.c.id), rl.c.run_id == run_id, rl.c.job.not_in(_NOT_PIPELINE))


def _id(store: AuditStore, aggregate: Any, *where: Any) -> int | None:
    """One attempt id: ``aggregate`` (the min or max id) of the attempts ``where`` holds."""
    found = _select(store, sa.select(aggregate.label("id")).where(*where))[0]["id"]
    return None if found is None else int(found)


def _started_last(store: AuditStore, before: int | None = None) -> str | None:
    """The pipeline run whose first attempt is the latest (before attempt id ``before``).

    Reads the log backwards from ``before`` in widening windows, never the whole of a long
    log: every run with an attempt in the window is a candidate, its first attempt found by
    the run-id index; a candidate starting inside the window is the answer (a run starting
    later inside it would be a candidate too), else the window widens. Runs interleave
    (a run started while another ran), so the last attempt before ``before`` need not be
    the answer's."""
    rl = store.t["run_logs"]
    pipeline = rl.c.job.not_in(_NOT_PIPELINE)
    if before is None:  # the latest of all: from the newest attempt on
        newest = _id(store, sa.func.max(rl.c.id))
        if newest is None:
            return None
        before = newest + 1
    top, width = before, _WINDOW
    while True:
        low = top - width
        in_window = sa.select(rl.c.run_id).where(pipeline, rl.c.id >= low, rl.c.id < top)
        firsts = sa.select(rl.c.run_id, sa.func.min(rl.c.id).label("first")).where(
            pipeline, rl.c.run_id.in_(in_window.distinct().scalar_subquery())
        )
        rows = _select(store, firsts.group_by(rl.c.run_id))
        started = [(r["first"], r["run_id"]) for r in rows if low <= r["first"] < top]
        if started:
            return str(max(started)[1])
        if low <= 0:  # the window holds the whole log below ``top``
            return None
        width *= 4


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


def task_metrics(row: Row) -> dict[str, Any]:
    """An audit row's metrics JSON as a dict (empty when missing or unreadable)."""
    try:
        metrics = json.loads(row.get("metrics") or "{}")
    except (TypeError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}
