"""Change batches over a generated source: every change type checked against its manifest."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.errors import ConfigError, SourceError
from medallion.source.batch import CHANGE_TYPES
from medallion.source.changes import ChangeManifest, ChangeSpec, apply_changes
from medallion.source.db import SourceDatabase, open_source
from medallion.source.generator import GeneratorConfig, generate, write_to_source
from medallion.source.places import categories, places

Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
EVERYTHING = ChangeSpec(
    seed=3,
    new_orders=12,
    status_updates=6,
    customer_moves=5,
    product_updates=8,
    seller_moves=4,
    soft_deletes=4,
    hard_deletes=4,
    late_updates=6,
    dirty=14,
)
NEXT = {"created": "approved", "approved": "shipped", "invoiced": "shipped",
        "processing": "shipped", "shipped": "delivered"}  # fmt: skip


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite source with scale-0.01 data, built once and copied per test."""
    path = tmp_path_factory.mktemp("base") / "source.db"
    with open_source(str(path), create=True) as db:
        write_to_source(db, generate(GeneratorConfig(scale=0.01, seed=7)))
    return path


@pytest.fixture
def source(base_db: Path, tmp_path: Path) -> str:
    target = tmp_path / "source.db"
    shutil.copy(base_db, target)
    return str(target)


# -- helpers ------------------------------------------------------------------------------------
def js(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, Decimal):
        return str(value)
    return value


def rows(db: SourceDatabase) -> Rows:
    """Every row of every table, by key, with JSON-style values."""
    out: Rows = {}
    for table in SOURCE_TABLES:
        data = db.read_table(table).to_pylist()
        out[table.name] = {
            tuple(r[k] for k in table.row_key): {c: js(v) for c, v in r.items()} for r in data
        }
    return out


def key_of(change: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(change["key"][k] for k in source_table(change["table"]).row_key)


def apply(location: str, spec: ChangeSpec) -> tuple[Rows, ChangeManifest, Rows]:
    with open_source(location) as db:
        before = rows(db)
        manifest = apply_changes(db, spec)
        return before, manifest, rows(db)


def check_manifest(before: Rows, manifest: ChangeManifest, after: Rows) -> None:
    """The database changed exactly as the manifest says, and nowhere else."""
    touched: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for change in manifest.changes:
        name, key = change["table"], key_of(change)
        assert key not in touched[name], f"{name} {key} changed twice"
        touched[name].add(key)
        old, new = before[name].get(key), after[name].get(key)
        if change["op"] == "hard_delete":
            assert new is None and old is not None
            assert change["old"] == {c: v for c, v in old.items() if c != "updated_at"}
            continue
        assert new is not None and new["updated_at"] == change["updated_at"]
        if change["op"] == "insert":
            assert old is None and change["old"] is None and new["deleted_at"] is None
            assert change["new"] == {c: new[c] for c in change["new"]}
            assert set(change["new"]) | {"updated_at", "deleted_at"} == set(new)
            continue
        assert old is not None and change["new"]
        assert change["old"] == {c: old[c] for c in change["old"]}
        assert change["new"] == {c: new[c] for c in change["new"]}
        assert set(change["old"]) == set(change["new"])
        assert all(change["old"][c] != change["new"][c] for c in change["new"])
        same = set(new) - set(change["new"]) - {"updated_at"}
        assert {c: new[c] for c in same} == {c: old[c] for c in same}
    for name in before:
        unchanged = set(before[name]) - touched[name]
        assert {k: after[name][k] for k in unchanged} == {k: before[name][k] for k in unchanged}
        assert set(after[name]) - set(before[name]) <= touched[name]
    counts = defaultdict(int)
    for change in manifest.changes:
        counts[change["change"]] += 1
    assert manifest.counts == {c: counts[c] for c in CHANGE_TYPES}


def by_change(manifest: ChangeManifest, change: str, table: str | None = None) -> list[dict]:
    return [c for c in manifest.changes if c["change"] == change and table in (None, c["table"])]


def max_updated(before: Rows, name: str) -> str:
    return max(r["updated_at"] for r in before[name].values())


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"new_orders": -1}, {"dirty": -5}, {"seed": -1},
                                    {"late_updates": 1.5}, {"hard_deletes": True}])  # fmt: skip
