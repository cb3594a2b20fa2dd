"""History is never lost: one hand-written case, with exact expected rows, per finding of the
outside check (issue 9). Each fails on the code before the fix."""

from __future__ import annotations

import gzip
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support import put as put_rows
from tests.support import run_ok

from medallion import api
from medallion.catalog import SOURCE_TABLES
from medallion.gold.model import GOLD_TABLES
from medallion.settings import Settings
from medallion.source.db import open_source
from medallion.storage import Lake

T0 = datetime(2018, 3, 1, 9, 0, 0)
LOW, HIGH = datetime(1900, 1, 1), datetime(9999, 12, 31)
SELLER, PRODUCT, PERSON, CUSTOMER, ORDER = "5e" * 16, "9a" * 16, "ee" * 16, "c1" * 16, "0d" * 16
PLACE = {"SP": ("01037", "sao paulo"), "RJ": ("20040", "rio de janeiro"), "MG": ("30110", "belo")}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", retries=0, checks=False, report_on_run=False)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return s


def put(settings: Settings, name: str, **row: object) -> None:
    put_rows(settings, name, [row])


def seller(settings: Settings, state: str, at: datetime) -> None:
    zip_code, city = PLACE[state]
    put(settings, "sellers", seller_id=SELLER, seller_zip_code_prefix=zip_code,
        seller_city=city, seller_state=state, updated_at=at)  # fmt: skip


def customer(settings: Settings, state: str, at: datetime, deleted: bool = False) -> None:
    zip_code, city = PLACE[state]
    put(settings, "customers", customer_id=CUSTOMER, customer_unique_id=PERSON,
        customer_zip_code_prefix=zip_code, customer_city=city, customer_state=state,
        updated_at=at, deleted_at=at if deleted else None)  # fmt: skip


def product(settings: Settings, weight: int, at: datetime) -> None:
    put(settings, "products", product_id=PRODUCT, product_category_name="perfumaria",
        product_weight_g=weight, updated_at=at)  # fmt: skip


def translate(settings: Settings, english: str, at: datetime) -> None:
    put(settings, "product_category_name_translation", product_category_name="perfumaria",
        product_category_name_english=english, updated_at=at)  # fmt: skip


def versions(settings: Settings, dim: str, *columns: str) -> list[tuple]:
    data = Lake(settings.lake_location).read("gold", dim)
    assert data is not None
    rows = [r for r in data.to_pylist() if r[data.column_names[1]] != "unknown"]
    return sorted(
        (r["valid_from"], r["valid_to"], *(r[c] for c in columns), r["is_deleted"]) for r in rows
    )


def gold_snapshot(settings: Settings) -> dict[str, list[tuple]]:
    lake = Lake(settings.lake_location)
    out = {}
    for table in GOLD_TABLES:
        data = lake.read("gold", table.name)
        assert data is not None
        out[table.name] = sorted((tuple(r.values()) for r in data.to_pylist()), key=repr)
    return out


def test_a_state_only_bronze_captured_reaches_the_dimension(settings: Settings) -> None:
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    seller(settings, "SP", T0)
    run_ok(settings)
    seller(settings, "RJ", t1)
    run_ok(settings, ["bronze"])  # Silver never sees RJ: MG replaces it before Silver runs
    seller(settings, "MG", t2)
    run_ok(settings)
    assert versions(settings, "dim_seller", "state") == [
        (LOW, t1, "SP", False),
        (t1, t2, "RJ", False),
        (t2, HIGH, "MG", False),
    ]


def test_an_out_of_order_change_inside_the_look_back_splits_the_interval(
    settings: Settings,
) -> None:
    t5 = T0 + timedelta(hours=5)
    seller(settings, "SP", T0)
    run_ok(settings)
    seller(settings, "MG", t5)
    run_ok(settings)
    late = t5 - timedelta(seconds=1)  # older than the current version, inside the 5 s look-back
    seller(settings, "RJ", late)
    run_ok(settings)
    assert versions(settings, "dim_seller", "state") == [
        (LOW, late, "SP", False),
        (late, t5, "RJ", False),
        (t5, HIGH, "MG", False),
    ]
    silver = Lake(settings.lake_location).read("silver", "sellers")
    assert silver is not None
    assert silver.select(["seller_state", "updated_at"]).to_pylist() == [
        {"seller_state": "MG", "updated_at": t5}  # the newest state stays current
    ]


