"""The Airflow 3 DAGs (``airflow.sdk``): the only module that imports Airflow.

- :func:`pipeline_dag` (``medallion_pipeline``) is `medallion run`'s task graph: one Airflow
  task per medallion task with the same name (``bronze.orders`` is task ``orders`` of the
  task group ``bronze``; the groups are bronze, silver, gold and check), the same upstream
  tasks, retries and doubling back-off, then ``report`` and ``summary`` (trigger rule
  all_done). Each task is one attempt of the medallion task under the run id derived from
  Airflow's (:func:`~medallion.orchestration.runs.run_id_for`), audited as under `medallion
  run`; a failure that retrying cannot help fails at once (no retry), so its downstream tasks
  end ``upstream_failed`` as `medallion run` skips them, and the failure callback sends the
  failure alert.
- :func:`source_setup_dag` (``olist_source_setup``): creates the source tables, then loads
  Kaggle CSVs or generates data (manual, with params).
- :func:`streaming_dag` (``medallion_streaming``): a bounded `medallion stream consume`.

Settings are resolved when a DAG file is parsed (the graph, retries and schedules) and again
in every task (medallion.toml, ``MEDALLION_*``, then the Airflow Variable
``medallion_settings`` and the Connections ``medallion_source`` / ``medallion_audit``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Connection, Context, Param, TaskGroup, Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from medallion import api
from medallion.errors import MedallionError
from medallion.orchestration.runs import (
    CONNECTION_SETTINGS,
    SETTINGS_VARIABLE,
    alert_task_failure,
    connection_url,
    finish_run,
    graph,
    outcome_line,
    run_id_for,
    run_task,
    scheduled_context,
    send_summary,
    variable_settings,
)
from medallion.runner import PIPELINE_JOB, STREAM_JOB, RunContext, describe_error, order_tasks
from medallion.settings import Settings, load_settings

log = logging.getLogger(__name__)

PIPELINE_DAG = "medallion_pipeline"
SOURCE_DAG = "olist_source_setup"
STREAM_DAG = "medallion_streaming"
LAYER_GROUPS = ("bronze", "silver", "gold", "check")
REPORT_TASK, SUMMARY_TASK = "report", "summary"
START = datetime(2026, 1, 1, tzinfo=UTC)  # no catch-up: only the next run counts
BACKOFF = 2.0  # each retry waits twice as long, as `medallion run` does
TAGS = ["medallion"]


# -- settings in a task ------------------------------------------------------------------------
def task_settings() -> Settings:
    """The settings of a running task: medallion.toml and ``MEDALLION_*`` as always, then the
    Airflow Variable ``medallion_settings`` (a JSON object of settings) and the Connections
    ``medallion_source`` and ``medallion_audit`` (source_url and audit_url) when defined."""
    overrides = variable_settings(Variable.get(SETTINGS_VARIABLE, default=None))
    for conn_id, setting in CONNECTION_SETTINGS.items():
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            continue
        overrides[setting] = connection_url(
            setting,
            conn.conn_type,
            conn.host,
            login=conn.login,
            password=conn.password,
            port=conn.port,
            schema=conn.schema,
            extra=conn.extra_dejson,
        )
    return load_settings(**overrides)


def run_context(context: Context, settings: Settings, job: str = PIPELINE_JOB) -> RunContext:
    """The medallion run context of the Airflow task's DAG run."""
    dag_run = context["dag_run"]
    return scheduled_context(
        settings,
        dag_run.dag_id,
        dag_run.run_id,
        dag_run.start_date or dag_run.run_after,
        full_refresh=bool(context["params"].get("full_refresh", False)),
        job=job,
    )


