"""The alerts a run sends: a task's final failure, failed or warned checks, the run summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from medallion.alerts.payloads import Alert, counts_text, cut
from medallion.runner import RunContext, RunReport, Status, Task, TaskOutcome
from medallion.settings import AlertKind, Settings


def report_link(settings: Settings, run_id: str, given: str | None = None) -> str | None:
    """The report link for a run: ``given``, else ``settings.report_url`` with ``{run_id}``."""
    url = given or settings.report_url.replace("{run_id}", run_id)
    return url or None


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp or time.time(), UTC)


def failure_alert(ctx: RunContext, outcome: TaskOutcome, report_url: str | None = None) -> Alert:
    """The alert for a task whose last attempt failed."""
    task: Task = outcome.task
    tries = f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
    return Alert(
        kind="failure",
        title=f"{ctx.job}: task {task.name} failed",
        text=f"Task {task.name} ({task.layer} {task.table}) failed after {tries}.",
        run_id=ctx.run_id,
        job=ctx.job,
        task=task.name,
        table=task.table,
        layer=task.layer,
        error=outcome.error or "unknown error",
        report_url=report_url,
        at=_at(outcome.ended_at),
    )


def checks_alert(
    kind: AlertKind, ctx: RunContext, names: Sequence[str], at: datetime, report_url: str | None
) -> Alert:
    """The alert for checks that failed (``check_failed``) or warned (``check_warned``)."""
    verb = "failed" if kind == "check_failed" else "warned"
    return Alert(
        kind=kind,
        title=f"{ctx.job}: {len(names)} data-quality check(s) {verb}",
        text=f"Checks that {verb}: {', '.join(names)}.",
        run_id=ctx.run_id,
        job=ctx.job,
        checks=tuple(names),
        report_url=report_url,
        ok=kind == "check_warned",
        at=at,
    )


def summary_alert(
    ctx: RunContext,
    report: RunReport,
    checks_failed: Sequence[str],
    checks_warned: Sequence[str],
    report_url: str | None = None,
) -> Alert:
    """The end-of-run summary: task counts, failed tasks with their errors, check counts."""
    counts = {
        "succeeded": len(report.by_status(Status.SUCCESS)),
        "failed": len(report.by_status(Status.FAILED)),
        "skipped": len(report.by_status(Status.SKIPPED)),
        "checks_failed": len(checks_failed),
        "checks_warned": len(checks_warned),
    }
    ok = report.ok and not checks_failed
    state = "failed" if not ok else "succeeded with warnings" if checks_warned else "succeeded"
    lines = [f"Run {ctx.run_id} {state}: {counts_text(counts)}."]
    lines += [
        f"• {o.task.name}: {cut(o.error or '', 200)}" for o in report.by_status(Status.FAILED)
    ]
    ended = max((o.ended_at for o in report.outcomes), default=0.0)
    return Alert(
        kind="summary",
        title=f"{ctx.job}: run {state}",
        text="\n".join(lines),
        run_id=ctx.run_id,
        job=ctx.job,
        checks=tuple(checks_failed),
        report_url=report_url,
        ok=ok,
        counts=counts,
        at=_at(ended),
    )
