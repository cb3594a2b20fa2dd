"""Gold end to end: exact money, unknown members, reruns and rebuilds, SCD2 invariants on
generated data under several change batches. The hand-written point-in-time cases are data, in
tests/data/scenarios (run by test_scenarios.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.support import put, read, run_ok

from medallion import api
from medallion.catalog import SOURCE_TABLES
from medallion.engine import default_engine
from medallion.gold.model import GOLD_TABLES, Dimension
from medallion.runner import RunReport
from medallion.settings import Settings
from medallion.source.changes import ChangeSpec
from medallion.source.db import open_source
from medallion.storage import DeltaHandle, Lake

T0 = datetime(2018, 3, 1, 9, 0, 0)
H = "0123456789abcdef"


def hx(prefix: str) -> str:
    return (prefix + H * 4)[:32]


def gold(settings: Settings, name: str) -> pa.Table:
    return read(settings, "gold", name)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Scale 0.02 with two change batches, each followed by an incremental run."""
    s = Settings(home=tmp_path_factory.mktemp("gold") / "home", retries=0)
    api.generate_source(s, scale=0.02, seed=21)
    run_ok(s)
    for seed in (1, 2):
        api.change_source(
            s,
            ChangeSpec(
                seed=seed,
                new_orders=30,
                status_updates=30,
                customer_moves=25,
                product_updates=20,
                seller_moves=10,
                soft_deletes=5,
                hard_deletes=5,
                late_updates=5,
            ),
        )
        run_ok(s)
    return s


def test_scd2_invariants_hold_after_change_batches(generated: Settings) -> None:
    engine = default_engine()
    for name, key in (
        ("dim_customer", "customer_unique_id"),
        ("dim_product", "product_id"),
        ("dim_seller", "seller_id"),
    ):
        dim = gold(generated, name)
        bad = engine.query(
            f"""
            WITH v AS (
                SELECT *, lag(valid_to) OVER w AS prev_to, lag(row_hash) OVER w AS prev_hash,
                    lag(is_deleted) OVER w AS prev_deleted, row_number() OVER w AS n
                FROM d WHERE {key} <> 'unknown'
                WINDOW w AS (PARTITION BY {key} ORDER BY valid_from, valid_to)
            )
            SELECT
                count(*) FILTER (WHERE n = 1 AND valid_from <> TIMESTAMP '1900-01-01') AS bad_start,
                count(*) FILTER (WHERE n > 1 AND NOT prev_deleted AND prev_to <> valid_from)
                    AS gaps_or_overlaps,
                count(*) FILTER (WHERE n > 1 AND prev_to > valid_from) AS overlaps,
                count(*) FILTER (WHERE n > 1 AND NOT prev_deleted AND prev_hash = row_hash
                    AND valid_from < valid_to) AS unchanged_versions,
                count(*) FILTER (WHERE valid_from > valid_to) AS inverted
            FROM v
            """,
            {"d": dim},
        ).to_pylist()[0]
        assert bad == dict.fromkeys(bad, 0), (name, bad)
        current = engine.query(
            f"SELECT {key}, count(*) FILTER (WHERE is_current) AS cur, "
            f"bool_or(is_deleted AND valid_to = max_to) AS deleted_last FROM "
            f"(SELECT *, max(valid_to) OVER (PARTITION BY {key}) AS max_to FROM d) "
            f"GROUP BY {key} HAVING cur <> CASE WHEN deleted_last THEN 0 ELSE 1 END",
            {"d": dim},
        )
        assert current.num_rows == 0, (name, current.to_pylist()[:3])
        assert pc.count_distinct(dim[name.removeprefix("dim_") + "_sk"]).as_py() == dim.num_rows