def test_bad_spec_is_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="must be"):
        ChangeSpec(**kwargs)


def test_every_change_type_matches_the_manifest(source: str) -> None:
    before, manifest, after = apply(source, EVERYTHING)
    check_manifest(before, manifest, after)
    assert all(manifest.counts[c] > 0 for c in CHANGE_TYPES)
    json.loads(manifest.to_json())  # serialisable as is


def test_the_batch_clock_is_logical(source: str) -> None:
    before, manifest, _ = apply(source, EVERYTHING)
    newest = max(max_updated(before, name) for name in before)
    start = datetime.fromisoformat(newest) + timedelta(days=1)
    assert manifest.batch_time == start
    for change in manifest.changes:
        when = datetime.fromisoformat(change["updated_at"])
        if change["change"] != "late_updates":
            assert start <= when < start + timedelta(seconds=200)
            assert (when - start).microseconds == 0  # whole-second offsets


def test_late_updates_are_not_after_the_old_maximum(source: str) -> None:
    before, manifest, _ = apply(source, ChangeSpec(seed=2, late_updates=9))
    assert manifest.counts["late_updates"] == 9
    for table in ("orders", "order_reviews"):
        late = by_change(manifest, "late_updates", table)
        assert len(late) >= 4
        top = datetime.fromisoformat(max_updated(before, table))
        assert late[0]["updated_at"] == top.isoformat(timespec="microseconds")
        for change in late[1:]:
            assert top - timedelta(seconds=3) < datetime.fromisoformat(change["updated_at"]) < top


def test_keys_are_touched_by_one_change_type(source: str) -> None:
    before, manifest, _ = apply(source, EVERYTHING)
    owner: dict[str, str] = {}
    for change in manifest.changes:
        order = change["key"].get("order_id")
        if order is not None and (order,) in before["orders"]:
            assert owner.setdefault(order, change["change"]) == change["change"], order
    assert len(set(owner.values())) == 5  # status, soft, hard, late and dirty
    uids = defaultdict(set)
    for change in by_change(manifest, "new_orders", "customers"):
        uids["new_orders"].add(change["new"]["customer_unique_id"])
    for change in by_change(manifest, "customer_moves"):
        uids["customer_moves"].add(before["customers"][key_of(change)]["customer_unique_id"])
    assert uids["customer_moves"] and not uids["customer_moves"] & uids["new_orders"]


def test_new_orders_are_complete_and_consistent(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=4, new_orders=40))
    orders = [c["new"] for c in by_change(manifest, "new_orders", "orders")]
    assert len(orders) == 40
    assert {o["order_status"] for o in orders} == {"created", "approved"}
    for o in orders:
        assert o["order_purchase_timestamp"] <= (o["order_approved_at"] or "9")
        assert (o["order_approved_at"] is None) == (o["order_status"] == "created")
        assert (o["customer_id"],) in after["customers"]
    due: dict[str, Decimal] = defaultdict(Decimal)
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for item in by_change(manifest, "new_orders", "order_items"):
        new = item["new"]
        due[new["order_id"]] += Decimal(new["price"]) + Decimal(new["freight_value"])
        assert (new["product_id"],) in after["products"] and (new["seller_id"],) in after["sellers"]
    for payment in by_change(manifest, "new_orders", "order_payments"):
        paid[payment["new"]["order_id"]] += Decimal(payment["new"]["payment_value"])
    assert due == paid and len(due) == 40
    old_uids = {c["customer_unique_id"] for c in before["customers"].values()}
    customers = [c["new"] for c in by_change(manifest, "new_orders", "customers")]
    returning = [c for c in customers if c["customer_unique_id"] in old_uids]
    assert len(returning) == 6  # 15 %
    assert all(len(c["customer_zip_code_prefix"]) == 5 for c in customers)


