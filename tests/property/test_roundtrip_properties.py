"""Values of every column type survive source -> Bronze unchanged (hypothesis)."""

from __future__ import annotations

import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.pipeline import build_tasks
from medallion.runner import RunContext, run_tasks
from medallion.settings import Settings
from medallion.source.db import open_source

ITEMS = source_table("order_items")
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
money = st.decimals(min_value=Decimal("-99999.99"), max_value=Decimal("99999.99"), places=2)
moment = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1))
row = st.fixed_dictionaries({
    "product_id": st.none() | text,
    "seller_id": st.none() | text,
    "shipping_limit_date": st.none() | moment,
    "price": st.none() | money,
    "freight_value": st.none() | money,
    "updated_at": moment,
    "deleted_at": st.none() | moment,
})  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, min_size=1, max_size=30))
def test_source_rows_reach_bronze_exactly(rows: list[dict]) -> None:
    data = [{"order_id": f"o{i:04d}", "order_item_id": i + 1, **r} for i, r in enumerate(rows)]
    table = pa.Table.from_pylist(
        [{f.name: d.get(f.name) for f in ITEMS.arrow_schema()} for d in data],
        schema=ITEMS.arrow_schema(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(home=Path(tmp), retries=0, checks=False)
        with open_source(s.source_location, create=True) as db:
            db.create_tables(SOURCE_TABLES)
            db.upsert(ITEMS, table)
        ctx = RunContext(run_id="prop", settings=s)
        report = run_tasks(build_tasks(["bronze"], ["order_items"]), ctx)
        assert report.ok, report.outcomes[0].error
        bronze = DeltaTable(f"{s.lake_location}/bronze/order_items").to_pyarrow_table()
    got = {r["order_id"]: r for r in bronze.to_pylist()}
    for expected in table.to_pylist():
        actual = got[expected["order_id"]]
        for column, value in expected.items():
            assert actual[column] == value, (column, value, actual[column])
        op = "delete" if expected["deleted_at"] is not None else "upsert"
        assert actual["_op"] == op and actual["_source_updated_at"] == expected["updated_at"]
    assert bronze.num_rows == len(rows)