def test_a_relabel_never_hides_a_newer_change_of_the_product(settings: Settings) -> None:
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    translate(settings, "perfumery", T0 - timedelta(days=1))
    product(settings, 100, T0)
    run_ok(settings)
    translate(settings, "perfume", t2)  # the relabel is the translation's event, at t2
    run_ok(settings)
    product(settings, 200, t1)  # newer than the product's own T0, older than the relabel
    run_ok(settings)
    silver = Lake(settings.lake_location).read("silver", "products")
    assert silver is not None
    assert silver.select(
        ["product_weight_g", "product_category_name_english", "updated_at"]
    ).to_pylist() == [
        {"product_weight_g": 200, "product_category_name_english": "perfume", "updated_at": t1}
    ]
    assert versions(settings, "dim_product", "category_name_english", "weight_g") == [
        (LOW, t1, "perfumery", 100, False),
        (t1, t2, "perfumery", 200, False),
        (t2, HIGH, "perfume", 200, False),
    ]
    before = gold_snapshot(settings)
    run_ok(settings, ["silver", "gold"], full_refresh=True)
    assert gold_snapshot(settings) == before


def test_a_full_refresh_keeps_a_delete_and_a_restore(settings: Settings) -> None:
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    customer(settings, "SP", T0)
    run_ok(settings)
    customer(settings, "SP", t1, deleted=True)
    run_ok(settings)
    customer(settings, "RJ", t2)  # the person comes back, in Rio
    run_ok(settings)
    expected = [(LOW, t1, "SP", True), (t2, HIGH, "RJ", False)]
    assert versions(settings, "dim_customer", "state") == expected
    before = gold_snapshot(settings)
    run_ok(settings, ["silver", "gold"], full_refresh=True)
    assert versions(settings, "dim_customer", "state") == expected
    assert gold_snapshot(settings) == before


def test_orders_of_a_deleted_customer_keep_the_version_they_were_bought_in(
    settings: Settings,
) -> None:
    bought = T0 + timedelta(days=1)
    customer(settings, "SP", T0)
    seller(settings, "SP", T0)
    product(settings, 100, T0)
    put(settings, "orders", order_id=ORDER, customer_id=CUSTOMER, order_status="delivered",
        order_purchase_timestamp=bought, order_approved_at=bought,
        order_delivered_customer_date=bought + timedelta(days=2),
        order_estimated_delivery_date=bought + timedelta(days=5), updated_at=bought)  # fmt: skip
    put(settings, "order_items", order_id=ORDER, order_item_id=1, product_id=PRODUCT,
        seller_id=SELLER, shipping_limit_date=bought, price=Decimal("10.00"),
        freight_value=Decimal("2.00"), updated_at=bought)  # fmt: skip
    put(settings, "order_payments", order_id=ORDER, payment_sequential=1,
        payment_type="boleto", payment_installments=1, payment_value=Decimal("12.00"),
        updated_at=bought)  # fmt: skip
    run_ok(settings)
    customer(settings, "SP", T0 + timedelta(days=5), deleted=True)
    run_ok(settings)
    lake = Lake(settings.lake_location)
    dim = lake.read("gold", "dim_customer")
    assert dim is not None
    [version] = [r for r in dim.to_pylist() if r["customer_unique_id"] == PERSON]
    assert (version["valid_to"], version["is_deleted"]) == (T0 + timedelta(days=5), True)
    for fact in ("fact_order", "fact_order_item", "fact_payment"):
        data = lake.read("gold", fact)
        assert data is not None
        assert data["customer_sk"].to_pylist() == [version["customer_sk"]], fact


def test_loading_some_csv_files_then_running_works(
    settings: Settings, olist_dir: Path, tmp_path: Path
) -> None:
    fresh = Settings(home=tmp_path / "fresh", retries=0, checks=False, report_on_run=False)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    with (
        gzip.open(olist_dir / "olist_sellers_dataset.csv.gz") as src,
        (csv_dir / "olist_sellers_dataset.csv").open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    api.load_csv(fresh, csv_dir)  # no `source init` first, and eight files missing
    run_ok(fresh)
    silver = Lake(fresh.lake_location).read("silver", "sellers")
    assert silver is not None and silver.num_rows == 3095
    cities = set(silver["seller_city"].to_pylist())
    assert "santa barbara d'oeste" in cities
    assert not {c for c in cities if c and ("\u00b4" in c or "`" in c)}
