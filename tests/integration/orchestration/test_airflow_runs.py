"""The DAGs run in a real Airflow (`airflow dags test`, a fresh process on a SQLite metadata
database): the source set up and the pipeline run from an empty home, under the run id derived
from Airflow's; a failed task and a failed check skip in Airflow exactly the tasks `medallion
run` skips, and their failure alerts reach a webhook."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tests.support import put

from medallion import api
from medallion.orchestration.runs import run_id_for
from medallion.runner import Status
from medallion.settings import load_settings
from medallion.storage import Lake

if TYPE_CHECKING:
    from tests.integration.orchestration.conftest import Airflow, Webhook

BASE_URL = "http://airflow.example:8080"


def output(done: object) -> str:
    return f"{getattr(done, 'stdout', '')[-4000:]}\n{getattr(done, 'stderr', '')[-4000:]}"


def test_source_setup_then_pipeline_from_an_empty_home(airflow: Airflow, tmp_path: Path) -> None:
    home = tmp_path / "home"  # does not exist yet
    source = tmp_path / "elsewhere" / "olist.db"
    source.parent.mkdir()
    env = airflow.env(
        home,
        # the source through an Airflow Connection, the link through a setting
        AIRFLOW_CONN_MEDALLION_SOURCE=json.dumps({"conn_type": "sqlite", "host": str(source)}),
        MEDALLION_AIRFLOW_BASE_URL=BASE_URL,
    )
    setup = airflow.dags_test("olist_source_setup", env, {"scale": 0.02, "seed": 7})
    assert setup.returncode == 0, output(setup)
    assert source.stat().st_size > 0 and not (home / "source.db").exists()

    done = airflow.dags_test("medallion_pipeline", env)
    assert done.returncode == 0, output(done)
    airflow_run, state, tasks = airflow.last_run("medallion_pipeline")
    assert state == "success" and set(tasks.values()) == {"success"} and len(tasks) == 62

    run_id = run_id_for(airflow_run)
    settings = load_settings(home=home, source_url=str(source))
    rows = api.audit_log(settings, run_id=run_id)
    assert {r["run_id"] for r in rows} == {run_id} and len(rows) == 60
    assert {r["status"] for r in rows} == {"SUCCESS"}
    assert {r["job"] for r in rows} == {"medallion_pipeline"}
    origin = json.loads(rows[0]["metrics"])["origin"]
    assert origin == {"airflow_dag_id": "medallion_pipeline", "airflow_run_id": airflow_run}
    bronze = Lake(settings.lake_location).read("bronze", "orders", ["_run_id"])
    assert bronze is not None and set(bronze["_run_id"].to_pylist()) == {run_id}

    page = (home / "reports" / f"{run_id}.html").read_text()
    assert f"{BASE_URL}/dags/medallion_pipeline/runs/{quote(airflow_run, safe='')}" in page
    assert run_id in page


def test_failures_skip_the_same_downstream_tasks_as_medallion_run_and_alert(
    airflow: Airflow, tmp_path: Path, webhook: Webhook
) -> None:
    """A failed task (a source table dropped) and a failed `fail` check (a customer committed
    behind the watermark: Bronze misses it, the reconciliation fails) on two copies of one
    home: Airflow ends exactly the tasks `medallion run` skips `upstream_failed`, and the audit
    log holds the same statuses and errors for both runs."""
    home, twin = tmp_path / "airflow-home", tmp_path / "cli-home"
    settings = load_settings(home=home, report_on_run=False)
    api.init_source(settings)
    api.generate_source(settings, scale=0.02, seed=3)
    assert api.run(settings, ["bronze"]).ok
    late = {"customer_id": "f" * 32, "customer_unique_id": "e" * 32,
            "customer_zip_code_prefix": "01001", "customer_city": "sao paulo",
            "customer_state": "SP", "updated_at": datetime(2017, 1, 1)}  # fmt: skip
    put(settings, "customers", [late])
    with sqlite3.connect(home / "source.db") as db:
        db.execute("DROP TABLE olist_sellers_dataset")
    shutil.copytree(home, twin)
    env = airflow.env(home, MEDALLION_WEBHOOK_URL=webhook.url)

    done = airflow.dags_test("medallion_pipeline", env)
    assert done.returncode != 0 and "DagRun failed" in output(done)
    for trouble in ("could not read the task states", "could not send the failure alert"):
        assert trouble not in done.stdout + done.stderr
    cli = api.run(settings.model_copy(update={"home": twin}))

    airflow_run, state, tasks = airflow.last_run("medallion_pipeline")
    assert state == "failed" and tasks.pop("report") == "success"
    assert tasks.pop("summary") == "failed"  # so that the DAG run fails as `medallion run` does
    expected = {"SUCCESS": "success", "FAILED": "failed", "SKIPPED": "upstream_failed"}
    assert tasks == {o.task.name: expected[o.status.value] for o in cli.outcomes}
    failed = {t for t, s in tasks.items() if s == "failed"}
    assert failed == {"bronze.sellers", "check.bronze.customers"}
    assert (
        tasks["silver.customers"] == tasks["gold.feature_seller_reliability"] == "upstream_failed"
    )
    assert tasks["silver.products"] == "success"

    run_id = run_id_for(airflow_run)
    logged = {r["task"]: r for r in api.audit_log(settings, run_id=run_id)}
    assert {t: (r["status"], r["error"], r["attempt"]) for t, r in logged.items()} == {
        o.task.name: (o.status.value, o.error, o.attempts) for o in cli.outcomes
    }
    assert "olist_sellers_dataset" in logged["bronze.sellers"]["error"]
    assert logged["check.bronze.customers"]["error"].endswith("reconcile_with_source")

    alerts = {a["task"]: a for a in webhook.events("failure")}  # from the failure callback
    assert (
        len(webhook.events("failure")) == 2
        and set(alerts) == failed
        and {a["run_id"] for a in alerts.values()} == {run_id}
    )
    assert alerts["bronze.sellers"]["error"] == logged["bronze.sellers"]["error"]
    (summary,) = webhook.events("summary")
    assert summary["run_id"] == run_id and summary["ok"] is False
    assert summary["counts"]["failed"] == 2
    assert summary["counts"]["skipped"] == len(cli.by_status(Status.SKIPPED))
