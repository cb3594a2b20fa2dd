"""medallion_streaming in a real Airflow: a bounded consume of the review topic (until idle)
whose micro-batches are audited under the run id derived from Airflow's."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medallion import api
from medallion.orchestration.runs import run_id_for
from medallion.settings import Settings

if TYPE_CHECKING:
    from tests.integration.orchestration.conftest import Airflow


@pytest.mark.slow
def test_the_streaming_dag_consumes_until_idle(
    airflow: Airflow, tmp_path: Path, kafka_broker: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    stream = {
        "MEDALLION_KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "MEDALLION_KAFKA_TOPIC": f"reviews-{tag}",
        "MEDALLION_KAFKA_GROUP_ID": f"g-{tag}",
    }
    settings = Settings(
        home=tmp_path / "home", kafka_bootstrap_servers=kafka_broker,
        kafka_topic=f"reviews-{tag}", kafka_group_id=f"g-{tag}",
    )  # fmt: skip
    api.init_source(settings)
    api.generate_source(settings, scale=0.01, seed=5)
    assert api.stream_produce(settings, count=300, seed=5).sent == 300

    done = airflow.dags_test(
        "medallion_streaming", airflow.env(settings.home, **stream), {"idle_timeout_s": 3}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    airflow_run, state, tasks = airflow.last_run("medallion_streaming")
    assert state == "success" and tasks == {"consume": "success"}
    rows = [r for r in api.audit_log(settings) if r["job"] == "medallion_stream"]
    assert {r["run_id"] for r in rows} == {run_id_for(airflow_run)}
    assert sum(r["rows_read"] or 0 for r in rows if not r["task"].endswith("#silver")) == 300
