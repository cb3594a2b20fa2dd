"""Bronze end to end on a real source (SQLite and PostgreSQL) and a Delta lake folder."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from medallion.audit import AuditStore
from medallion.bronze.layer import app_id, from_micros
from medallion.catalog import SOURCE_TABLES, source_table
from medallion.errors import SourceBusyError, SourceError
from medallion.pipeline import build_tasks
from medallion.runner import RunContext, RunReport, Status, TaskResult, run_tasks
from medallion.settings import Settings
from medallion.source.db import SourceDatabase, open_source
from medallion.storage import Lake

CUSTOMERS = source_table("customers")
T0 = datetime(2018, 1, 1, 12, 0, 0)


def customers(*rows: tuple[str, str, datetime, datetime | None]) -> pa.Table:
    """Customer rows (id, city, updated_at, deleted_at) with fixed other columns."""
    ids, cities, upd, dele = zip(*rows, strict=True)
    n = len(ids)
    return pa.table(
        {
            "customer_id": list(ids),
            "customer_unique_id": [f"u{i}" for i in ids],
            "customer_zip_code_prefix": ["01037"] * n,
            "customer_city": list(cities),
            "customer_state": ["SP"] * n,
            "updated_at": pa.array(upd, pa.timestamp("us")),
            "deleted_at": pa.array(dele, pa.timestamp("us")),
        }
    )


def make_settings(tmp_path: Path, source_url: str, **extra: object) -> Settings:
    return Settings(home=tmp_path / "home", source_url=source_url, parallelism=2, **extra)


def run_bronze(
    settings: Settings, *, full_refresh: bool = False, tables=("customers",)
) -> RunReport:
    ctx = RunContext(
        run_id=f"r{datetime.now().timestamp()}", settings=settings, full_refresh=full_refresh
    )
    audit = AuditStore(settings.audit_location).open()
    try:
        return run_tasks(build_tasks(["bronze"], list(tables)), ctx, [audit])
    finally:
        audit.close()


def bronze_rows(settings: Settings, table: str = "customers") -> list[tuple]:
    dt = DeltaTable(f"{settings.lake_location}/bronze/{table}")
    data = dt.to_pyarrow_table().sort_by(
        [("_source_updated_at", "ascending"), ("customer_id", "ascending")]
    )
    return [
        (r["customer_id"], r["customer_city"], r["_source_updated_at"], r["_op"])
        for r in data.to_pylist()
    ]


def bronze_version(settings: Settings, table: str = "customers") -> int:
    return DeltaTable(f"{settings.lake_location}/bronze/{table}").version()


@pytest.fixture
def settings(tmp_path: Path, source_url: str) -> Settings:
    s = make_settings(tmp_path, source_url)
    s.home.mkdir(parents=True)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return s


def test_incremental_changes_deletes_and_replays(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.upsert(
            CUSTOMERS,
            customers(
                ("c1", "sao paulo", T0, None), ("c2", "rio", T0 + timedelta(seconds=10), None)
            ),
        )
    report = run_bronze(settings)
    assert report.ok, report.outcomes[0].error
    assert bronze_rows(settings) == [
        ("c1", "sao paulo", T0, "upsert"),
        ("c2", "rio", T0 + timedelta(seconds=10), "upsert"),
    ]
    dt = DeltaTable(f"{settings.lake_location}/bronze/customers")
    assert from_micros(dt.transaction_version(app_id(CUSTOMERS))) == T0 + timedelta(seconds=10)

    # no source change: no new Delta version, nothing written
    v0 = bronze_version(settings)
    report = run_bronze(settings)
    assert report.ok and report.outcomes[0].result.rows_written == 0
    assert bronze_version(settings) == v0

    # an update, a late commit stamped exactly at the old watermark, a soft delete
    t_wm = T0 + timedelta(seconds=10)
    with open_source(settings.source_location) as db:
        db.upsert(
            CUSTOMERS,
            customers(
                ("c1", "campinas", T0 + timedelta(days=1), None),
                ("c3", "santos", t_wm, None),
                ("c2", "rio", T0 + timedelta(days=2), T0 + timedelta(days=2)),
            ),
        )
    report = run_bronze(settings)
    assert report.ok, report.outcomes[0].error
    assert report.outcomes[0].result.rows_written == 3
    assert bronze_rows(settings)[2:] == [
        ("c3", "santos", t_wm, "upsert"),
        ("c1", "campinas", T0 + timedelta(days=1), "upsert"),
        ("c2", "rio", T0 + timedelta(days=2), "delete"),
    ]

    # a hard delete becomes a tombstone stamped with the source's newest updated_at
    with open_source(settings.source_location) as db:
        db.delete_rows(CUSTOMERS, pa.table({"customer_id": ["c3"]}))
    report = run_bronze(settings)
    assert report.ok and report.outcomes[0].result.metrics["hard_deletes"] == 1
    assert bronze_rows(settings)[-1] == ("c3", None, T0 + timedelta(days=2), "delete")

    # replays change nothing: incremental and full refresh alike
    v1 = bronze_version(settings)
    assert run_bronze(settings).ok
    full = run_bronze(settings, full_refresh=True)
    assert full.ok and full.outcomes[0].result.rows_written == 0
    assert full.outcomes[0].result.rows_read == 2  # c1 and c2; c3 is gone
    assert bronze_version(settings) == v1
    assert len(bronze_rows(settings)) == 6


def test_full_refresh_restores_missing_rows_without_duplicates(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None), ("c2", "b", T0, None)))
    assert run_bronze(settings).ok
    # a row committed far behind the watermark (outside the look-back) is only found by a refresh
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c9", "late", T0 - timedelta(days=1), None)))
    assert run_bronze(settings).outcomes[0].result.rows_written == 0
    report = run_bronze(settings, full_refresh=True)
    assert report.outcomes[0].result.rows_written == 1
    assert sorted(r[0] for r in bronze_rows(settings)) == ["c1", "c2", "c9"]


def test_audit_rows_mirror_the_commit(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    report = run_bronze(settings)
    audit = AuditStore(settings.audit_location).open()
    rows = audit.run_logs(run_id=report.run_id)
    audit.close()
    assert [(r["task"], r["status"], r["rows_written"], r["delta_version"]) for r in rows] == [
        ("bronze.customers", "SUCCESS", 1, 0)
    ]
    assert rows[0]["watermark_after"] == T0.isoformat()


def test_dropped_column_fails_only_that_table(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
        db.execute(f'ALTER TABLE {db.qualified(CUSTOMERS)} DROP COLUMN "customer_state"')
    report = run_bronze(settings, tables=("customers", "sellers"))
    by_name = {o.task.name: o for o in report.outcomes}
    assert by_name["bronze.customers"].status is Status.FAILED
    assert "lost column(s) customer_state" in by_name["bronze.customers"].error
    assert by_name["bronze.sellers"].status is Status.SUCCESS
    audit = AuditStore(settings.audit_location).open()
    failed = [r for r in audit.run_logs(run_id=report.run_id) if r["status"] == "FAILED"]
    audit.close()
    assert [r["task"] for r in failed] == ["bronze.customers"]


def test_new_source_column_evolves_into_bronze(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    assert run_bronze(settings).ok
    with open_source(settings.source_location) as db:
        db.execute(f'ALTER TABLE {db.qualified(CUSTOMERS)} ADD COLUMN "loyalty_tier" TEXT')
        db.upsert(CUSTOMERS, customers(("c2", "b", T0 + timedelta(hours=1), None)))
    report = run_bronze(settings)
    assert report.ok, report.outcomes[0].error
    assert report.outcomes[0].result.metrics["new_columns"] == ["loyalty_tier"]
    assert (
        "loyalty_tier"
        in DeltaTable(f"{settings.lake_location}/bronze/customers").schema().to_arrow().names
    )


def test_an_evolved_column_dropped_again_stays_in_bronze_as_null(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.execute(f'ALTER TABLE {db.qualified(CUSTOMERS)} ADD COLUMN "loyalty_tier" TEXT')
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    assert run_bronze(settings).ok
    with open_source(settings.source_location) as db:
        db.execute(f'ALTER TABLE {db.qualified(CUSTOMERS)} DROP COLUMN "loyalty_tier"')
        db.upsert(CUSTOMERS, customers(("c2", "b", T0 + timedelta(hours=1), None)))
    report = run_bronze(settings)
    assert report.ok, report.outcomes[0].error
    assert [r[0] for r in bronze_rows(settings)] == ["c1", "c2"]


@pytest.mark.parametrize(
    ("column", "new_type", "says"),
    [
        ("updated_at", "DATE", "updated_at changed type"),
        ("deleted_at", "DATE", "deleted_at changed type"),
    ],
)
def test_a_retyped_timestamp_fails_the_table_in_one_line(
    settings: Settings, column: str, new_type: str, says: str
) -> None:
    with open_source(settings.source_location) as db:
        if db.dialect != "postgresql":
            pytest.skip("SQLite keeps no column types to change")
        db.execute(f'ALTER TABLE {db.qualified(CUSTOMERS)} ALTER COLUMN "{column}" TYPE {new_type}')
    report = run_bronze(settings)
    assert says in report.outcomes[0].error and "\n" not in report.outcomes[0].error


def test_money_retyped_to_a_float_fails_instead_of_rounding(settings: Settings) -> None:
    payments = source_table("order_payments")
    with open_source(settings.source_location) as db:
        if db.dialect != "postgresql":
            pytest.skip("SQLite keeps no column types to change")
        db.execute(
            f'ALTER TABLE {db.qualified(payments)} ALTER COLUMN "payment_value" '
            "TYPE DOUBLE PRECISION"
        )
    report = run_bronze(settings, tables=("order_payments",))
    assert "payment_value changed type to double precision" in report.outcomes[0].error


@pytest.mark.parametrize("name", ["_op", "Customer_City", "_RUN_ID"])
def test_a_new_column_that_clashes_fails_in_one_line(settings: Settings, name: str) -> None:
    with open_source(settings.source_location) as db:
        try:
            db.execute(f'ALTER TABLE {db.qualified(CUSTOMERS)} ADD COLUMN "{name}" TEXT')
        except SourceError:
            pytest.skip(f"{db.dialect} itself refuses a second column named {name}")
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    error = run_bronze(settings).outcomes[0].error
    assert f"new source column olist_customers_dataset.{name} clashes" in error
    assert "Traceback" not in error and "\n" not in error


def test_missing_source_table_fails_clearly(settings: Settings) -> None:
    with open_source(settings.source_location) as db:
        db.execute(f"DROP TABLE {db.qualified(source_table('sellers'))}")
    report = run_bronze(settings, tables=("sellers",))
    assert report.outcomes[0].status is Status.FAILED
    assert "source table(s) missing: olist_sellers_dataset" in report.outcomes[0].error


CRASH_SCRIPT = """
import sys
from medallion.runner import RunContext, run_tasks
from medallion.pipeline import build_tasks
from medallion.errors import SourceError
from medallion.settings import Settings
s = Settings(home=sys.argv[1], source_url=sys.argv[2])
ctx = RunContext(run_id=sys.argv[3], settings=s)
report = run_tasks(build_tasks(["bronze"], ["customers"]), ctx)
print([o.error for o in report.outcomes], file=sys.stderr)
sys.exit(0 if report.ok else 1)
"""


def _crash_then_rerun(settings: Settings, point: str) -> None:
    """Bronze's customers extracted in a process that crashes at ``point``, then again."""
    args = [sys.executable, "-c", CRASH_SCRIPT, str(settings.home), settings.source_location]
    env = {**os.environ, "MEDALLION_CRASH_AT": point}
    crashed = subprocess.run([*args, "crash"], env=env, capture_output=True, check=False)
    assert crashed.returncode == 86, crashed.stderr.decode()[-2000:]
    again = subprocess.run([*args, "rerun"], capture_output=True, check=False)
    assert again.returncode == 0, again.stderr.decode()[-2000:]


