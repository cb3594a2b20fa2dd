"""Data-quality checks: each kind passes on clean data, fails (or warns) on an injected
defect, and a failed ``fail`` check stops what is downstream of its table."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from medallion import api
from medallion.catalog import source_table
from medallion.checks import Check, Severity, declared_checks
from medallion.checks.runner import _schema_result
from medallion.errors import ConfigError
from medallion.runner import Status
from medallion.settings import Settings
from medallion.source.db import open_source


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("checks") / "home"
    s = Settings(home=home, retries=0)
    api.generate_source(s, scale=0.01, seed=9)
    report = api.run(s)
    assert report.ok, [(o.task.name, o.error) for o in report.outcomes if o.error]
    return home


@pytest.fixture
def settings(template: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Settings(home=home, retries=0)


def results(settings: Settings) -> dict[str, dict]:
    _report, rows = api.check(settings)
    return {r["check_name"]: r for r in rows}


def table_uri(settings: Settings, layer: str, table: str) -> str:
    return f"{settings.lake_location}/{layer}/{table}"


def test_clean_data_passes_every_fail_check(settings: Settings) -> None:
    got = results(settings)
    assert len(got) == len(declared_checks())
    failed = {k: v for k, v in got.items() if v["status"] == "fail"}
    assert failed == {}
    kinds = {c.kind for c in declared_checks()}
    assert kinds >= {
        "schema",
        "unique",
        "not_null",
        "rule",
        "relationships",
        "row_count_drift",
        "freshness",
        "reconciliation",
        "scd2",
    }


def test_drift_fires_on_a_drop_of_rows_and_reconciliation_on_a_loss(settings: Settings) -> None:
    results(settings)  # first measurement of every drift check
    orders = DeltaTable(table_uri(settings, "silver", "orders"))
    kept = orders.to_pyarrow_table()
    keep = pc.less(pc.utf8_slice_codeunits(kept["order_id"], 0, 1), "6")  # drop ~60 %
    write_deltalake(orders, kept.filter(keep), mode="overwrite")
    got = results(settings)
    drift = got["silver.orders.row_count_drift"]
    assert (drift["severity"], drift["status"]) == ("warn", "warn")
    assert "->" in drift["details"]
    loss = got["silver.orders.reconcile_with_bronze"]
    assert loss["status"] == "fail" and loss["failing_rows"] == kept.num_rows - pc.sum(keep).as_py()
    assert "missing here" in loss["sample"]
    assert got["gold.fact_order.reconcile_with_silver"]["status"] == "fail"  # ghosts downstream


def test_failed_check_skips_downstream_and_fails_the_run(settings: Settings) -> None:
    fact = DeltaTable(table_uri(settings, "gold", "fact_order"))
    write_deltalake(fact, fact.to_pyarrow_table().slice(0, 3), mode="append")  # duplicates
    report = api.run(settings)
    status = {o.task.name: o.status for o in report.outcomes}
    assert not report.ok
    assert status["check.gold.fact_order"] is Status.FAILED
    assert status["gold.feature_seller_reliability"] is Status.SKIPPED
    assert status["gold.fact_order_item"] is Status.SUCCESS  # not downstream of fact_order
    error = next(o.error for o in report.outcomes if o.task.name == "check.gold.fact_order")
    assert "order_id_unique" in error


def test_rule_and_relationship_checks_catch_bad_rows(settings: Settings) -> None:
    items = DeltaTable(table_uri(settings, "silver", "order_items"))
    row = items.to_pyarrow_table().slice(0, 1)
    bad = row.set_column(
        row.schema.get_field_index("price"), "price", pa.array([-1], row.schema.field("price").type)
    )
    bad = bad.set_column(
        bad.schema.get_field_index("order_item_id"),
        "order_item_id",
        pa.array([99], bad.schema.field("order_item_id").type),
    )
    write_deltalake(items, bad, mode="append")
    fact = DeltaTable(table_uri(settings, "gold", "fact_order_item"))
    orphan = fact.to_pyarrow_table().slice(0, 1)
    orphan = orphan.set_column(
        orphan.schema.get_field_index("customer_sk"),
        "customer_sk",
        pa.array([123456789], pa.int64()),
    )
    orphan = orphan.set_column(
        orphan.schema.get_field_index("order_item_id"),
        "order_item_id",
        pa.array([77], orphan.schema.field("order_item_id").type),
    )
    write_deltalake(fact, orphan, mode="append")
    got = results(settings)
    assert got["silver.order_items.price_non_negative"]["status"] == "fail"
    assert got["silver.order_items.price_non_negative"]["failing_rows"] == 1
    rel = got["gold.fact_order_item.customer_sk_in_dim_customer"]
    assert (rel["status"], rel["failing_rows"]) == ("fail", 1)
    warn = got["silver.products.category_present"]
    assert warn["severity"] == "warn" and warn["status"] in {"pass", "warn"}


def test_freshness_warns_when_a_layer_trails_the_source(settings: Settings) -> None:
    table = source_table("sellers")
    with open_source(settings.source_location) as db:
        sellers = db.read_table(table)
        row = sellers.slice(0, 1)
        newest = pc.max(sellers["updated_at"]).as_py()
        later = pa.array([newest + timedelta(days=3)], pa.timestamp("us"))
        moved = row.set_column(
            row.schema.get_field_index("seller_city"), "seller_city", pa.array(["santos"])
        )
        db.upsert(
            table, moved.set_column(row.schema.get_field_index("updated_at"), "updated_at", later)
        )
    got = results(settings)
    fresh = got["silver.sellers.freshness"]
    assert fresh["status"] == "warn" and fresh["observed"] >= 3 * 86400 - 1
    reconcile = got["bronze.sellers.reconcile_with_source"]
    assert reconcile["status"] == "pass"  # the key set is unchanged: only the row moved


def test_schema_contract_names_missing_and_retyped_columns() -> None:
    expected = pa.schema([("a", pa.string()), ("b", pa.int64()), ("c", pa.float64())])
    check = Check(
        "schema_contract", "silver", "x", "schema", Severity.FAIL, expected_schema=expected
    )
    result = _schema_result(check, pa.schema([("a", pa.large_string()), ("b", pa.string())]))
    assert result.status == "fail" and result.failing_rows == 2
    assert result.sample == [
        {"column": "b", "problem": "type string != int64"},
        {"column": "c", "problem": "missing"},
    ]
    assert _schema_result(check, expected).status == "pass"


def test_a_missing_table_fails_unless_its_inputs_are_empty(settings: Settings) -> None:
    removed = (("bronze", "sellers"), ("silver", "orders"), ("gold", "dim_product"))
    for layer, table in removed:
        shutil.rmtree(Path(table_uri(settings, layer, table)))
    got = results(settings)
    for layer, table in removed:
        mine = [r for r in got.values() if (r["layer"], r["table_name"]) == (layer, table)]
        assert mine, (layer, table)
        for row in mine:
            assert row["status"] == "fail", row["check_name"]
            assert "does not exist although its inputs hold" in row["details"], row["check_name"]
    # streamed reviews are an optional input: fact_review stands without them
    assert {r["status"] for r in got.values() if r["table_name"] == "fact_review"} == {"pass"}


def test_checks_on_a_lake_that_is_not_there_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to check"):
        api.check(Settings(home=tmp_path / "misspelt", retries=0))
