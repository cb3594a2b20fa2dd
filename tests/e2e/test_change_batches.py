"""A change batch from the generator lands in Bronze and Silver exactly as its manifest says,
on SQLite and on real PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest
from tests.support import run_ok

from medallion import api
from medallion.catalog import source_table
from medallion.runner import RunReport
from medallion.settings import Settings
from medallion.source.changes import ChangeSpec
from medallion.source.db import open_source
from medallion.storage import Lake

pytestmark = pytest.mark.slow  # whole runs: `make test-fast` leaves them out

SPEC = ChangeSpec(
    seed=3, new_orders=20, status_updates=20, customer_moves=10, product_updates=10,
    seller_moves=5, soft_deletes=5, hard_deletes=5, late_updates=6, dirty=0,
)  # fmt: skip


def run(settings: Settings) -> RunReport:
    return run_ok(settings, ["bronze", "silver"])


@pytest.fixture
def settings(tmp_path: Path, source_url: str) -> Settings:
    s = Settings(home=tmp_path / "home", source_url=source_url, retries=0)
    api.generate_source(s, scale=0.01, seed=11)
    run(s)
    return s


def key_text(table: str, key: dict) -> str:
    return "|".join(str(key[k]) for k in source_table(table).row_key)


def test_bronze_gets_exactly_the_manifest(settings: Settings) -> None:
    manifest, _path = api.change_source(settings, SPEC)
    report = run(settings)
    lake = Lake(settings.lake_location)
    expected: dict[str, set[tuple]] = {}
    for c in manifest.changes:
        op = "delete" if c["op"] in ("soft_delete", "hard_delete") else "upsert"
        stamp = None if c["op"] == "hard_delete" else datetime.fromisoformat(c["updated_at"])
        expected.setdefault(c["table"], set()).add((key_text(c["table"], c["key"]), stamp, op))
    assert manifest.counts["late_updates"] > 0 and manifest.counts["hard_deletes"] > 0
    for name in expected.keys() | {"sellers", "products", "customers"}:
        table = source_table(name)
        rows = lake.read("bronze", name, [*table.row_key, "updated_at", "_op", "_run_id"])
        new = rows.filter(pc.equal(rows["_run_id"], report.run_id)).to_pylist()
        got = {(key_text(name, r), r["updated_at"], r["_op"]) for r in new}
        assert got == expected.get(name, set()), name


def test_silver_reflects_the_manifest(settings: Settings) -> None:
    manifest, _path = api.change_source(settings, SPEC)
    run(settings)
    lake = Lake(settings.lake_location)
    orders = {r["order_id"]: r for r in lake.read("silver", "orders").to_pylist()}
    customers = {r["customer_id"]: r for r in lake.read("silver", "customers").to_pylist()}
    for c in manifest.changes:
        if c["table"] == "orders":
            row = orders[c["key"]["order_id"]]
            if c["op"] in ("soft_delete", "hard_delete"):
                assert row["is_deleted"], c
            else:
                assert not row["is_deleted"], c
                for col, value in (c["new"] or {}).items():
                    if col == "order_status":
                        assert row[col] == value, c
        if c["table"] == "customers" and c["change"] == "customer_moves":
            row = customers[c["key"]["customer_id"]]
            assert row["customer_zip_code_prefix"] == c["new"]["customer_zip_code_prefix"]
    # every source order is in Silver (or quarantined with a reason), and no other order is,
    # except those hard-deleted, which stay flagged
    with open_source(settings.source_location) as db:
        source_ids = set(
            db.read_table(source_table("orders"), ["order_id"])["order_id"].to_pylist()
        )
    held = lake.read("quarantine", "orders", ["order_id"])
    quarantined = set(held["order_id"].to_pylist()) if held is not None else set()
    gone = {c["key"]["order_id"] for c in manifest.changes
            if c["table"] == "orders" and c["op"] == "hard_delete"}  # fmt: skip
    assert gone and not gone & source_ids
    assert source_ids - quarantined <= set(orders) <= source_ids | gone | quarantined
    assert all(orders[o]["is_deleted"] for o in gone)
    # a second run with no change writes nothing anywhere
    again = run(settings)
    assert sum(o.result.rows_written for o in again.outcomes if o.result) == 0