def test_facts_have_keys_and_exact_money(generated: Settings) -> None:
    lake = Lake(generated.lake_location)
    items = gold(generated, "fact_order_item")
    silver_items = lake.read("silver", "order_items")
    live = silver_items.filter(pc.invert(silver_items["is_deleted"]))
    assert pc.sum(items["price"]).as_py() == pc.sum(live["price"]).as_py()
    assert pc.sum(items["freight_value"]).as_py() == pc.sum(live["freight_value"]).as_py()
    payments = gold(generated, "fact_payment")
    silver_pay = lake.read("silver", "order_payments")
    live_pay = silver_pay.filter(pc.invert(silver_pay["is_deleted"]))
    assert pc.sum(payments["payment_value"]).as_py() == pc.sum(live_pay["payment_value"]).as_py()
    for name in ("fact_order_item", "fact_order", "fact_payment", "fact_review"):
        fact = gold(generated, name)
        for col in fact.column_names:
            if col.endswith("_sk") or col.endswith("_date_key"):
                assert fact[col].null_count == 0, (name, col)
    orders = gold(generated, "fact_order")
    assert pc.sum(orders["items_value"]).as_py() == pc.sum(items["price"]).as_py()
    dates = set(gold(generated, "dim_date")["date_key"].to_pylist())
    for name, col in (
        ("fact_order", "purchase_date_key"),
        ("fact_order_item", "shipping_limit_date_key"),
    ):
        assert set(gold(generated, name)[col].to_pylist()) <= dates, (name, col)


def test_unknown_member_is_used_and_reported(generated: Settings) -> None:
    audit = api.audit_log(generated, last=200)
    facts = [r for r in audit if r["task"] == "gold.fact_order_item" and r["status"] == "SUCCESS"]
    assert facts and "unknown_members" in (facts[-1]["metrics"] or "")


def snapshot(settings: Settings) -> dict[str, set[tuple]]:
    out = {}
    for g in GOLD_TABLES:
        data = gold(settings, g.name)
        out[g.name] = {tuple(r.values()) for r in data.to_pylist()}
    return out


def test_rerun_writes_nothing_and_full_rebuild_is_identical(generated: Settings) -> None:
    before = snapshot(generated)
    versions = {g.name: Lake(generated.lake_location).version("gold", g.name) for g in GOLD_TABLES}
    report = api.run(generated)
    assert report.ok and sum(o.result.rows_written for o in report.outcomes if o.result) == 0
    assert versions == {
        g.name: Lake(generated.lake_location).version("gold", g.name) for g in GOLD_TABLES
    }
    report = api.run(generated, ["gold"], full_refresh=True)
    assert report.ok, [(o.task.name, o.error) for o in report.outcomes if o.error]
    after = snapshot(generated)
    for name in before:
        assert after[name] == before[name], name


def test_a_dimension_writes_only_the_entities_it_folded_again(tmp_path: Path) -> None:
    """A customer moves: dim_customer folds that person again and writes only their rows (a
    version closed, one opened); a move of the locations rewrites every row's lat/lng."""
    s, customers = _built(tmp_path, "customers", seed=7)
    person = customers.sort_by("customer_id").slice(0, 1).to_pylist()[0]
    later = pc.max(customers["updated_at"]).as_py() + timedelta(hours=1)
    moved = {"customer_zip_code_prefix": "99990", "customer_city": "chui", "updated_at": later}
    put(s, "customers", [person | moved])
    dim = _last_gold(run_ok(s), "dim_customer")
    assert (dim["keys_rebuilt"], dim["inserted"], dim["updated"], dim["deleted"]) == (1, 1, 1, 0)
    rows = gold(s, "dim_customer").filter(
        pc.equal(pc.field("customer_unique_id"), person["customer_unique_id"])
    )
    assert sorted(rows["zip_code_prefix"].to_pylist())[-1] == "99990"
    with open_source(s.source_location) as db:
        places = db.read_table(next(t for t in SOURCE_TABLES if t.name == "geolocation"))
    place = places.filter(pc.equal(places["geolocation_zip_code_prefix"], "99990"))
    assert place.num_rows == 0  # a new place: the moved person's zip gets its lat/lng
    here = places.slice(0, 1).to_pylist()[0] | {"geolocation_zip_code_prefix": "99990"}
    put(s, "geolocation", [here | {"geolocation_lat": -33.7, "updated_at": later}])
    dim = _last_gold(run_ok(s), "dim_customer")
    assert "keys_rebuilt" not in dim and dim["updated"] >= 1
    rows = gold(s, "dim_customer").filter(pc.equal(pc.field("zip_code_prefix"), "99990"))
    assert rows["lat"].to_pylist() == [-33.7]
    before = gold(s, "dim_customer").sort_by("customer_sk")
    assert api.run(s, ["gold"], full_refresh=True).ok
    assert gold(s, "dim_customer").sort_by("customer_sk").equals(before)


