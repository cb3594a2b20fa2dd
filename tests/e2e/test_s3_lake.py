"""The lake on a real S3 server (SeaweedFS), the source and the audit store on PostgreSQL: the
same Gold as on a folder through full, incremental, crashed and rebuilt runs; bad endpoints,
credentials and buckets named in one line; no secret anywhere a user or an auditor looks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support import S3_SECRET, S3Server, run_ok

from medallion import api
from medallion.gold.model import GOLD_TABLES
from medallion.settings import Settings
from medallion.source.changes import ChangeSpec
from medallion.storage import Lake

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CHANGE = ChangeSpec(seed=5, new_orders=40, status_updates=40, customer_moves=10,
                    product_updates=10, seller_moves=5, soft_deletes=5, hard_deletes=5,
                    late_updates=8, dirty=5)  # fmt: skip


def settings_on(home: Path, pg_url: str, s3: S3Server | None, **extra: Any) -> Settings:
    lake = (
        {"lake_uri": f"s3://lake/{uuid.uuid4().hex[:10]}", "storage_options": s3.storage_options()}
        if s3
        else {}
    )
    return Settings(home=home, source_url=pg_url, audit_url=pg_url, retries=0, **lake, **extra)


def gold(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every Gold table's rows (lineage columns left out), sorted."""
    lake, out = Lake.from_settings(settings), {}
    for table in GOLD_TABLES:
        data = lake.read("gold", table.name)
        assert data is not None, table.name
        keep = [c for c in data.column_names if not c.startswith("_")]
        out[table.name] = sorted(
            (tuple(r.values()) for r in data.select(keep).to_pylist()), key=repr
        )
    return out


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "MEDALLION_HOME": str(settings.home), "MEDALLION_SOURCE_URL": settings.source_url,
        "MEDALLION_AUDIT_URL": settings.audit_url, "MEDALLION_LAKE_URI": settings.lake_uri,
        "MEDALLION_STORAGE_OPTIONS": _options_json(settings), "MEDALLION_RETRIES": "0", **env,
    }  # fmt: skip
    return subprocess.run([sys.executable, "-m", "medallion", *args], env=environment,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def _options_json(settings: Settings) -> str:
    import json

    return json.dumps({k: v.get_secret_value() for k, v in settings.storage_options.items()})


def test_gold_on_s3_equals_gold_on_a_folder(
    tmp_path: Path, pg_url: str, s3_server: S3Server
) -> None:
    on_s3 = settings_on(tmp_path / "s3", pg_url, s3_server)
    on_folder = settings_on(tmp_path / "folder", pg_url, None)
    api.generate_source(on_s3, scale=0.02, seed=9)
    for settings in (on_s3, on_folder):
        run_ok(settings)
    assert gold(on_s3) == gold(on_folder)
    api.change_source(on_s3, CHANGE)
    for settings in (on_s3, on_folder):
        run_ok(settings)
    expected = gold(on_folder)
    assert gold(on_s3) == expected
    run_ok(on_s3, full_refresh=True)  # a rebuild on S3 gives the same tables
    assert gold(on_s3) == expected
    again = run_ok(on_s3)  # nothing moved: nothing written
    assert (
        sum(o.result.rows_written for o in again.outcomes if o.result and o.task.layer != "check")
        == 0
    )


@pytest.fixture(scope="module")
def clean_gold(tmp_path_factory: pytest.TempPathFactory, pg_module_url: str) -> dict[str, Any]:
    """One small source (dirty rows included) and the Gold a clean run on a folder builds."""
    home = tmp_path_factory.mktemp("clean") / "home"
    on_folder = settings_on(home, pg_module_url, None, checks=False, report_on_run=False)
    api.generate_source(on_folder, scale=0.01, seed=4, dirty_rate=0.02)
    run_ok(on_folder)
    return gold(on_folder)


@pytest.mark.parametrize(
    "point", ["bronze.after_commit", "silver.after_quarantine", "silver.after_commit"]
)
def test_a_crash_on_s3_then_a_rerun_equals_a_clean_run(
    tmp_path: Path, pg_module_url: str, s3_server: S3Server, point: str, clean_gold: dict[str, Any]
) -> None:
    on_s3 = settings_on(tmp_path / "s3", pg_module_url, s3_server, checks=False,
                        report_on_run=False)  # fmt: skip
    crashed = cli(on_s3, "run", MEDALLION_CRASH_AT=point, MEDALLION_PARALLELISM="1")
    assert crashed.returncode == 86, crashed.stderr[-2000:]
    rerun = cli(on_s3, "run")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert gold(on_s3) == clean_gold


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"lake_uri": "s3://no-such-bucket/x"}, "the bucket 'no-such-bucket' does not exist"),
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "refused access"),
        (
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"},
            "cannot reach the object store at http://127.0.0.1:1",
        ),
    ],
)
def test_a_wrong_lake_is_one_line(
    tmp_path: Path, pg_url: str, s3_server: S3Server, change: dict[str, str], expected: str
) -> None:
    settings = settings_on(tmp_path / "home", pg_url, s3_server)
    api.init_source(settings)
    options = {k: v.get_secret_value() for k, v in settings.storage_options.items()}
    lake_uri = change.pop("lake_uri", settings.lake_uri)
    wrong = Settings(
        home=settings.home,
        source_url=pg_url,
        audit_url=pg_url,
        retries=0,
        lake_uri=lake_uri,
        storage_options={**options, **change},
    )
    env = {"MEDALLION_LAKE_URI": lake_uri}
    done = cli(wrong, "run", **env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert S3_SECRET not in done.stdout + done.stderr


def test_no_secret_in_output_logs_report_or_audit(
    tmp_path: Path, pg_url: str, s3_server: S3Server
) -> None:
    settings = settings_on(tmp_path / "home", pg_url, s3_server)
    api.generate_source(settings, scale=0.01, seed=2)
    outputs = [cli(settings, "--debug", "run"), cli(settings, "config", "show"),
               cli(settings, "check"), cli(settings, "audit")]  # fmt: skip
    for done in outputs:
        assert S3_SECRET not in done.stdout + done.stderr
    assert outputs[0].returncode == 0, outputs[0].stderr[-2000:]
    for page in (settings.home / "reports").glob("*.html"):
        assert S3_SECRET not in page.read_text()
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        for table in ("run_logs", "dq_results"):
            rows = conn.execute(sa.text(f"SELECT * FROM audit.{table}")).fetchall()
            assert rows and S3_SECRET not in repr(rows)
    engine.dispose()


def test_every_command_works_on_the_s3_lake(
    tmp_path: Path, pg_url: str, s3_server: S3Server, kafka_broker: str
) -> None:
    settings = settings_on(tmp_path / "home", pg_url, s3_server)
    api.generate_source(settings, scale=0.01, seed=6)
    assert cli(settings, "run").returncode == 0
    for args in (["check"], ["report"], ["query", "revenue_by_state"], ["quarantine"],
                 ["sql", "SELECT count(*) AS n FROM fact_order"], ["audit", "--last", "3"],
                 ["doctor"]):  # fmt: skip
        done = cli(settings, *args)
        assert done.returncode == 0, (args, done.stderr[-1000:])
    topic = f"s3-{uuid.uuid4().hex[:8]}"
    stream = {"MEDALLION_KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "MEDALLION_KAFKA_TOPIC": topic,
              "MEDALLION_KAFKA_GROUP_ID": topic}  # fmt: skip
    produced = cli(settings, "stream", "produce", "--count", "200", **stream)
    assert produced.returncode == 0, produced.stderr
    consumed = cli(settings, "stream", "consume", "--idle-timeout", "2", **stream)
    assert consumed.returncode == 0, consumed.stderr
    assert "consumed 200 message(s)" in consumed.stdout
    assert Lake.from_settings(settings).read("silver", "review_events") is not None