@pytest.mark.parametrize("point", ["bronze.during_write", "bronze.after_commit"])
def test_crash_then_rerun_equals_clean_run(settings: Settings, point: str, tmp_path: Path) -> None:
    rows = [(f"c{i:04d}", "x", T0 + timedelta(seconds=i), None) for i in range(50)]
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*rows))
    _crash_then_rerun(settings, point)
    got = bronze_rows(settings)
    assert [r[0] for r in got] == [r[0] for r in rows]  # every row exactly once


@pytest.mark.parametrize("point", ["bronze.during_write", "bronze.after_commit"])
def test_a_crashed_incremental_extraction_rerun_equals_a_clean_one(
    settings: Settings, point: str
) -> None:
    """As above, for an extraction after the first (its window's rows, not a first load)."""
    first = [(f"c{i:04d}", "x", T0 + timedelta(seconds=i), None) for i in range(20)]
    later = [(f"d{i:04d}", "y", T0 + timedelta(hours=1, seconds=i), None) for i in range(30)]
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*first))
    assert run_bronze(settings).ok
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*later))
    _crash_then_rerun(settings, point)
    assert [r[0] for r in bronze_rows(settings)] == [r[0] for r in first + later]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@127.0.0.1/olist", "unsupported source URL scheme 'mysql'"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to source postgresql://"),
        ("{tmp}/nowhere/source.db", "does not exist; run `medallion source init`"),
    ],
)
def test_bad_source_gives_one_line_and_failed_audit_row(
    tmp_path: Path, url: str, expected: str
) -> None:
    s = make_settings(tmp_path, url.format(tmp=tmp_path), retries=0)
    report = run_bronze(s)
    outcome = report.outcomes[0]
    assert outcome.status is Status.FAILED
    assert expected in (outcome.error or "") and "\n" not in (outcome.error or "")
    audit = AuditStore(s.audit_location).open()
    rows = audit.run_logs(run_id=report.run_id)
    audit.close()
    assert [(r["status"], expected in r["error"]) for r in rows] == [("FAILED", True)]