def test_an_out_of_order_change_lands_between_repeated_states(tmp_path: Path) -> None:
    """A person at address A (t1), ordering again at A (t3), and a late row saying they were at B
    at t2: history must read A, B, A, whatever order the rows arrived in."""
    s = Settings(home=tmp_path / "home", retries=0, checks=False, report_on_run=False)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    person = hx("99")
    t1, t2, t3 = T0, T0 + timedelta(days=5), T0 + timedelta(days=10)

    def row(cid: str, state: str, at: datetime) -> dict:
        zip_code = "01037" if state == "SP" else "20040"
        return {"customer_id": cid, "customer_unique_id": person, "customer_city": "x",
                "customer_zip_code_prefix": zip_code, "customer_state": state,
                "updated_at": at}  # fmt: skip

    put(s, "customers", [row(hx("c1"), "SP", t1), row(hx("c3"), "SP", t3)])
    run_ok(s)
    put(s, "customers", [row(hx("c2"), "RJ", t2)])  # far behind the watermark: a late row
    assert api.run(s, ["bronze"], full_refresh=True).ok  # the full refresh picks it up
    run_ok(s)
    dim = gold(s, "dim_customer").to_pylist()
    versions = sorted(
        (r["valid_from"], r["valid_to"], r["state"], r["is_current"])
        for r in dim if r["customer_unique_id"] == person
    )  # fmt: skip
    assert versions == [
        (datetime(1900, 1, 1), t2, "SP", False),
        (t2, t3, "RJ", False),
        (t3, datetime(9999, 12, 31), "SP", True),
    ]
    before = snapshot(s)["dim_customer"]
    assert api.run(s, ["gold"], full_refresh=True).ok
    assert snapshot(s)["dim_customer"] == before


def test_declared_keys_are_every_key_column_a_table_has(generated: Settings) -> None:
    """Grains, surrogate keys and date keys are declared in the model; nothing picks them from
    column names, so a key column left undeclared would escape the checks and the report."""
    for g in GOLD_TABLES:
        columns = gold(generated, g.name).column_names
        assert set(g.grain) <= set(columns), g.name
        if not isinstance(g, Dimension):
            keys = {c for c in columns if c.endswith("_sk") or c.endswith("_date_key")}
            assert keys == {*g.dimension_keys, *g.date_keys}, g.name


def _built(tmp_path: Path, name: str, *, seed: int) -> tuple[Settings, pa.Table]:
    """A small source run through every layer, and its table ``name``."""
    s = Settings(home=tmp_path / "home", retries=0)
    api.generate_source(s, scale=0.01, seed=seed)
    run_ok(s)
    with open_source(s.source_location) as db:
        return s, db.read_table(next(t for t in SOURCE_TABLES if t.name == name))


def _last_gold(report: RunReport, name: str) -> dict:
    outcome = next(o for o in report.outcomes if o.task.name == f"gold.{name}")
    assert outcome.result is not None
    return {"rows": outcome.result.rows_written, **outcome.result.metrics}


