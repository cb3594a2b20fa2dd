"""A run driven by a scheduler, one task attempt at a time (no Airflow here): the run id
mapping, the settings a scheduler hands over, one audited attempt, and the end of a run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medallion.audit import AuditStore
from medallion.errors import ConfigError, SourceError, TransientError
from medallion.orchestration import runs
from medallion.report.run import RunData
from medallion.report.sections import summary_section
from medallion.runner import RunContext, Status, Task, TaskOutcome, TaskResult
from medallion.settings import Settings, load_settings

AIRFLOW_RUN = "manual__2026-12-01T10:00:00.123456+00:00"


def test_a_plain_run_id_is_kept_and_another_one_made_plain_unique_and_short() -> None:
    assert runs.run_id_for("nightly-2026.12.01_a") == "nightly-2026.12.01_a"
    derived = runs.run_id_for(AIRFLOW_RUN)
    assert derived.startswith("manual__2026-12-01T10_00_00.123456_00_00-")
    assert derived == runs.run_id_for(AIRFLOW_RUN)  # every task of the run agrees
    assert runs.run_id_for("a:b") != runs.run_id_for("a_b") == "a_b"
    long = runs.run_id_for("x" * 250)
    assert len(long) == runs.RUN_ID_CHARS and long != runs.run_id_for("x" * 249)
    for odd in ("../../etc", "  ", "é/ü", "-lead"):
        assert len(runs.run_id_for(odd)) <= runs.RUN_ID_CHARS
        assert all(c.isalnum() or c in "._-" for c in runs.run_id_for(odd))
    with pytest.raises(ConfigError):
        runs.run_id_for("")


def test_connections_become_source_and_audit_urls() -> None:
    pg = runs.connection_url(
        "source_url", "postgres", "db.internal", login="me", password="p@ss:w/rd", port=5433,
        schema="olist", extra={"sslmode": "require"},
    )  # fmt: skip
    assert pg == "postgresql://me:p%40ss%3Aw%2Frd@db.internal:5433/olist?sslmode=require"
    assert runs.connection_url("audit_url", "postgresql", "h", schema="a") == "postgresql://h/a"
    assert runs.connection_url("source_url", "sqlite", "/data/olist.db") == "/data/olist.db"
    assert runs.connection_url("audit_url", "sqlite", "/data/a.db") == "sqlite:////data/a.db"
    with pytest.raises(ConfigError, match="postgres or sqlite"):
        runs.connection_url("source_url", "mysql", "h")
    # what the settings make of it: a connection is a flag, above the environment
    settings = load_settings(source_url=pg)
    assert "p@ss" not in str(settings.redacted())


def test_the_settings_variable_is_a_json_object() -> None:
    assert runs.variable_settings(None) == {}
    assert runs.variable_settings('{"retries": 3}') == {"retries": 3}
    for bad in ("[1]", "retries=3", '"x"'):
        with pytest.raises(ConfigError, match="JSON object"):
            runs.variable_settings(bad)


def context(tmp_path: Path, **settings: object) -> RunContext:
    return runs.scheduled_context(
        Settings(home=tmp_path, **settings), "medallion_pipeline", AIRFLOW_RUN,
        datetime(2026, 12, 1, 10, tzinfo=UTC),
    )  # fmt: skip


def test_an_attempt_is_audited_with_its_origin_and_a_lasting_failure_is_final(
    tmp_path: Path,
) -> None:
    ctx = context(tmp_path)
    outcome, error = runs.run_task(ctx, "bronze.orders", 1, may_retry=True)  # no source
    assert outcome.status is Status.FAILED and isinstance(error, SourceError)
    assert not outcome.will_retry  # retrying cannot create the source
    with AuditStore(ctx.settings.audit_location) as audit:
        (row,) = audit.run_logs(run_id=runs.run_id_for(AIRFLOW_RUN))
    assert (row["task"], row["status"], row["attempt"]) == ("bronze.orders", "FAILED", 1)
    origin = json.loads(row["metrics"])["origin"]
    assert origin == {"airflow_dag_id": "medallion_pipeline", "airflow_run_id": AIRFLOW_RUN}
    with pytest.raises(Exception, match="no task named"):
        runs.run_task(ctx, "bronze.nope", 1, may_retry=True)


def test_a_transient_failure_is_retried_only_while_tries_are_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(_ctx: RunContext) -> TaskResult:
        raise TransientError("the lease is held")

    monkeypatch.setattr(runs, "find_task", lambda _s, name: Task(name, "bronze", "t", busy))
    ctx = context(tmp_path)
    first, _ = runs.run_task(ctx, "bronze.t", 1, may_retry=True)
    last, error = runs.run_task(ctx, "bronze.t", 3, may_retry=False)
    assert first.will_retry and not last.will_retry and isinstance(error, TransientError)
    with AuditStore(ctx.settings.audit_location) as audit:
        rows = audit.run_logs(run_id=ctx.run_id)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "FAILED"), (3, "FAILED")]


def test_the_end_of_a_run_records_what_the_scheduler_never_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ok(_ctx: RunContext) -> TaskResult:
        return TaskResult(rows_written=1)

    graph = [
        Task("bronze.a", "bronze", "a", ok),
        Task("silver.a", "silver", "a", ok, ("bronze.a",)),
        Task("gold.a", "gold", "a", ok, ("silver.a",)),
        Task("bronze.b", "bronze", "b", ok),
        Task("silver.b", "silver", "b", ok, ("bronze.b",)),
    ]
    monkeypatch.setattr(runs, "graph", lambda _settings: graph)
    ctx = context(tmp_path, report_on_run=False)
    with AuditStore(ctx.settings.audit_location) as audit:
        for task, status in ((graph[0], Status.FAILED), (graph[3], Status.SUCCESS)):
            audit.task_started(ctx, task, 1)
            audit.task_finished(ctx, TaskOutcome(task, status, attempts=1, error="boom"))
    report = runs.finish_run(ctx, {"silver.b": "failed"})
    got = {o.task.name: (o.status, o.error) for o in report.outcomes}
    assert got["silver.a"] == (Status.SKIPPED, "upstream bronze.a did not succeed")
    assert got["gold.a"] == (Status.SKIPPED, "upstream silver.a did not succeed")
    assert got["silver.b"][0] is Status.FAILED and "task log" in str(got["silver.b"][1])
    assert got["bronze.b"][0] is Status.SUCCESS and not report.ok
    assert runs.outcome_line(report).endswith(
        "2 failed (bronze.a, silver.b), 2 skipped; see the report"
    )
    with AuditStore(ctx.settings.audit_location) as audit:
        rows = audit.run_logs(run_id=ctx.run_id)
    assert len(rows) == 5 and all("origin" in json.loads(r["metrics"]) for r in rows)
    runs.finish_run(ctx)  # a second time (a cleared report task) records nothing new
    with AuditStore(ctx.settings.audit_location) as audit:
        assert len(audit.run_logs(run_id=ctx.run_id)) == 5


def run_data(origin: dict[str, str] | None) -> RunData:
    metrics = json.dumps({"origin": origin} if origin else {})
    row = {"id": 1, "run_id": "r", "job": "medallion_pipeline", "task": "bronze.a",
           "layer": "bronze", "table_name": "a", "attempt": 1, "status": "SUCCESS",
           "started_at": datetime(2026, 12, 1), "ended_at": datetime(2026, 12, 1),
           "error": None, "metrics": metrics}  # fmt: skip
    return RunData("r", [row], None, [])


def test_the_report_links_the_airflow_run_when_a_base_url_is_set(tmp_path: Path) -> None:
    origin = {"airflow_dag_id": "medallion_pipeline", "airflow_run_id": AIRFLOW_RUN}
    linked = Settings(home=tmp_path, airflow_base_url="http://127.0.0.1:8080/")
    facts = {f.label: f for f in summary_section(linked, run_data(origin)).view.facts}
    assert facts["Airflow run"].href == (
        "http://127.0.0.1:8080/dags/medallion_pipeline/runs/"
        "manual__2026-12-01T10%3A00%3A00.123456%2B00%3A00"
    )
    plain = {
        f.label: f for f in summary_section(Settings(home=tmp_path), run_data(origin)).view.facts
    }
    assert plain["Airflow run"].href is None and AIRFLOW_RUN in plain["Airflow run"].text
    facts = {f.label for f in summary_section(linked, run_data(None)).view.facts}
    assert "Airflow run" not in facts  # a `medallion run`
    with pytest.raises(ConfigError, match="http"):
        load_settings(home=tmp_path, airflow_base_url="javascript:alert(1)")


def test_a_failed_step_of_another_dag_can_be_alerted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[object] = []
    monkeypatch.setattr(runs, "alert_failure", lambda _a, _ctx, outcome: sent.append(outcome))
    ctx = context(tmp_path)
    runs.alert_task_failure(ctx, "load_source", 2, "no such folder")
    runs.alert_task_failure(ctx, "silver.orders", 1, "boom")
    first, second = sent
    assert isinstance(first, TaskOutcome) and isinstance(second, TaskOutcome)
    assert (first.task.name, first.task.layer, first.attempts) == ("load_source", "step", 2)
    assert (second.task.layer, second.task.upstream[:1]) == ("silver", ("bronze.orders",))