# -- operators ---------------------------------------------------------------------------------
class MedallionTaskOperator(BaseOperator):
    """One attempt of one medallion task (by name), audited; raises when it fails."""

    ui_color = "#f0e4c8"

    def __init__(self, *, medallion_task: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.medallion_task = medallion_task

    def execute(self, context: Context) -> None:
        ti = context["ti"]
        ctx = run_context(context, task_settings())
        outcome, error = run_task(
            ctx, self.medallion_task, ti.try_number, may_retry=ti.try_number <= ti.max_tries
        )
        if error is None:
            r = outcome.result
            if r is not None:
                log.info(
                    "%s: %d row(s) read, %d written, %d quarantined",
                    self.medallion_task,
                    r.rows_read,
                    r.rows_written,
                    r.rows_quarantined,
                )
            return
        if outcome.will_retry:  # transient: Airflow retries after its back-off
            raise error
        raise AirflowFailException(outcome.error) from error  # retrying cannot help


class StepOperator(BaseOperator):
    """A step of a DAG that is not a pipeline task: a function of the Airflow context."""

    def __init__(self, *, step: Callable[[Context], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step

    def execute(self, context: Context) -> None:
        try:
            self.step(context)
        except MedallionError as exc:  # a clear message, never worth a retry
            raise AirflowFailException(str(exc)) from exc


def alert_on_failure(job: str = PIPELINE_JOB) -> Callable[[Context], None]:
    """Airflow's failure callback for the tasks of ``job``: the project's failure alert. It
    never raises (a callback that fails only logs)."""

    def callback(context: Context) -> None:
        try:
            task = context["task"]
            name = getattr(task, "medallion_task", task.task_id)
            exc = context.get("exception")
            cause = exc.__cause__ if isinstance(exc, AirflowFailException) else exc
            error = describe_error(cause) if isinstance(cause, BaseException) else str(exc)
            ctx = run_context(context, task_settings(), job)
            alert_task_failure(ctx, name, context["ti"].try_number, error)
        except Exception as failed:
            log.error("could not send the failure alert: %s", describe_error(failed))

    return callback


def _finish(context: Context) -> None:
    """Record the tasks Airflow never started and write the report."""
    ctx = run_context(context, task_settings())
    states = _task_states(context)
    report = finish_run(ctx, states)
    log.info("run %s: %d task(s), ok=%s", ctx.run_id, len(report.outcomes), report.ok)


def _summary(context: Context) -> None:
    """The summary alert; fails (so the DAG run does) when the medallion run failed."""
    ctx = run_context(context, task_settings())
    report = send_summary(ctx)
    if not report.ok:
        raise AirflowFailException(outcome_line(report))


def _task_states(context: Context) -> dict[str, str]:
    """Airflow's state of every task of this DAG run (to explain a task with no attempt)."""
    try:
        dag_run = context["dag_run"]
        found = context["ti"].get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id])
        return {k: str(getattr(v, "value", v)) for k, v in found.get(dag_run.run_id, {}).items()}
    except Exception as exc:  # only an explanation: never fail the report for it
        log.warning("could not read the task states: %s", describe_error(exc))
        return {}


# -- the DAGs ----------------------------------------------------------------------------------
def pipeline_dag(settings: Settings | None = None, dag_id: str = PIPELINE_DAG) -> DAG:
    """`medallion run`'s task graph as an Airflow DAG (see the module's docstring)."""
    settings = settings or load_settings()
    tasks = order_tasks(graph(settings))
    default_args: dict[str, Any] = {
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_backoff_s),
        "retry_exponential_backoff": BACKOFF,
        "on_failure_callback": alert_on_failure(),
    }
    with DAG(
        dag_id,
        description="Source -> Bronze -> Silver -> Gold with checks, report and alerts",
        schedule=settings.airflow_schedule or None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        params={
            "full_refresh": Param(
                False, type="boolean", description="re-extract and rebuild everything"
            )
        },
        tags=TAGS,
        doc_md=__doc__,
    ) as dag:
        layers = {t.layer for t in tasks}
        groups = {
            name: TaskGroup(name, tooltip=f"the {name} tasks")
            for name in (*LAYER_GROUPS, *sorted(layers - set(LAYER_GROUPS)))
            if name in layers
        }
        ops: dict[str, BaseOperator] = {}
        for task in tasks:
            group = groups[task.layer]
            ops[task.name] = MedallionTaskOperator(
                task_id=task.name.removeprefix(f"{task.layer}."),
                medallion_task=task.name,
                task_group=group,
            )
        for task in tasks:
            for upstream in task.upstream:
                ops[upstream] >> ops[task.name]
        end = {"trigger_rule": "all_done", "retries": 0, "on_failure_callback": None}
        report = StepOperator(task_id=REPORT_TASK, step=_finish, **end)
        summary = StepOperator(task_id=SUMMARY_TASK, step=_summary, **end)
        list(ops.values()) >> report
        report >> summary
    return dag