def test_status_updates_progress_one_step(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=5, status_updates=10))
    updates = by_change(manifest, "status_updates")
    assert len(updates) == 10
    for change in updates:
        old, new = before["orders"][key_of(change)], after["orders"][key_of(change)]
        assert new["order_status"] == NEXT[old["order_status"]]
        stamps = [new[c] for c in ("order_purchase_timestamp", "order_approved_at",
                                   "order_delivered_carrier_date",
                                   "order_delivered_customer_date")]  # fmt: skip
        set_stamps = [s for s in stamps if s is not None]
        assert set_stamps == sorted(set_stamps) and None not in stamps[: len(set_stamps)]
        expected = {"approved": 2, "shipped": 3, "delivered": 4}[new["order_status"]]
        assert len(set_stamps) == expected


def test_status_updates_are_capped_by_the_eligible_orders(source: str) -> None:
    with open_source(source) as db:
        orders = db.read_table(source_table("orders"), ["order_status"])
    eligible = pc.sum(pc.is_in(orders["order_status"], value_set=pa.array(list(NEXT)))).as_py()
    _, manifest, _ = apply(source, ChangeSpec(seed=5, status_updates=10_000))
    assert manifest.counts["status_updates"] == eligible


def test_customer_moves_move_every_row_of_the_person(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=6, customer_moves=8))
    moved = by_change(manifest, "customer_moves")
    uids = {before["customers"][key_of(c)]["customer_unique_id"] for c in moved}
    assert len(uids) == 8
    for uid in uids:
        rows_before = [r for r in before["customers"].values() if r["customer_unique_id"] == uid]
        rows_after = [r for r in after["customers"].values() if r["customer_unique_id"] == uid]
        assert len(rows_after) == len(rows_before)
        new_zips = {r["customer_zip_code_prefix"] for r in rows_after}
        assert len(new_zips) == 1
        assert not new_zips & {r["customer_zip_code_prefix"] for r in rows_before}


def test_product_and_seller_updates(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=8, product_updates=20, seller_moves=5))
    real = set(categories()["product_category_name"].to_pylist())
    products = by_change(manifest, "product_updates")
    assert len(products) == 20
    assert any("product_category_name" in c["new"] for c in products)
    assert any("product_weight_g" in c["new"] for c in products)
    for change in products:
        new = after["products"][key_of(change)]
        assert new["product_category_name"] in real | {None}
        for col in ("product_weight_g", "product_length_cm", "product_height_cm"):
            assert col not in change["new"] or change["new"][col] >= 1
    sellers = by_change(manifest, "seller_moves")
    assert len(sellers) == 5
    for change in sellers:
        old, new = before["sellers"][key_of(change)], after["sellers"][key_of(change)]
        assert new["seller_zip_code_prefix"] != old["seller_zip_code_prefix"]
        assert new["seller_state"] in set(places().states.to_pylist())


def test_soft_deletes_flag_the_order_and_its_children(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=9, soft_deletes=5))
    orders = by_change(manifest, "soft_deletes", "orders")
    assert len(orders) == 5
    for order in orders:
        order_id = order["key"]["order_id"]
        when = order["updated_at"]
        for name in ("orders", "order_items", "order_payments", "order_reviews"):
            children = [r for r in after[name].values() if r["order_id"] == order_id]
            assert all(r["deleted_at"] == r["updated_at"] == when for r in children), name
            assert len(children) == sum(r["order_id"] == order_id for r in before[name].values())
    deleted = {c["key"]["order_id"] for c in orders}
    _, again, _ = apply(source, ChangeSpec(seed=9, soft_deletes=100_000))
    chosen = {c["key"]["order_id"] for c in by_change(again, "soft_deletes", "orders")}
    assert not chosen & deleted and len(chosen) == len(after["orders"]) - len(deleted)


