"""The audit store on SQLite and on a real PostgreSQL (schema ``audit``)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from tests.check_support import CheckLake

from medallion import api
from medallion import audit as audit_module
from medallion.audit import AuditStore
from medallion.checks.kinds import Need, Rows, not_null, reconcile_sum
from medallion.errors import AuditError
from medallion.runner import RunContext, Status, Task, TaskResult, run_tasks
from medallion.settings import Settings

MONEY = pa.decimal128(12, 2)
ALL = Rows("u")


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


def test_the_scheduler_times_each_task_by_its_latest_success(
    tmp_path: Path, audit_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seconds of each task's latest successful attempt that did work: one after it
    with nothing to do, or a failed one, does not count (the latest success does when none
    did work); a task that never succeeded is absent; attempts older than the recent window
    are not read."""
    settings = Settings(home=tmp_path, audit_url=audit_url)
    naps = {"slow": 0.3, "idle": 0.3, "quick": 0.0}
    rows = {"slow": 5, "idle": 0, "quick": 5}

    def napping(name: str) -> Task:
        def fn(_ctx: RunContext) -> TaskResult:
            time.sleep(naps[name])
            if naps[name] < 0:
                raise ValueError("broken now")
            return TaskResult(rows_written=rows[name])

        return Task(name, "gold", name, fn)

    def failing(_ctx: RunContext) -> TaskResult:
        raise ValueError("never works")

    with AuditStore(audit_url) as store:
        tasks = [*map(napping, naps), Task("broken", "gold", "b", failing)]
        run_tasks(tasks, RunContext(run_id="run-1", settings=settings), [store])
        # the second run: slow is quick with nothing to do, idle (never any work) is quick,
        # quick fails
        naps |= {"slow": 0.0, "idle": 0.0, "quick": -1.0}
        rows |= {"slow": 0}
        run_tasks(tasks[:3], RunContext(run_id="run-2", settings=settings), [store])
        seconds = store.last_durations()
        assert set(seconds) == {"slow", "idle", "quick"}
        assert seconds["slow"] >= 0.3 and seconds["idle"] < 0.2 and seconds["quick"] < 0.2
        monkeypatch.setattr(audit_module, "RECENT_ATTEMPTS", 3)  # run-2's attempts only
        assert set(store.last_durations()) == {"slow", "idle"}


def test_the_stores_of_one_process_share_an_engine_that_never_makes_a_task_wait(
    audit_url: str,
) -> None:
    """Every task opens its own store; they share one engine (its dialect set up once), whose
    pool gives each of many tasks a connection at once (beyond the 15 a pool holds by
    default, where a task would wait 30 s)."""
    AuditStore(audit_url).open().close()  # the SQLite file made
    stores = [AuditStore(audit_url).open() for _ in range(20)]
    assert len({id(s.engine) for s in stores}) == 1
    held = [s.engine.connect() for s in stores]
    for conn in held:
        conn.close()


def test_a_sqlite_store_asks_for_its_tables_once_per_process(tmp_path: Path) -> None:
    """A run opens a store per task: the tables are looked for on the first open only (each
    look is a query per table), and a file made again is looked at anew."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url).open().close()  # the file made: from here its engine is shared
    looked: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "table_info" in statement or "CREATE TABLE" in statement:
            looked.append(statement)

    engine = AuditStore(url).engine
    sa.event.listen(engine, "before_cursor_execute", note)
    for _ in range(5):
        AuditStore(url).open().close()
    first = len(looked)
    assert first > 0
    for _ in range(5):
        AuditStore(url).open().close()
    assert len(looked) == first
    (tmp_path / "audit.db").unlink()
    store = AuditStore(url).open()  # another file: another engine, its tables made
    assert store.engine is not engine and store.run_logs() == []


def _busy_once(engine: sa.Engine, statement_part: str) -> list[str]:
    """Make the first statement of ``engine`` that holds ``statement_part`` fail as SQLite
    does when two processes start on one store (busy without waiting); returns what failed."""
    failed: list[str] = []

    def busy(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement_part in statement and not failed:
            failed.append(statement)
            raise sqlite3.OperationalError("database is locked")

    sa.event.listen(engine, "before_cursor_execute", busy)
    return failed


def test_a_store_busy_while_another_process_opens_it_is_opened_on_a_second_try(
    tmp_path: Path,
) -> None:
    """Two runs starting at once on a new SQLite store: one may find it busy (SQLite does
    not wait where waiting could deadlock); that is no reason to fail the run."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    failed = _busy_once(store.engine, "table_info")
    assert store.open().run_logs() == [] and failed


