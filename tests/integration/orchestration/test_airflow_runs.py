"""The DAGs run in a real Airflow (`airflow dags test`, a fresh process on a SQLite metadata
database): the source set up and the pipeline run from an empty home, under the run id derived
from Airflow's; a failed task skips its downstream tasks in Airflow as in `medallion run` and
its failure alert reaches a webhook."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from medallion import api
from medallion.orchestration.runs import run_id_for
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


def test_a_failed_task_skips_its_downstream_tasks_and_alerts(
    airflow: Airflow, tmp_path: Path, webhook: Webhook
) -> None:
    home = tmp_path / "home"
    settings = load_settings(home=home)
    api.init_source(settings)
    api.generate_source(settings, scale=0.02, seed=3)
    with sqlite3.connect(home / "source.db") as db:  # a source table gone: Bronze cannot read it
        db.execute("DROP TABLE olist_sellers_dataset")
    env = airflow.env(home, MEDALLION_WEBHOOK_URL=webhook.url, MEDALLION_RETRY_BACKOFF_S="0")

    done = airflow.dags_test("medallion_pipeline", env)
    assert done.returncode != 0 and "DagRun failed" in output(done)
    airflow_run, state, tasks = airflow.last_run("medallion_pipeline")
    assert state == "failed"
    assert tasks["bronze.sellers"] == "failed"
    downstream = [
        "check.bronze.sellers", "silver.sellers", "silver.order_items", "gold.dim_seller",
        "gold.fact_order_item", "gold.feature_seller_reliability",
    ]  # fmt: skip
    assert {tasks[t] for t in downstream} == {"upstream_failed"}
    assert tasks["silver.customers"] == tasks["gold.dim_customer"] == "success"
    assert tasks["report"] == "success" and tasks["summary"] == "failed"

    run_id = run_id_for(airflow_run)
    final = {r["task"]: r for r in api.audit_log(settings, run_id=run_id)}
    assert final["bronze.sellers"]["status"] == "FAILED" and final["bronze.sellers"]["attempt"] == 1
    assert "olist_sellers_dataset" in final["bronze.sellers"]["error"]
    assert final["silver.sellers"]["status"] == "SKIPPED"
    assert (
        final["silver.sellers"]["error"]
        == "upstream bronze.sellers, check.bronze.sellers did not succeed"
    )
    assert {r["status"] for t, r in final.items() if tasks[t] == "upstream_failed"} == {"SKIPPED"}
    assert len(final) == 60

    (failure,) = webhook.events("failure")  # one alert, from Airflow's failure callback
    assert (failure["task"], failure["run_id"]) == ("bronze.sellers", run_id)
    assert "olist_sellers_dataset" in failure["error"]
    (summary,) = webhook.events("summary")
    assert summary["run_id"] == run_id and summary["ok"] is False
    assert summary["counts"]["failed"] == 1 and summary["counts"]["skipped"] == len(
        [t for t, s in tasks.items() if s == "upstream_failed"]
    )
    assert (home / "reports" / f"{run_id}.html").exists()