def test_hard_deletes_remove_the_order_with_its_children(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=10, hard_deletes=6))
    deleted = {c["key"]["order_id"] for c in by_change(manifest, "hard_deletes", "orders")}
    assert len(deleted) == 6
    for name in ("order_items", "order_payments", "order_reviews"):
        assert not {r["order_id"] for r in after[name].values()} & deleted
        gone = {key_of(c) for c in by_change(manifest, "hard_deletes", name)}
        assert gone == {k for k, r in before[name].items() if r["order_id"] in deleted}
        assert {r["order_id"] for r in after[name].values()} <= {k[0] for k in after["orders"]}


def test_dirty_rows_are_listed_with_their_defect(source: str) -> None:
    before, manifest, after = apply(source, ChangeSpec(seed=11, dirty=14))
    dirty = by_change(manifest, "dirty")
    assert len(dirty) == 14 and all(c["op"] == "insert" for c in dirty)
    defects = defaultdict(list)
    for change in dirty:
        defects[(change["table"], change["defect"])].append(after[change["table"]][key_of(change)])
    assert len(defects) == 7
    assert all(r["customer_id"] is None for r in defects["orders", "null_required"])
    for r in defects["orders", "bad_timestamp"]:
        assert r["order_delivered_customer_date"] < r["order_purchase_timestamp"]
    assert all(Decimal(r["price"]) < 0 for r in defects["order_items", "negative_price"])
    for r in defects["order_items", "unknown_reference"]:
        assert (r["product_id"],) not in after["products"]
    for r in defects["order_reviews", "score_out_of_range"]:
        assert r["review_score"] not in range(1, 6)
    content = ("order_id", "review_score", "review_comment_message", "review_creation_date")
    originals = {tuple(r[c] for c in content) for r in before["order_reviews"].values()}
    for r in defects["order_reviews", "duplicate"]:
        assert tuple(r[c] for c in content) in originals
    point = ("geolocation_zip_code_prefix", "geolocation_lat", "geolocation_lng")
    points = {tuple(r[c] for c in point) for r in before["geolocation"].values()}
    for r in defects["geolocation", "duplicate"]:
        assert tuple(r[c] for c in point) in points
        assert r["geolocation_id"] > max(k[0] for k in before["geolocation"])


def test_batches_are_deterministic(base_db: Path, tmp_path: Path) -> None:
    manifests = []
    for i, seed in enumerate((3, 3, 4)):
        copy = tmp_path / f"copy{i}.db"
        shutil.copy(base_db, copy)
        _, manifest, after = apply(str(copy), ChangeSpec(**{**EVERYTHING.__dict__, "seed": seed}))
        manifests.append((manifest.to_json(), after))
    assert manifests[0] == manifests[1]
    assert manifests[0][0] != manifests[2][0]


def test_consecutive_batches_move_the_clock(source: str) -> None:
    _, first, _ = apply(source, ChangeSpec(seed=1, new_orders=3, status_updates=3))
    before, second, after = apply(source, ChangeSpec(seed=1, new_orders=3, status_updates=3))
    check_manifest(before, second, after)
    assert second.batch_time > first.batch_time
    created = {c["key"]["order_id"] for c in by_change(first, "new_orders", "orders")}
    assert not created & {c["key"]["order_id"] for c in by_change(second, "new_orders", "orders")}


def test_manifest_round_trips_through_json(source: str, tmp_path: Path) -> None:
    _, manifest, _ = apply(source, EVERYTHING)
    path = manifest.write(tmp_path / "changes" / "batch.json")
    assert ChangeManifest.read(path) == manifest
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"batch_time", "seed", "counts", "changes"}
    assert set(data["changes"][0]) >= {"table", "key", "op", "change", "updated_at", "old", "new"}


def test_an_empty_source_is_an_error(tmp_path: Path) -> None:
    with open_source(str(tmp_path / "empty.db"), create=True) as db:
        db.create_tables(SOURCE_TABLES)
        with pytest.raises(SourceError, match="empty"):
            apply_changes(db, ChangeSpec(new_orders=1))
