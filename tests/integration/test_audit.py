"""The audit store on SQLite and on a real PostgreSQL (schema ``audit``)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from medallion import api
from medallion.audit import AuditStore
from medallion.errors import AuditError
from medallion.runner import RunContext, Status, Task, TaskResult, run_tasks
from medallion.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_one_row_per_attempt_with_metrics(tmp_path: Path, audit_url: str) -> None:
    settings = Settings(home=tmp_path, audit_url=audit_url, retries=1, retry_backoff_s=0)
    calls = {"n": 0}

    def flaky(_ctx: RunContext) -> TaskResult:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("dropped")
        return TaskResult(rows_read=3, rows_written=2, watermark_after="2018-01-01")

    store = AuditStore(audit_url).open()
    ctx = RunContext(run_id="run-1", settings=settings)
    tasks = [Task("bronze.x", "bronze", "x", flaky), Task("silver.x", "silver", "x",
             lambda _c: (_ for _ in ()).throw(ValueError("bad")), ("bronze.x",))]  # fmt: skip
    report = run_tasks(tasks, ctx, [store])
    rows = store.run_logs(run_id="run-1")
    store.close()
    assert [(r["task"], r["attempt"], r["status"]) for r in rows] == [
        ("bronze.x", 1, "FAILED"),
        ("bronze.x", 2, "SUCCESS"),
        ("silver.x", 1, "FAILED"),
    ]
    assert rows[1]["rows_written"] == 2 and rows[1]["watermark_after"] == "2018-01-01"
    assert rows[2]["error"] == "ValueError: bad"
    assert report.by_status(Status.FAILED)[0].task.name == "silver.x"
    if audit_url.startswith("postgresql"):
        with psycopg.connect(audit_url) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'audit'"
            ).fetchall()
        assert {t[0] for t in tables} >= {"run_logs", "dq_results", "leases"}


def test_an_unreachable_audit_store_fails_the_run_before_any_task(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, audit_url="postgresql://postgres@127.0.0.1:1/audit")
    api.init_source(settings)
    with pytest.raises(
        AuditError,
        match=re.escape("audit store postgresql://postgres@127.0.0.1:1/audit is unreachable"),
    ):
        api.run(settings)
    assert not (tmp_path / "lake").exists()  # nothing was extracted
