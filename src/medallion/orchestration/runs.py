"""A run driven by a scheduler, one task attempt per process: what `medallion run` does in one
process (:func:`medallion.api.run`), cut at the task boundaries.

The scheduler owns the graph, the retries and the skipping; medallion owns what each attempt
does and records. Every attempt writes its audit row as under `medallion run`; when every task
has ended, :func:`finish_run` records the tasks the scheduler never started (``SKIPPED``, with
the upstream task that did not succeed) and writes the report, and :func:`send_summary` sends
the run's summary alert. No scheduler library is imported here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from medallion import api
from medallion.alerts import Alerter, alert_failure, alert_run_summary
from medallion.audit import AuditStore
from medallion.checks import with_checks
from medallion.errors import ConfigError, MedallionError, TaskError
from medallion.pipeline import build_tasks
from medallion.report import report_name
from medallion.runner import (
    PIPELINE_JOB,
    RunContext,
    RunReport,
    Status,
    Task,
    TaskOutcome,
    TaskResult,
    attempt_once,
    order_tasks,
)
from medallion.settings import Settings

log = logging.getLogger(__name__)

RUN_ID_CHARS = 64  # the audit store's run_id column
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# where a scheduler's connections go: connection id -> setting
CONNECTION_SETTINGS = {"medallion_source": "source_url", "medallion_audit": "audit_url"}
SETTINGS_VARIABLE = "medallion_settings"  # a JSON object of settings


# -- run ids and contexts ----------------------------------------------------------------------
def run_id_for(scheduler_run_id: str) -> str:
    """The medallion run id of a scheduler's run, the same for every task of that run.

    A run id made of letters, digits, ``.``, ``_`` and ``-`` that fits the audit log is kept
    as it is; any other (Airflow's ``manual__2026-12-01T10:00:00+00:00``) has each run of
    other characters replaced by ``_`` and ends with 8 hex digits of its SHA-1, so two
    scheduler runs never share a medallion run id.
    """
    if not scheduler_run_id:
        raise ConfigError("a scheduler run id is empty")
    if _PLAIN.fullmatch(scheduler_run_id) and len(scheduler_run_id) <= RUN_ID_CHARS:
        return scheduler_run_id
    digest = hashlib.sha1(scheduler_run_id.encode(), usedforsecurity=False).hexdigest()[:8]
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", scheduler_run_id).strip("._-") or "run"
    return f"{plain[: RUN_ID_CHARS - len(digest) - 1]}-{digest}"


def scheduled_context(
    settings: Settings,
    dag_id: str,
    scheduler_run_id: str,
    started_at: datetime | None = None,
    *,
    full_refresh: bool = False,
    job: str = PIPELINE_JOB,
) -> RunContext:
    """The context every task of one scheduler run shares: the derived run id, the run's start
    (its logical time, so all tasks stamp the same ``_ingested_at``) and where it came from
    (kept in every audit row, for the report's link)."""
    return RunContext(
        run_id=run_id_for(scheduler_run_id),
        settings=settings,
        job=job,
        started_at=started_at or datetime.now(UTC),
        full_refresh=full_refresh,
        origin={"airflow_dag_id": dag_id, "airflow_run_id": scheduler_run_id},
    )


# -- settings from the scheduler ---------------------------------------------------------------
def connection_url(
    setting: str,
    conn_type: str | None,
    host: str | None,
    *,
    login: str | None = None,
    password: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The value of ``setting`` (``source_url`` or ``audit_url``) that a scheduler connection
    holds: ``postgres``/``postgresql`` (database in ``schema``, options such as ``sslmode``
    in ``extra``) or ``sqlite`` (the file in ``host``)."""
    kind = (conn_type or "").lower()
    if kind in ("postgres", "postgresql"):
        user = quote(login or "", safe="")
        if password:
            user += ":" + quote(password, safe="")
        where = f"{host or 'localhost'}:{port}" if port else host or "localhost"
        url = f"postgresql://{user + '@' if user else ''}{where}/{quote(schema or '', safe='')}"
        options = {k: str(v) for k, v in (extra or {}).items()}
        return f"{url}?{urlencode(options)}" if options else url
    if kind == "sqlite" and host:
        return host if setting == "source_url" else f"sqlite:///{host}"
    raise ConfigError(
        f"a connection for {setting} must be of type postgres or sqlite (with the file as "
        f"host), not {conn_type or 'empty'!r}"
    )


def variable_settings(raw: str | None) -> dict[str, Any]:
    """The settings a scheduler variable holds: a JSON object (``{"checks": false}``)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(
            f"the variable {SETTINGS_VARIABLE} must be a JSON object of settings, "
            'e.g. {"retries": 3}'
        )
    return value


# -- one attempt -------------------------------------------------------------------------------
def graph(settings: Settings) -> list[Task]:
    """The pipeline's task graph as a run with these settings has it (checks or not)."""
    return api.pipeline_tasks(settings)


def find_task(settings: Settings, name: str) -> Task:
    """A task of the pipeline by name, check tasks included (whatever ``checks`` says now:
    a DAG built while checks were on still has them)."""
    for task in with_checks(build_tasks(), settings):
        if task.name == name:
            return task
    raise TaskError(f"no task named {name!r} in the pipeline; see `medallion run` for the names")


def run_task(
    ctx: RunContext, name: str, attempt: int, *, may_retry: bool
) -> tuple[TaskOutcome, Exception | None]:
    """Attempt number ``attempt`` of task ``name``, recorded in the audit store like an attempt
    of `medallion run`. Returns its outcome and the exception that failed it; the outcome's
    ``will_retry`` says whether the failure is transient and ``may_retry`` allowed another try
    (a failure that is not transient is final: retrying it cannot help)."""
    task = find_task(ctx.settings, name)
    with AuditStore(ctx.settings.audit_location) as audit:
        return attempt_once(task, ctx, [audit], attempt, may_retry=may_retry)


def alert_task_failure(ctx: RunContext, name: str, attempts: int, error: str) -> bool:
    """The failure alert of a task whose last attempt failed (a pipeline task, or a step of
    another DAG, named as it is); True if it was delivered."""
    now = time.time()
    try:
        task = find_task(ctx.settings, name)
    except TaskError:  # a step such as load_source or consume
        task = Task(name, "step", ctx.job, _not_a_pipeline_task)
    outcome = TaskOutcome(
        task,
        Status.FAILED,
        attempts=attempts,
        error=error,
        started_at=now,
        ended_at=now,
    )
    return alert_failure(Alerter.from_settings(ctx.settings), ctx, outcome) is not None


def _not_a_pipeline_task(_ctx: RunContext) -> TaskResult:
    raise TaskError("not a pipeline task")


# -- the end of a run --------------------------------------------------------------------------
def finish_run(ctx: RunContext, states: Mapping[str, str] | None = None) -> RunReport:
    """After every task of the run has ended: mark attempts of dead processes ``ABANDONED``,
    record each task the scheduler never started as ``SKIPPED`` (with the upstream tasks that
    did not succeed, as `medallion run` does), then write the report when ``report_on_run``.

    ``states`` are the scheduler's task states by task name, used only to explain a task that
    has no attempt although its upstream tasks succeeded.
    """
    tasks = graph(ctx.settings)
    with AuditStore(ctx.settings.audit_location) as audit:
        abandoned = audit.abandon_dead_attempts()
        if abandoned:
            log.warning("%d task attempt(s) of killed processes marked ABANDONED", abandoned)
        outcomes = _outcomes(audit, ctx.run_id, tasks)
        for task in order_tasks(tasks):
            if task.name in outcomes:
                continue
            outcome = _never_started(task, outcomes, (states or {}).get(task.name))
            audit.task_finished(ctx, outcome)
            outcomes[task.name] = outcome
    report = RunReport(ctx.run_id, [outcomes[t.name] for t in order_tasks(tasks)])
    if ctx.settings.report_on_run:
        write_report(ctx.settings, ctx.run_id)
    return report


def write_report(settings: Settings, run_id: str) -> Path | None:
    """The run's HTML report; a report that cannot be written is a warning, not a failure."""
    try:
        return api.report(settings, run_id)
    except (MedallionError, OSError) as exc:
        log.warning("could not write the report of run %s: %s", run_id, exc)
        return None


def send_summary(ctx: RunContext) -> RunReport:
    """The run's summary alert (and its failed or warned checks), as at the end of
    `medallion run`; the failure alerts went out with each failed task, so none is repeated.
    Returns the run as the audit log holds it."""
    tasks = graph(ctx.settings)
    with AuditStore(ctx.settings.audit_location) as audit:
        outcomes = _outcomes(audit, ctx.run_id, tasks)
        results = audit.dq_results(ctx.run_id)
    report = RunReport(ctx.run_id, [outcomes[t.name] for t in tasks if t.name in outcomes])
    alerter = Alerter.from_settings(ctx.settings)
    for failed in report.by_status(Status.FAILED):
        alerter.once(ctx.run_id, failed.task.name)  # alerted by the task's failure callback
    page = ctx.settings.reports_dir / report_name(ctx.run_id)
    alert_run_summary(
        alerter,
        ctx,
        report,
        [r["check_name"] for r in results if r["status"] == "fail"],
        [r["check_name"] for r in results if r["status"] == "warn"],
        report_url=str(page) if page.exists() else None,
    )
    return report


def outcome_line(report: RunReport) -> str:
    """``run X failed: 1 failed (bronze.orders), 12 skipped``."""
    failed = [o.task.name for o in report.outcomes if o.status in (Status.FAILED, Status.ABANDONED)]
    skipped = report.by_status(Status.SKIPPED)
    return (
        f"run {report.run_id} failed: {len(failed)} failed ({', '.join(failed) or 'none'}), "
        f"{len(skipped)} skipped; see the report"
    )


def _outcomes(audit: AuditStore, run_id: str, tasks: list[Task]) -> dict[str, TaskOutcome]:
    """The last attempt of each task of the run, as outcomes."""
    by_name = {t.name: t for t in tasks}
    last: dict[str, dict[str, Any]] = {}
    for row in audit.run_logs(run_id=run_id):
        if row["task"] in by_name:
            last[row["task"]] = row  # oldest first: the later attempt wins
    return {name: _as_outcome(by_name[name], row) for name, row in last.items()}


def _as_outcome(task: Task, row: Mapping[str, Any]) -> TaskOutcome:
    status = Status(row["status"])
    if status is Status.RUNNING:  # its process is gone, on another host: not a success
        status = Status.ABANDONED
    result = TaskResult(
        rows_read=row["rows_read"] or 0,
        rows_written=row["rows_written"] or 0,
        rows_quarantined=row["rows_quarantined"] or 0,
    )
    return TaskOutcome(
        task,
        status,
        attempts=row["attempt"],
        error=row["error"],
        result=result if status is Status.SUCCESS else None,
        started_at=_epoch(row["started_at"]),
        ended_at=_epoch(row["ended_at"] or row["started_at"]),
    )


def _epoch(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def _never_started(
    task: Task, outcomes: Mapping[str, TaskOutcome], state: str | None
) -> TaskOutcome:
    """A task with no attempt: skipped for a failed upstream task, else as the scheduler says
    (a task can fail before its attempt is recorded: settings it cannot read, say)."""
    bad = [u for u in task.upstream if outcomes[u].status is not Status.SUCCESS]
    now = time.time()
    status = Status.SKIPPED
    if bad:
        reason = f"upstream {', '.join(bad)} did not succeed"
    elif state == "failed":
        status, reason = Status.FAILED, "failed before its attempt was recorded; see its task log"
    else:
        reason = f"not run by the scheduler (state {state or 'none'}); see its task log"
    return TaskOutcome(task, status, error=reason, started_at=now, ended_at=now)