def test_a_lease_asked_of_a_busy_store_waits_for_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url).open().close()  # the file made: from here its engine is shared
    store = AuditStore(url).open()
    failed = _busy_once(store.engine, "FROM leases")
    with store.lease("lake/silver/orders", "run-1", wait_s=5):
        assert failed and store._lease_owner("lake/silver/orders") == "run-1"


def test_a_replaced_sqlite_store_is_written_to_its_new_file(tmp_path: Path) -> None:
    """A store whose file was deleted and made again gets a new engine: nothing is written to
    the file that is gone."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    settings = Settings(home=tmp_path, audit_url=url)
    noop = [Task("bronze.x", "bronze", "x", lambda _c: TaskResult())]
    for run in ("run-1", "run-2"):
        store = AuditStore(url).open()
        run_tasks(noop, RunContext(run_id=run, settings=settings), [store])
        store.close()
        (tmp_path / "audit.db").unlink()
        for extra in ("audit.db-wal", "audit.db-shm"):
            (tmp_path / extra).unlink(missing_ok=True)
    store = AuditStore(url).open()
    run_tasks(noop, RunContext(run_id="run-3", settings=settings), [store])
    assert [r["run_id"] for r in store.run_logs()] == ["run-3"]


def test_an_unreachable_audit_store_fails_the_run_before_any_task(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, audit_url="postgresql://postgres@127.0.0.1:1/audit")
    api.init_source(settings)
    with pytest.raises(
        AuditError,
        match=re.escape("audit store postgresql://postgres@127.0.0.1:1/audit is unreachable"),
    ):
        api.run(settings)
    assert not (tmp_path / "lake").exists()  # nothing was extracted


def test_check_states_keep_versions_results_and_exact_sums(tmp_path: Path, audit_url: str) -> None:
    lake = CheckLake(tmp_path, audit_url=audit_url)
    rows = pa.table({"k": ["a", "b"], "v": pa.array([Decimal("0.10"), None], MONEY)})
    lake.write("silver", "x", rows)
    checks = [
        not_null("silver", "x", "v"),
        reconcile_sum(
            "silver",
            "x",
            "v",
            upstream=Need("u", "silver", "x"),
            upstream_rows=ALL,
            here_rows=Rows("t"),
        ),
    ]
    lake.run(checks)
    lake.write("silver", "x", pa.table({"k": ["c"], "v": pa.array([Decimal("0.20")], MONEY)}))
    step = lake.run(checks)
    assert [step.mode(c.full_name) for c in checks] == ["incremental", "incremental"]
    assert step["silver.x.v_not_null"].failing_rows == 1  # kept from the first run
    with AuditStore(audit_url or lake.settings.audit_location) as store:
        states = store.check_states(c.full_name for c in checks)
    state = states["silver.x.v_sum_matches_silver"]
    assert (state["status"], state["mode"], state["runs_since_full"]) == ("pass", "incremental", 1)
    assert json.loads(state["versions"]) == {"silver.x": 1}
    assert json.loads(state["totals"]) == {"here": "0.30", "upstream": "0.30"}
    assert states["silver.x.v_not_null"]["status"] == "fail"
    assert lake.run(checks).mode("silver.x.v_not_null") == "unchanged"


INDEXES = {"ix_run_logs_unfinished", "ix_run_logs_job", "ix_dq_results_check_name"}


def test_a_store_made_without_the_indexes_gets_them_on_its_first_open(audit_url: str) -> None:
    """A store an earlier release made lacks the indexes a run's questions of a long log
    use: the first open of a process makes them (existing tables are left as they are)."""
    store = AuditStore(audit_url).open()
    schema = store.metadata.schema
    with store.engine.begin() as conn:
        for name in INDEXES:
            conn.execute(sa.text(f"DROP INDEX {schema + '.' if schema else ''}{name}"))
    audit_module._INDEXED.discard(store.engine)  # as a new process finds it
    audit_module._TABLES_MADE.discard(store.engine)
    AuditStore(audit_url).open()
    inspector = sa.inspect(store.engine)
    found = {
        i["name"]
        for table in ("run_logs", "dq_results")
        for i in inspector.get_indexes(table, schema=schema)
    }
    assert found >= INDEXES


def test_finding_a_killed_run_s_attempts_reads_only_the_unfinished_ones(tmp_path: Path) -> None:
    """Every run looks for attempts a killed run left RUNNING: SQLite answers from the
    index of unfinished attempts, not by reading the whole log (which grows every run)."""
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}").open()
    logs = store.t["run_logs"]
    question = sa.select(logs.c.id, logs.c.metrics).where(
        logs.c.status == Status.RUNNING.value, logs.c.ended_at.is_(None)
    )
    sql = str(question.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_run_logs_unfinished" in plan, plan