def source_setup_dag(dag_id: str = SOURCE_DAG) -> DAG:
    """Create the source tables, then load Kaggle CSVs (``csv_dir``) or generate data."""
    with DAG(
        dag_id,
        description="Create the Olist source and load Kaggle CSVs or generate data",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args={"on_failure_callback": alert_on_failure(dag_id)},
        params={
            "scale": Param(0.1, type="number", exclusiveMinimum=0, description="of Kaggle size"),
            "seed": Param(42, type="integer", description="generated data, deterministic"),
            "dirty_rate": Param(0.0, type="number", minimum=0, maximum=1),
            "csv_dir": Param(
                "", type="string", description="load the Kaggle CSVs of this folder instead"
            ),
        },
        tags=TAGS,
    ) as dag:
        init = StepOperator(task_id="init_source", step=_init_source)
        load = StepOperator(task_id="load_source", step=_load_source)
        init >> load
    return dag


def _init_source(context: Context) -> None:
    log.info("source tables: %s", ", ".join(api.init_source(task_settings())))


def _load_source(context: Context) -> None:
    params = context["params"]
    settings = task_settings()
    if params.get("csv_dir"):
        for loaded in api.load_csv(settings, Path(params["csv_dir"])):
            log.info("%s", loaded)
        return
    summary = api.generate_source(
        settings, float(params["scale"]), int(params["seed"]), float(params["dirty_rate"])
    )
    log.info("generated %s (%d dirty rows)", summary.rows, summary.dirty_rows)


def streaming_dag(settings: Settings | None = None, dag_id: str = STREAM_DAG) -> DAG:
    """A bounded `medallion stream consume`: until ``idle_timeout_s`` pass without a message or
    ``max_messages`` are read; one run at a time (a group member per run)."""
    settings = settings or load_settings()
    with DAG(
        dag_id,
        description="Consume review events into the lake, exactly once, until idle",
        schedule=settings.airflow_stream_schedule or None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args={
            "retries": settings.retries,
            "retry_delay": timedelta(seconds=settings.retry_backoff_s),
            "retry_exponential_backoff": BACKOFF,
            "on_failure_callback": alert_on_failure(STREAM_JOB),
        },
        params={
            "idle_timeout_s": Param(30.0, type="number", minimum=0),
            "max_messages": Param(1_000_000, type="integer", minimum=1),
        },
        tags=TAGS,
    ) as dag:
        StepOperator(task_id="consume", step=_consume)
    return dag


def _consume(context: Context) -> None:
    params = context["params"]
    result = api.stream_consume(
        task_settings(),
        idle_timeout_s=float(params["idle_timeout_s"]),
        max_messages=int(params["max_messages"]),
        run_id=run_id_for(context["dag_run"].run_id),  # a retry continues the same run
    )
    log.info(
        "consumed %d message(s) in %d batch(es), %d quarantined; stopped by %s",
        result.messages,
        len(result.batches),
        result.quarantined,
        result.stopped_by,
    )


__all__ = [
    "LAYER_GROUPS",
    "PIPELINE_DAG",
    "REPORT_TASK",
    "SOURCE_DAG",
    "STREAM_DAG",
    "SUMMARY_TASK",
    "MedallionTaskOperator",
    "pipeline_dag",
    "source_setup_dag",
    "streaming_dag",
]