def test_a_change_rebuilds_only_the_keys_it_touched(tmp_path: Path) -> None:
    """One order's status changes: each fact writes that order's rows, nothing else; a Gold
    table written before a column existed is rebuilt whole (never only the touched keys)."""
    s, orders = _built(tmp_path, "orders", seed=5)
    order = orders.sort_by("order_id").slice(0, 1).to_pylist()[0]
    items = read(s, "gold", "fact_order_item")
    lines = pc.sum(pc.equal(items["order_id"], order["order_id"])).as_py()
    new_status = "canceled" if order["order_status"] != "canceled" else "delivered"
    later = pc.max(orders["updated_at"]).as_py() + timedelta(hours=1)
    put(s, "orders", [order | {"order_status": new_status, "updated_at": later}])
    lake = Lake(s.lake_location)
    stale = lake.table("gold", "fact_payment")  # as if written by a version without a column
    old = stale.read()
    assert old is not None
    stale.overwrite(old.drop_columns(["installments"]), transactions={}, metadata={})
    report = run_ok(s)
    fact_order = _last_gold(report, "fact_order")
    assert (fact_order["keys_rebuilt"], fact_order["updated"], fact_order["rows"]) == (1, 1, 1)
    fact_item = _last_gold(report, "fact_order_item")
    assert (fact_item["keys_rebuilt"], fact_item["rows"]) == (1, lines)
    assert read(s, "gold", "fact_order").filter(pc.equal(pc.field("order_id"), order["order_id"]))[
        "order_status"
    ].to_pylist() == [new_status]
    payments = read(s, "gold", "fact_payment")
    assert "installments" in payments.column_names
    assert payments.num_rows == old.num_rows  # every row, not only the touched order's


def test_a_change_of_new_grains_only_is_appended(tmp_path: Path) -> None:
    """A second payment of an order adds a fact_payment row and changes no stored one: the
    table is appended to, no file rewritten; the rows are those a full rebuild gives."""
    s, payments = _built(tmp_path, "order_payments", seed=9)
    paid = payments.sort_by("order_id").slice(0, 1).to_pylist()[0]
    later = pc.max(payments["updated_at"]).as_py() + timedelta(hours=1)
    second = {"payment_sequential": 9, "payment_value": Decimal("12.50"), "updated_at": later}
    put(s, "order_payments", [paid | second])
    fact = _last_gold(run_ok(s), "fact_payment")
    assert (fact["inserted"], fact["updated"], fact["deleted"]) == (1, 0, 0)
    assert fact["files_rewritten"] == 0
    commit = Lake(s.lake_location).table("gold", "fact_payment").data_commit()
    assert commit is not None and commit["operation"] == "WRITE"
    before = gold(s, "fact_payment").sort_by(
        [("order_id", "ascending"), ("payment_sequential", "ascending")]
    )
    assert api.run(s, ["gold"], full_refresh=True).ok
    after = gold(s, "fact_payment").sort_by(
        [("order_id", "ascending"), ("payment_sequential", "ascending")]
    )
    assert after.equals(before)


def test_dim_date_is_generated_again_only_when_its_days_would_differ(tmp_path: Path) -> None:
    """A change within the years dim_date spans generates no day (nor reads the days back to
    diff them); a dim_date that lost a day gets it back; an order in another year adds that
    whole year."""
    s, orders = _built(tmp_path, "orders", seed=5)

    def dim() -> DeltaHandle:
        return Lake(s.lake_location).table("gold", "dim_date")

    days, files = read(s, "gold", "dim_date").sort_by("date_key"), dim().files()
    first, second = orders.sort_by("order_id").slice(0, 2).to_pylist()
    later = pc.max(orders["updated_at"]).as_py() + timedelta(hours=1)

    def change(order: dict, **values: object) -> dict:
        nonlocal later
        later += timedelta(hours=1)
        put(s, "orders", [order | values | {"updated_at": later}])
        return _last_gold(run_ok(s), "dim_date")

    held = change(first, order_status="canceled")
    assert (held["rows"], held.get("days_held"), dim().files()) == (0, True, files)
    gap = days.filter(pc.not_equal(days["date_key"], days["date_key"][5]))
    dim().overwrite(gap, transactions={}, metadata={})
    mended = change(first, order_status="shipped")
    assert (mended["rows"], mended.get("days_held")) == (1, None)
    assert read(s, "gold", "dim_date").sort_by("date_key").equals(days)
    assert pc.min(days["date"]).as_py().isoformat() == "2016-01-01"
    assert change(second, order_purchase_timestamp=datetime(2015, 6, 1, 12))["rows"] == 365
    dates = read(s, "gold", "dim_date")["date"]
    assert pc.min(dates).as_py().isoformat() == "2015-01-01"
    assert dates.null_count == 1  # the unknown member
