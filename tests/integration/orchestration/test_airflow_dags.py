"""The DAG files import with no error, and medallion_pipeline is `medallion run`'s graph:
exactly its tasks and edges, its retries and back-off, a task group per layer, then the
report and summary steps. Importing medallion (or starting the CLI) never imports Airflow."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from medallion.checks import with_checks
from medallion.pipeline import build_tasks
from medallion.settings import load_settings

DAGS = Path(__file__).resolve().parents[3] / "dags"
DAG_IDS = ["medallion_pipeline", "medallion_streaming", "olist_source_setup"]


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Every DAG file of dags/, parsed as Airflow's DAG processor does."""
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDALLION_HOME", str(home))
    patch.setenv("MEDALLION_RETRIES", "3")
    patch.setenv("MEDALLION_RETRY_BACKOFF_S", "1.5")
    patch.setenv("MEDALLION_AIRFLOW_SCHEDULE", "0 3 * * *")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(DAGS))
    finally:
        patch.undo()
        root.handlers[:] = handlers  # Airflow's import configures the root logger
        root.setLevel(level)


def test_the_dag_files_import_with_no_error(bag: Any) -> None:
    assert bag.import_errors == {}
    assert sorted(bag.dags) == DAG_IDS


def test_the_pipeline_dag_has_exactly_the_tasks_and_edges_of_medallion_run(
    bag: Any, tmp_path: Path
) -> None:
    settings = load_settings(home=tmp_path)
    graph = with_checks(build_tasks(), settings)
    dag = bag.dags["medallion_pipeline"]
    ends = {"report", "summary"}
    assert set(dag.task_dict) - ends == {t.name for t in graph}
    for task in graph:
        op = dag.task_dict[task.name]
        assert op.upstream_task_ids == set(task.upstream), task.name
        assert op.task_group.group_id == task.layer
        assert op.medallion_task == task.name
    edges = {(u, t.name) for t in graph for u in t.upstream}
    airflow_edges = {(u, t) for t, op in dag.task_dict.items() for u in op.upstream_task_ids}
    assert airflow_edges - {e for e in airflow_edges if e[1] in ends} == edges
    report, summary = dag.task_dict["report"], dag.task_dict["summary"]
    assert report.upstream_task_ids == {t.name for t in graph}
    assert summary.upstream_task_ids == {"report"} and summary.downstream_task_ids == set()
    assert report.trigger_rule == summary.trigger_rule == "all_done"
    assert {g for g in dag.task_group.children if g not in ends} == {
        "bronze",
        "silver",
        "gold",
        "check",
    }


def test_retries_back_off_schedule_and_callbacks_come_from_the_settings(bag: Any) -> None:
    dag = bag.dags["medallion_pipeline"]
    op = dag.task_dict["silver.orders"]
    assert (op.retries, op.retry_delay, op.retry_exponential_backoff) == (
        3,
        timedelta(seconds=1.5),
        2.0,
    )
    assert op.on_failure_callback  # the project's failure alert
    assert (
        dag.task_dict["summary"].retries == 0 and not dag.task_dict["summary"].on_failure_callback
    )
    assert (dag.schedule, dag.catchup, dag.max_active_runs) == ("0 3 * * *", False, 1)
    assert dag.params["full_refresh"] is False
    setup = bag.dags["olist_source_setup"]
    assert setup.schedule is None and set(setup.params) >= {"scale", "seed", "csv_dir"}
    assert bag.dags["medallion_streaming"].max_active_runs == 1


def test_importing_medallion_or_starting_the_cli_never_imports_airflow() -> None:
    probe = (
        "import sys, medallion, medallion.api, medallion.cli, medallion.orchestration.runs, "
        "medallion.orchestration.standalone\n"
        "from typer.testing import CliRunner\n"
        "CliRunner().invoke(medallion.cli.app, ['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_without_checks_the_dag_is_the_layer_tasks_alone(bag: Any, tmp_path: Path) -> None:
    from medallion.orchestration.airflow import pipeline_dag

    settings = load_settings(home=tmp_path, checks=False, airflow_schedule="")
    dag = pipeline_dag(settings)
    graph = build_tasks()
    assert set(dag.task_dict) == {t.name for t in graph} | {"report", "summary"}
    assert all(dag.task_dict[t.name].upstream_task_ids == set(t.upstream) for t in graph)
    assert "check" not in dag.task_group.children and dag.schedule is None


def test_a_transient_failure_is_left_to_airflow_to_retry_and_another_fails_at_once(
    bag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from medallion.errors import SourceError, TransientError
    from medallion.orchestration import airflow as factory
    from medallion.runner import Status, Task, TaskOutcome

    tried: list[tuple[int, bool]] = []

    def attempt(_ctx: Any, name: str, attempt: int, *, may_retry: bool) -> Any:
        tried.append((attempt, may_retry))
        error = TransientError("busy") if name == "bronze.orders" else SourceError("gone")
        task = Task(name, "bronze", "orders", lambda _c: None)  # type: ignore[arg-type,return-value]
        outcome = TaskOutcome(task, Status.FAILED, attempt, error=str(error))
        outcome.will_retry = may_retry and isinstance(error, TransientError)
        return outcome, error

    monkeypatch.setattr(factory, "run_task", attempt)
    monkeypatch.setattr(factory, "task_settings", lambda: load_settings(home=tmp_path))

    class Run:
        dag_id, run_id, start_date, run_after = "medallion_pipeline", "manual__x", None, None

    class Ti:
        try_number, max_tries = 1, 2

    context: Any = {"ti": Ti(), "dag_run": Run(), "params": {}}
    op = bag.dags["medallion_pipeline"].task_dict["bronze.orders"]
    with pytest.raises(TransientError):  # Airflow retries it after its back-off
        op.execute(context)
    Ti.try_number = 3  # the last try: failed for good, the callback alerts
    with pytest.raises(AirflowFailException, match="busy"):
        op.execute(context)
    with pytest.raises(AirflowFailException, match="gone"):  # no retry can help
        bag.dags["medallion_pipeline"].task_dict["bronze.sellers"].execute(context)
    assert tried == [(1, True), (3, False), (3, False)]
