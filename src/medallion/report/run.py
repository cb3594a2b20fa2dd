"""The run as the audit store recorded it: its attempts, checks and predecessor."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from medallion.audit import AuditStore
from medallion.errors import AuditError, MedallionError
from medallion.report.style import NO_RUN, Row
from medallion.settings import Settings


# -- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """One run as the audit store recorded it."""

    run_id: str
    attempts: list[Row]  # one row per task attempt, oldest first
    previous: str | None  # the run before this one, if any
    checks: list[Row]

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
        return RunData(chosen, store.run_logs(run_id=chosen), previous, store.dq_results(chosen))


def _run_ids(store: AuditStore) -> list[str]:
    """Every run id in the order the runs started."""
    rl = store.t["run_logs"]
    stmt = sa.select(rl.c.run_id).group_by(rl.c.run_id).order_by(sa.func.min(rl.c.id))
    try:
        with store.engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit log: {' '.join(str(exc).split())[:300]}") from None


@dataclass(frozen=True)
class LakeViews:
    """What the report shows from the lake, handed in by the API (the report reads no lake):
    the quarantine summary and the named business queries."""

    quarantine: Callable[[], list[dict[str, Any]]]
    query: Callable[[str], pa.Table]


def report_name(run_id: str) -> str:
    """The report's file name; a run id given by a scheduler may hold any character."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip(".") + ".html"
