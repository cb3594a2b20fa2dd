"""Incremental checks on a real pipeline's lake: a run with no change reads no table data for
its checks, and a defect brought in behind the pipeline's back (a duplicate key, a deleted row,
money off by a cent, a drift) fails the check that builds on its recorded state, exactly as a
full evaluation fails it."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from tests.support import put

from medallion import api
from medallion.audit import AuditStore
from medallion.catalog import source_table
from medallion.settings import Settings
from medallion.source.changes import ChangeSpec
from medallion.source.db import SourceDatabase, open_source
from medallion.storage import DeltaHandle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake built by one run (every check evaluated in full and its state recorded)."""
    home = tmp_path_factory.mktemp("incremental") / "home"
    s = Settings(home=home, retries=0)
    api.generate_source(s, scale=0.01, seed=11)
    report = api.run(s)
    assert report.ok, [(o.task.name, o.error) for o in report.outcomes if o.error]
    return home


@pytest.fixture
def settings(template: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Settings(home=home, retries=0)


def results(settings: Settings, *, full: bool = False) -> dict[str, dict[str, Any]]:
    _report, rows = api.check(settings, full=full)
    return {r["check_name"]: r for r in rows}


def checked(settings: Settings) -> dict[str, dict[str, Any]]:
    """The checks on their recorded state, after asserting that each verdict is the one a full
    evaluation of the same lake gives (on a copy: drift compares with the run before)."""
    twin = settings.home.parent / "twin"
    shutil.copytree(settings.home, twin)
    full = results(Settings(home=twin, retries=0), full=True)
    got = results(settings)
    assert verdicts(got) == verdicts(full)
    return got


def mode(row: dict[str, Any]) -> str:
    details = row["details"] or ""
    return next((m for m in ("incremental", "unchanged") if details.startswith(m)), "full")


def verdicts(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {k: (r["status"], r["failing_rows"], r["observed"]) for k, r in rows.items()}


def table(settings: Settings, layer: str, name: str) -> DeltaTable:
    return DeltaTable(f"{settings.lake_location}/{layer}/{name}")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts every read of table data: lake tables whole, filtered or as changes, and the
    source's rows."""
    counted: Counter[str] = Counter()

    def counting(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counted[f"{cls.__name__}.{name}"] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for name in ("read", "read_matching", "changes", "feed"):
        counting(DeltaHandle, name)
    for name in ("select", "select_batches"):
        counting(SourceDatabase, name)
    yield counted


def test_a_run_without_change_reads_no_table_data_for_its_checks(
    settings: Settings, reads: Counter[str]
) -> None:
    report = api.run(settings)
    assert report.ok
    with AuditStore(settings.audit_location) as audit:
        tasks = [r for r in audit.run_logs(run_id=report.run_id) if r["layer"] == "check"]
        rows = audit.dq_results(report.run_id)
    assert tasks and all(t["rows_read"] == 0 for t in tasks)
    assert {m for t in tasks for m in json.loads(t["metrics"])["modes"]} == {"unchanged"}
    assert {mode(r) for r in rows} == {"unchanged"}  # every check still reports, each run
    reads.clear()
    again = results(settings)
    assert {mode(r) for r in again.values()} == {"unchanged"}
    assert sum(reads.values()) == 0, reads


def test_a_change_batch_of_every_kind_checks_as_a_full_evaluation(settings: Settings) -> None:
    spec = ChangeSpec(
        seed=5,
        new_orders=12,
        status_updates=10,
        customer_moves=4,
        product_updates=3,
        seller_moves=2,
        soft_deletes=3,
        hard_deletes=3,
        late_updates=4,
        dirty=4,
    )
    api.change_source(settings, spec)
    assert api.run(settings.model_copy(update={"checks": False})).ok  # the layers only
    got = checked(settings)
    modes = Counter(mode(r) for r in got.values())
    assert modes["incremental"] >= 40 and modes["unchanged"] >= 10, modes
    assert {r["status"] for r in got.values()} <= {"pass", "warn"}


def test_check_full_reads_every_row_again(settings: Settings) -> None:
    full = results(settings, full=True)
    assert {mode(r) for r in full.values()} == {"full"}
    assert {r["status"] for r in full.values()} <= {"pass", "warn"}
    assert {mode(r) for r in results(settings).values()} == {"unchanged"}


def test_a_duplicate_key_appended_fails_uniqueness(settings: Settings) -> None:
    orders = table(settings, "silver", "orders")
    write_deltalake(orders, orders.to_pyarrow_table().slice(0, 1), mode="append")
    got = checked(settings)
    unique = got["silver.orders.order_id_unique"]
    assert (mode(unique), unique["status"], unique["failing_rows"]) == ("incremental", "fail", 1)


def test_a_row_deleted_behind_the_pipeline_fails_reconciliation(settings: Settings) -> None:
    orders = table(settings, "silver", "orders")
    gone = orders.to_pyarrow_table(columns=["order_id"])["order_id"][0].as_py()
    orders.delete(f"order_id = '{gone}'")
    got = checked(settings)
    silver = got["silver.orders.reconcile_with_bronze"]
    assert (mode(silver), silver["status"]) == ("incremental", "fail")
    assert json.loads(silver["sample"]) == [{"order_id": gone, "problem": "missing here"}]
    gold = got["gold.fact_order.reconcile_with_silver"]
    assert (mode(gold), gold["status"]) == ("incremental", "fail")
    assert json.loads(gold["sample"]) == [{"order_id": gone, "problem": "not live upstream"}]


def test_money_off_by_one_cent_fails_the_revenue_reconciliation(settings: Settings) -> None:
    payments = table(settings, "silver", "order_payments")
    key = payments.to_pyarrow_table(columns=["order_id"])["order_id"][0].as_py()
    payments.update(
        updates={"payment_value": "payment_value + 0.01"},
        predicate=f"order_id = '{key}' AND payment_sequential = 1",
    )
    got = checked(settings)
    total = got["gold.fact_payment.payment_value_sum_matches_silver"]
    assert (mode(total), total["status"]) == ("incremental", "fail")
    assert Decimal(json.loads(total["sample"])[0]["difference"]) == Decimal("-0.01")


def test_a_drift_of_live_rows_warns(settings: Settings) -> None:
    orders = table(settings, "silver", "orders")
    orders.update(updates={"is_deleted": "true"}, predicate="order_id < '9'")  # ~60 %
    got = checked(settings)
    drift = got["silver.orders.row_count_drift"]
    assert (mode(drift), drift["status"]) == ("incremental", "warn")
    live = orders.to_pyarrow_table(columns=["is_deleted"])["is_deleted"]
    assert drift["observed"] == pc.sum(pc.invert(live)).as_py()


def test_a_table_rewritten_without_change_feed_is_checked_in_full(settings: Settings) -> None:
    fact = table(settings, "gold", "fact_order")
    rows = fact.to_pyarrow_table()
    keep = pc.invert(pc.equal(rows["order_id"], rows["order_id"][0]))
    write_deltalake(fact, rows.filter(keep), mode="overwrite")
    got = checked(settings)
    lost = got["gold.fact_order.reconcile_with_silver"]
    assert (mode(lost), lost["status"], lost["failing_rows"]) == ("full", "fail", 1)
    drift = got["gold.fact_order.row_count_drift"]
    assert (mode(drift), drift["observed"]) == ("incremental", rows.num_rows - 1)  # the log


def _failed_run(settings: Settings) -> dict[str, dict[str, Any]]:
    """A run that must fail: its check results by name."""
    report = api.run(settings)
    assert not report.ok
    with AuditStore(settings.audit_location) as audit:
        return {r["check_name"]: r for r in audit.dq_results(report.run_id)}


def _check_tasks(settings: Settings, run_id: str) -> dict[str, dict[str, Any]]:
    with AuditStore(settings.audit_location) as audit:
        return {r["task"]: r for r in audit.run_logs(run_id=run_id) if r["layer"] == "check"}


def test_a_first_run_reconciles_bronze_with_the_source_rows_bronze_read(template: Path) -> None:
    """In full too (a first run has no recorded state), the source side of the checks is what
    the Bronze task computed from the rows it read: a check task reads Bronze, not the source
    again (it read both before: twice the table's rows)."""
    settings = Settings(home=template, retries=0)
    with AuditStore(settings.audit_location) as audit:
        (run_id,) = {r["run_id"] for r in audit.run_logs()}
        rows = {r["check_name"]: r for r in audit.dq_results(run_id)}
    tasks = _check_tasks(settings, run_id)
    with open_source(settings.source_location) as db:
        for name in ("orders", "order_items", "order_payments", "customers"):
            keys = rows[f"bronze.{name}.reconcile_with_source"]
            assert (mode(keys), keys["status"]) == ("full", "pass"), keys
            assert "the key fingerprints agree" in keys["details"]
            held = db.row_count(source_table(name))
            assert held <= tasks[f"check.bronze.{name}"]["rows_read"] < 1.5 * held, name
    revenue = rows["bronze.order_payments.payment_value_sum_matches_source"]
    assert (mode(revenue), revenue["status"]) == ("full", "pass"), revenue


def test_in_a_run_bronze_is_reconciled_with_the_source_rows_bronze_read(
    settings: Settings,
) -> None:
    """The checks against the source compare with the totals the Bronze task computed from
    the source rows it read (key fingerprints, the revenue, the newest update): the check tasks
    read no source row."""
    api.change_source(settings, ChangeSpec(seed=3, new_orders=8, status_updates=6, hard_deletes=2))
    report = api.run(settings)
    assert report.ok, [(o.task.name, o.error) for o in report.outcomes if o.error]
    with AuditStore(settings.audit_location) as audit:
        rows = {r["check_name"]: r for r in audit.dq_results(report.run_id)}
    for name in ("orders", "order_items", "order_payments"):
        keys = rows[f"bronze.{name}.reconcile_with_source"]
        assert (mode(keys), keys["status"]) == ("incremental", "pass"), keys
        assert "the key fingerprints agree" in keys["details"]
    revenue = rows["bronze.order_payments.payment_value_sum_matches_source"]
    assert (mode(revenue), revenue["status"]) == ("incremental", "pass"), revenue
    fresh = rows["silver.orders.freshness"]  # full, were the source's newest row read again
    assert mode(fresh) == "incremental" and fresh["observed"] is not None, fresh
    tasks = _check_tasks(settings, report.run_id)
    with AuditStore(settings.audit_location) as audit, open_source(settings.source_location) as db:
        for name in ("orders", "order_payments"):
            held = db.row_count(source_table(name))
            assert tasks[f"check.bronze.{name}"]["rows_read"] < held / 4, name
            # the version Bronze counted is the one a check alone reads from the source
            seen = audit.task_metrics(report.run_id, f"bronze.{name}") or {}
            assert seen["source_version"] == db.fingerprint(source_table(name))
    assert verdicts(checked(settings)) == verdicts(results(settings, full=True))


def test_a_source_row_bronze_missed_fails_the_run_and_is_named(settings: Settings) -> None:
    """A row that reached the source behind Bronze's watermark: the fingerprints differ, and
    the full evaluation that follows names the key."""
    late = {"customer_id": "f" * 32, "customer_unique_id": "e" * 32,
            "customer_zip_code_prefix": "01001", "customer_city": "sao paulo",
            "customer_state": "SP", "updated_at": datetime(2016, 1, 1)}  # fmt: skip
    put(settings, "customers", [late])
    api.change_source(settings, ChangeSpec(seed=4, new_orders=3))
    missed = _failed_run(settings)["bronze.customers.reconcile_with_source"]
    assert (mode(missed), missed["status"]) == ("full", "fail")
    assert json.loads(missed["sample"]) == [{"customer_id": "f" * 32, "problem": "missing here"}]


def test_a_bronze_row_lost_behind_the_pipeline_fails_in_the_next_run(settings: Settings) -> None:
    """Bronze loses a key's rows (a delete behind the pipeline): its kept fingerprint moves
    by that key, no longer agrees with the source's, and the full evaluation names it."""
    bronze = table(settings, "bronze", "orders")
    gone = bronze.to_pyarrow_table(columns=["order_id"])["order_id"][0].as_py()
    bronze.delete(f"order_id = '{gone}'")
    lost = _failed_run(settings)["bronze.orders.reconcile_with_source"]
    assert (mode(lost), lost["status"]) == ("full", "fail")
    assert json.loads(lost["sample"]) == [{"order_id": gone, "problem": "missing here"}]