def test_two_concurrent_runs_never_duplicate_rows(settings: Settings) -> None:
    rows = [(f"c{i:05d}", "x", T0 + timedelta(seconds=i), None) for i in range(3000)]
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*rows))
    args = [sys.executable, "-c", CRASH_SCRIPT, str(settings.home), settings.source_location]
    procs = [subprocess.Popen([*args, f"run{i}"], stderr=subprocess.PIPE) for i in range(2)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0], [p.stderr.read().decode()[-1000:] for p in procs if p.stderr]
    got = [r[0] for r in bronze_rows(settings)]
    assert len(got) == len(rows) and len(set(got)) == len(rows)


def test_a_first_load_reads_the_source_once_and_records_what_a_listing_would(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table's first extraction lists no keys before its rows: one read of the source
    gives the rows, the watermark, the checks' totals and the key fingerprint its commit
    records, each what a run that lists the keys first finds (a full refresh); the next run
    finds the fingerprint unchanged and compares no Bronze key."""
    rows = [(f"c{i:05d}", "x", T0 + timedelta(seconds=i), None) for i in range(3000)]
    rows += [(f"d{i}", "y", T0 + timedelta(hours=1), T0 + timedelta(hours=1)) for i in range(7)]
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*rows))
    listed: list[object] = []
    list_keys = SourceDatabase.changed_keys
    monkeypatch.setattr(
        SourceDatabase, "changed_keys", lambda db, *a: listed.append(a) or list_keys(db, *a)
    )
    first = run_bronze(settings).outcomes[0].result
    assert first is not None and listed == []
    got = [first.metrics[k] for k in ("candidates", "upserts", "soft_deletes")]
    assert (got, first.rows_written) == ([3007, 3000, 7], 3007)
    assert first.watermark_after == (T0 + timedelta(hours=1)).isoformat()
    assert len(bronze_rows(settings)) == 3007
    refreshed = run_bronze(settings, full_refresh=True).outcomes[0].result
    assert refreshed is not None and listed and refreshed.rows_written == 0
    for name in ("source_totals", "source_version"):
        assert refreshed.metrics[name] == first.metrics[name]
    unchanged = settings.model_copy(update={"skip_unchanged_source": False})
    after = run_bronze(unchanged).outcomes[0].result
    assert after is not None and after.rows_written == 0
    assert (
        after.metrics["delete_source_keys_read"],
        after.metrics["delete_bronze_keys_compared"],
    ) == (3007, 0)


def test_a_first_load_commits_its_rows_oldest_first(settings: Settings) -> None:
    """The source is read in its own order (no sort there); the commit holds the rows in
    ``updated_at`` order all the same, as every Bronze commit does (a window's read skips
    files by their statistics)."""
    rows = [(f"c{i:04d}", "x", T0 + timedelta(seconds=500 - i), None) for i in range(500)]
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*rows))
        stored = db.read_table(CUSTOMERS)["updated_at"].to_pylist()
    assert stored != sorted(stored)  # the table's own order is not the time order
    assert run_bronze(settings).ok
    written = DeltaTable(f"{settings.lake_location}/bronze/customers").to_pyarrow_table()
    assert written["_source_updated_at"].to_pylist() == sorted(stored)


def test_columns_that_start_with_nulls_keep_their_type(settings: Settings) -> None:
    """SQLite's driver infers types from the first rows; a nullable text column that is NULL
    for thousands of rows and then set must still come through (and stay text)."""
    rows = [(f"c{i:05d}", "x", T0 + timedelta(seconds=i), None) for i in range(3000)]
    rows.append(("c99999", "y", T0 + timedelta(hours=2), T0 + timedelta(hours=2)))
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(*rows))
        assert db.read_table(CUSTOMERS)["deleted_at"].null_count == 3000
    report = run_bronze(settings)
    assert report.ok, report.outcomes[0].error
    assert bronze_rows(settings)[-1] == ("c99999", "y", T0 + timedelta(hours=2), "delete")


HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding SQLite's write lock for ``seconds`` (like `source change`;
    SQLite's locks are per process, so a thread of this one would not do)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_busy_sqlite_source_and_audit_store_are_waited_for(tmp_path: Path) -> None:
    s = make_settings(tmp_path, "")
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    assert run_bronze(s).ok  # creates the audit store
    with open_source(s.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c2", "b", T0 + timedelta(hours=1), None)))
    holders = [_hold_lock(Path(s.source_location), 1.5), _hold_lock(s.home / "audit.db", 1.5)]
    report = run_bronze(s)
    for holder in holders:
        holder.wait()
    assert report.ok, [o.error for o in report.outcomes]
    assert [r[0] for r in bronze_rows(s)] == ["c1", "c2"]


def test_a_source_locked_for_too_long_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("medallion.source.db.BUSY_TIMEOUT_S", 0.2)
    s = make_settings(tmp_path, "", retries=0)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    holder = _hold_lock(Path(s.source_location), 2.0)
    try:
        with (
            pytest.raises(SourceBusyError, match="stayed locked by another writer"),
            open_source(s.source_location) as db,
        ):
            db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    finally:
        holder.wait()


# -- a source with no write since the last extraction -------------------------------------------
def bronze_result(settings: Settings, **kwargs: object) -> TaskResult:
    report = run_bronze(settings, **kwargs)  # type: ignore[arg-type]
    assert report.ok, report.outcomes[0].error
    result = report.outcomes[0].result
    assert result is not None
    return result


def test_a_source_without_writes_is_not_read_again(settings: Settings, source_url: str) -> None:
    """On SQLite the last extraction's result stands, the checks' source totals included; on
    PostgreSQL (no change token) every run reads the keys."""
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None), ("c2", "b", T0, None)))
    first = bronze_result(settings)
    second = bronze_result(settings)
    sqlite = not source_url.startswith("postgresql")
    assert second.metrics.get("source_unchanged", False) is sqlite
    assert ("delete_source_keys_read" in second.metrics) is not sqlite
    for name in ("source_totals", "source_version"):
        assert second.metrics[name] == first.metrics[name]
    assert (second.rows_read, second.rows_written) == (0 if sqlite else 2, 0)
    assert second.watermark_after == first.watermark_after == T0.isoformat()
    assert second.delta_version == first.delta_version


def test_every_write_after_a_skipped_run_is_seen(tmp_path: Path) -> None:
    """A hard delete and a row inserted behind the watermark keep the row count and the
    newest update: the source's version text stays, its change token does not."""
    settings = make_settings(tmp_path, str(tmp_path / "source.db"))
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None), ("c2", "b", T0, None)))
    first = bronze_result(settings)
    assert bronze_result(settings).metrics["source_unchanged"]
    with open_source(settings.source_location) as db:
        db.delete_rows(CUSTOMERS, pa.table({"customer_id": ["c1"]}))
        db.upsert(CUSTOMERS, customers(("c0", "late", T0 - timedelta(days=1), None)))
        assert db.fingerprint(CUSTOMERS) == first.metrics["source_version"]
    third = bronze_result(settings)
    assert "source_unchanged" not in third.metrics
    assert third.metrics["hard_deletes"] == 1
    assert ("c1", None, T0, "delete") in bronze_rows(settings)
    assert third.metrics["source_totals"] != first.metrics["source_totals"]  # c0 counted


def test_bronze_moved_or_a_full_refresh_reads_the_source(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, str(tmp_path / "source.db"))
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
        db.upsert(CUSTOMERS, customers(("c1", "a", T0, None)))
    bronze_result(settings)
    with open_source(settings.source_location) as db:  # a second file to compact
        db.upsert(CUSTOMERS, customers(("c2", "b", T0 + timedelta(days=1), None)))
    bronze_result(settings)
    assert bronze_result(settings).metrics["source_unchanged"]
    Lake.from_settings(settings).table("bronze", CUSTOMERS.name).compact(None, {})
    assert "source_unchanged" not in bronze_result(settings).metrics  # a version it never left
    assert bronze_result(settings).metrics["source_unchanged"]
    assert "source_unchanged" not in bronze_result(settings, full_refresh=True).metrics
    off = settings.model_copy(update={"skip_unchanged_source": False})
    assert "source_unchanged" not in bronze_result(off).metrics
