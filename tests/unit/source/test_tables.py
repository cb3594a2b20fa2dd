"""The generated tables: schemas, profile, invariants of clean data and the real quirks."""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.source.generator import GeneratedData, GeneratorConfig, generate
from medallion.source.places import categories, places
from medallion.source.profile import FIRST_PURCHASE

US = 1_000_000
DAY = 86_400
Tables = dict[str, pa.Table]
SCALES = [0.01, 0.1]


# -- helpers ------------------------------------------------------------------------------------
def assert_all(mask: pa.Array | pa.ChunkedArray) -> None:
    assert pc.all(pc.fill_null(mask, False)).as_py() is True


def cents(col: pa.ChunkedArray) -> np.ndarray:
    return np.round(pc.cast(col, pa.float64()).to_numpy() * 100).astype(np.int64)


def secs(table: pa.Table, col: str) -> tuple[np.ndarray, np.ndarray]:
    """A timestamp column as int64 seconds (0 where NULL) and its validity."""
    arr = table[col].cast(pa.int64())
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    return arr.fill_null(0).to_numpy() // US, valid


def key_unique(name: str, table: pa.Table) -> bool:
    keys = list(source_table(name).row_key)
    return table.group_by(keys).aggregate([]).num_rows == table.num_rows


def isin(values: pa.ChunkedArray, reference: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.is_in(values, value_set=reference.combine_chunks())


def share(table: pa.Table, col: str) -> dict[object, float]:
    counts = pc.value_counts(table[col]).to_pylist()
    return {c["values"]: c["counts"] / table.num_rows for c in counts}


# -- invariants of clean data -------------------------------------------------------------------
def check_keys_and_references(t: Tables) -> None:
    for name, table in t.items():
        assert key_unique(name, table), name
        assert table["deleted_at"].null_count == table.num_rows, name
        assert table["updated_at"].null_count == 0, name
    geo_ids = t["geolocation"]["geolocation_id"].to_numpy()
    assert np.array_equal(np.sort(geo_ids), np.arange(1, len(geo_ids) + 1))
    orders, customers = t["orders"], t["customers"]
    assert_all(isin(orders["customer_id"], customers["customer_id"]))
    assert len(pc.unique(orders["customer_id"])) == orders.num_rows == customers.num_rows
    for child in ("order_items", "order_payments", "order_reviews"):
        assert_all(isin(t[child]["order_id"], orders["order_id"]))
    for child in ("order_items", "order_payments"):
        assert len(pc.unique(t[child]["order_id"])) == orders.num_rows, child
    assert_all(isin(t["order_items"]["product_id"], t["products"]["product_id"]))
    assert_all(isin(t["order_items"]["seller_id"], t["sellers"]["seller_id"]))
    geo_zips = t["geolocation"]["geolocation_zip_code_prefix"]
    assert_all(isin(customers["customer_zip_code_prefix"], geo_zips))
    assert_all(isin(t["sellers"]["seller_zip_code_prefix"], geo_zips))


def check_money(t: Tables) -> None:
    items, pay = t["order_items"], t["order_payments"]
    assert pc.min(items["price"]).as_py() > 0
    assert pc.min(items["freight_value"]).as_py() >= 0
    assert pc.min(pay["payment_value"]).as_py() >= 0
    due = pa.table({"order_id": items["order_id"], "due": cents(items["price"])})
    due = due.append_column("freight", pa.array(cents(items["freight_value"])))
    due = due.group_by("order_id").aggregate([("due", "sum"), ("freight", "sum")])
    paid = pa.table({"order_id": pay["order_id"], "paid": cents(pay["payment_value"])})
    paid = paid.group_by("order_id").aggregate([("paid", "sum")])
    both = due.join(paid, "order_id", join_type="full outer")
    assert both.num_rows == t["orders"].num_rows
    assert_all(pc.equal(pc.add(both["due_sum"], both["freight_sum"]), both["paid_sum"]))
    installments = pay["payment_installments"]
    assert pc.min(installments).as_py() >= 0
    assert pc.max(installments).as_py() <= 24
    undefined = pay.filter(pc.equal(pay["payment_type"], "not_defined"))
    assert all(v == 0 for v in undefined["payment_value"].to_pylist())


ALLOWED = {  # status -> (approved, carrier, delivered): True set, False NULL, None either
    "created": (False, False, False),
    "approved": (True, False, False),
    "invoiced": (True, False, False),
    "processing": (True, False, False),
    "unavailable": (True, False, False),
    "shipped": (True, True, False),
    "delivered": (True, True, True),
    "canceled": (None, None, None),
}


def check_orders(t: Tables) -> None:
    o = t["orders"]
    purchase, _ = secs(o, "order_purchase_timestamp")
    approved, has_a = secs(o, "order_approved_at")
    carrier, has_c = secs(o, "order_delivered_carrier_date")
    delivered, has_d = secs(o, "order_delivered_customer_date")
    estimated, has_e = secs(o, "order_estimated_delivery_date")
    assert has_e.all() and (estimated % DAY == 0).all() and (estimated > purchase).all()
    assert purchase.min() >= FIRST_PURCHASE
    assert purchase.max() < int(datetime(2018, 10, 18).timestamp()) + DAY
    assert (~has_d | has_c).all() and (~has_c | has_a).all()  # set timestamps form a prefix
    assert (~has_a | (approved >= purchase)).all()
    assert (~has_c | (carrier >= approved)).all()
    assert (~has_d | (delivered >= carrier)).all()
    status = np.asarray(o["order_status"].to_pylist())
    for name, rule in ALLOWED.items():
        rows = status == name
        for flag, has in zip(rule, (has_a, has_c, has_d), strict=True):
            if flag is not None:
                assert (has[rows] == flag).all(), (name, flag)
    last = np.where(has_d, delivered, np.where(has_c, carrier, np.where(has_a, approved, purchase)))
    updated, _ = secs(o, "updated_at")
    assert np.array_equal(updated, last)


def check_reviews(t: Tables) -> None:
    r = t["order_reviews"]
    assert set(pc.unique(r["review_score"]).to_pylist()) <= {1, 2, 3, 4, 5}
    dates = ["order_id", "order_delivered_customer_date", "order_estimated_delivery_date"]
    joined = r.join(t["orders"].select(dates), "order_id")
    created, _ = secs(joined, "review_creation_date")
    answered, _ = secs(joined, "review_answer_timestamp")
    delivered, has_d = secs(joined, "order_delivered_customer_date")
    estimated, _ = secs(joined, "order_estimated_delivery_date")
    assert (created % DAY == 0).all()
    assert (created > np.where(has_d, delivered, estimated)).all()
    assert (answered > created).all()
    assert np.array_equal(secs(joined, "updated_at")[0], answered)


def check_updated_at(t: Tables) -> None:
    o = t["orders"].select(["order_id", "customer_id", "order_purchase_timestamp",
                            "order_approved_at"])  # fmt: skip
    customers = t["customers"].join(o, "customer_id")
    assert np.array_equal(
        secs(customers, "updated_at")[0], secs(customers, "order_purchase_timestamp")[0]
    )
    for child in ("order_items", "order_payments"):
        joined = t[child].select(["order_id", "updated_at"]).join(o, "order_id")
        approved, has_a = secs(joined, "order_approved_at")
        expected = np.where(has_a, approved, secs(joined, "order_purchase_timestamp")[0])
        assert np.array_equal(secs(joined, "updated_at")[0], expected), child
    for name in ("products", "sellers", "geolocation", "product_category_name_translation"):
        assert secs(t[name], "updated_at")[0].max() < FIRST_PURCHASE, name


def check_clean(t: Tables) -> None:
    check_keys_and_references(t)
    check_money(t)
    check_orders(t)
    check_reviews(t)
    check_updated_at(t)


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_tables_match_the_catalog_schemas(data: Callable[..., GeneratedData], scale: float) -> None:
    generated = data(scale)
    assert list(generated.tables) == [t.name for t in SOURCE_TABLES]
    for name, table in generated.tables.items():
        assert table.schema.equals(source_table(name).arrow_schema()), name
    assert generated.dirty.num_rows == 0


@pytest.mark.parametrize("scale", SCALES)
def test_row_counts_follow_the_profile(data: Callable[..., GeneratedData], scale: float) -> None:
    rows = data(scale).row_counts()
    orders = round(99_441 * scale)
    assert rows["orders"] == rows["customers"] == orders
    assert rows["order_items"] == pytest.approx(112_650 * scale, rel=0.06)
    assert rows["order_payments"] == pytest.approx(103_886 * scale, rel=0.05)
    assert rows["order_reviews"] == pytest.approx(99_224 * scale, rel=0.03)
    assert rows["products"] == round(32_951 * math.sqrt(scale))
    assert rows["sellers"] == round(3_095 * math.sqrt(scale))
    assert rows["geolocation"] == round(1_000_163 * scale)
    assert rows["product_category_name_translation"] == 71


@pytest.mark.parametrize("scale", SCALES)
def test_clean_data_satisfies_every_invariant(
    data: Callable[..., GeneratedData], scale: float
) -> None:
    check_clean(data(scale).tables)


def test_profile_shares(data: Callable[..., GeneratedData]) -> None:
    t = data(0.1).tables
    status = share(t["orders"], "order_status")
    assert status["delivered"] == pytest.approx(0.97, abs=0.01)
    assert status["shipped"] == pytest.approx(0.011, abs=0.005)
    assert set(status) <= set(ALLOWED)
    scores = share(t["order_reviews"], "review_score")
    for score, expected in {5: 0.578, 4: 0.193, 1: 0.115, 3: 0.082, 2: 0.032}.items():
        assert scores[score] == pytest.approx(expected, abs=0.02), score
    kinds = share(t["order_payments"], "payment_type")
    for kind, expected in {"credit_card": 0.739, "boleto": 0.19, "voucher": 0.056}.items():
        assert kinds[kind] == pytest.approx(expected, abs=0.02), kind
    per_order = pc.value_counts(t["order_items"]["order_id"]).field("counts").to_numpy()
    assert (per_order == 1).mean() == pytest.approx(0.9, abs=0.015)
    assert per_order.max() <= 21
    payments = pc.value_counts(t["order_payments"]["order_id"]).field("counts").to_numpy()
    assert (payments > 1).mean() == pytest.approx(0.03, abs=0.01)
    buyers = pc.value_counts(t["customers"]["customer_unique_id"]).field("counts").to_numpy()
    assert (buyers > 1).mean() == pytest.approx(0.03, abs=0.01)
    reviews = t["order_reviews"]
    assert reviews["review_comment_title"].null_count / reviews.num_rows == pytest.approx(
        0.88, abs=0.02
    )
    assert reviews["review_comment_message"].null_count / reviews.num_rows == pytest.approx(
        0.59, abs=0.02
    )
    assert share(t["sellers"], "seller_state")["SP"] == pytest.approx(0.6, abs=0.03)


def test_purchases_grow_over_time(data: Callable[..., GeneratedData]) -> None:
    month = pc.strftime(data(0.1).tables["orders"]["order_purchase_timestamp"], "%Y-%m")
    values, counts = np.unique(month.to_numpy(zero_copy_only=False), return_counts=True)
    counts = dict(zip(values, counts, strict=True))
    assert counts["2016-10"] < counts["2017-03"] < counts["2017-09"] < counts["2018-03"]
    assert min(counts) == "2016-09" and max(counts) <= "2018-10"


def test_review_quirks(data: Callable[..., GeneratedData]) -> None:
    reviews = data(0.1).tables["order_reviews"]
    ids = pc.value_counts(reviews["review_id"]).field("counts").to_numpy()
    assert 40 < (ids > 1).sum() < 120  # ~0.8 % of review ids belong to two orders
    orders = pc.value_counts(reviews["order_id"]).field("counts").to_numpy()
    assert (orders > 1).sum() > 20
    messages = pc.drop_null(reviews["review_comment_message"])
    for needle in (",", '"', "\n", "\r\n"):
        assert pc.any(pc.match_substring(messages, needle)).as_py(), repr(needle)


def test_products_use_the_real_categories(
    data: Callable[..., GeneratedData], olist_dir: Path
) -> None:
    with gzip.open(olist_dir / "product_category_name_translation.csv.gz") as f:
        real = pacsv.read_csv(f)
    names = set(categories()["product_category_name"].to_pylist())
    assert set(real["product_category_name"].to_pylist()) < names and len(names) == 73
    untranslated = categories().filter(pc.is_null(categories()["product_category_name_english"]))
    assert set(untranslated["product_category_name"].to_pylist()) == {
        "pc_gamer",
        "portateis_cozinha_e_preparadores_de_alimentos",
    }
    t = data(0.1).tables
    translation = t["product_category_name_translation"].select(
        ["product_category_name", "product_category_name_english"]
    )
    assert sorted(translation.to_pylist(), key=str) == sorted(real.to_pylist(), key=str)
    p = t["products"]
    used = set(pc.drop_null(p["product_category_name"]).to_pylist())
    assert used <= names and len(used) > 50
    blank = pc.is_null(p["product_category_name"])
    assert pc.sum(blank).as_py() == round(p.num_rows * 610 / 32_951)
    for col in ("product_name_lenght", "product_description_lenght", "product_photos_qty"):
        assert pc.is_null(p[col]).equals(blank), col
    assert p["product_weight_g"].null_count >= 1
    assert pc.sum(pc.equal(p["product_weight_g"], 0)).as_py() >= 1


@pytest.mark.parametrize("scale", SCALES)
def test_zip_codes_are_five_digit_text(data: Callable[..., GeneratedData], scale: float) -> None:
    t = data(scale).tables
    for name, col in (("customers", "customer_zip_code_prefix"),
                      ("sellers", "seller_zip_code_prefix"),
                      ("geolocation", "geolocation_zip_code_prefix")):  # fmt: skip
        assert_all(pc.match_substring_regex(t[name][col], r"^\d{5}$"))
        assert pc.any(pc.starts_with(t[name][col], "0")).as_py(), name


def test_geolocation_points(data: Callable[..., GeneratedData]) -> None:
    geo = data(0.1).tables["geolocation"]
    zips = pc.value_counts(geo["geolocation_zip_code_prefix"]).field("counts").to_numpy()
    assert len(zips) >= round(19_015 * 0.1) and zips.mean() > 10
    lat, lng = geo["geolocation_lat"].to_numpy(), geo["geolocation_lng"].to_numpy()
    outside = (lat > 5.3) | (lat < -34) | (lng > -34) | (lng < -74)
    assert 1 <= outside.sum() <= 20
    cities = set(pc.unique(geo["geolocation_city"]).to_pylist())
    assert {"sao paulo", "são paulo", "sp"} <= cities
    states = set(pc.unique(geo["geolocation_state"]).to_pylist())
    assert states <= set(places().states.to_pylist()) and len(states) >= 20


def test_sellers_quirky_cities(data: Callable[..., GeneratedData]) -> None:
    sellers = data(0.1).tables["sellers"]
    canonical = set(places().names.to_pylist())
    odd = sellers.filter(pc.invert(isin(sellers["seller_city"], pa.chunked_array([
        pa.array(sorted(canonical))]))))  # fmt: skip
    assert 1 <= odd.num_rows <= 5
    assert_all(pc.match_substring_regex(odd["seller_city"], r"^([a-z ]+ / [a-z]{2}|\d{8})$"))


def test_scale_one_profile() -> None:
    t = generate(GeneratorConfig(scale=1)).tables
    assert t["orders"].num_rows == 99_441 and t["geolocation"].num_rows == 1_000_163
    assert len(pc.unique(t["sellers"]["seller_state"])) == 23
    assert len(pc.unique(t["products"]["product_category_name"])) == 74  # 73 and NULL
    zips = len(pc.unique(t["geolocation"]["geolocation_zip_code_prefix"]))
    assert zips == pytest.approx(19_015, rel=0.02)
    unique = len(pc.unique(t["customers"]["customer_unique_id"]))
    assert unique == pytest.approx(96_096, rel=0.005)


def test_the_invariant_checks_catch_dirty_data(data: Callable[..., GeneratedData]) -> None:
    dirty = data(0.01, dirty_rate=0.1).tables
    for check in (check_keys_and_references, check_money, check_orders, check_reviews):
        with pytest.raises(AssertionError):
            check(dirty)
