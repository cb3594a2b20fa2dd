"""Reading the source in batches (SQLite, no server): the rows of a window come oldest first,
typed as the catalog declares, in as many batches as they need, with or without an index on
``updated_at``; a column that starts with NULLs still reads as its type."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion.catalog import source_table
from medallion.source.db import open_source

SELLERS = source_table("sellers")
START = datetime(2024, 1, 1)


def _sellers(n: int) -> pa.Table:
    """``n`` sellers written in key order, their ``updated_at`` in another order (so that a
    result in key or insertion order is not also in time order); the first ten live, the
    rest soft-deleted at some point (``deleted_at`` starts with NULLs)."""
    minutes = [(i * 7919) % n for i in range(n)]
    return pa.table(
        {
            "seller_id": [f"s{i:05d}" for i in range(n)],
            "seller_zip_code_prefix": ["01000"] * n,
            "seller_city": [None if i % 3 else "sao paulo" for i in range(n)],
            "seller_state": ["SP"] * n,
            "updated_at": [START + timedelta(minutes=m) for m in minutes],
            "deleted_at": [None if i < 10 else START + timedelta(days=9) for i in range(n)],
        }
    )


@pytest.mark.parametrize("indexed", [True, False])
def test_a_window_reads_oldest_first_in_batches_typed_as_the_catalog(
    tmp_path: Path, indexed: bool
) -> None:
    rows = _sellers(500)
    with open_source(str(tmp_path / "source.db"), create=True) as db:
        db.create_tables([SELLERS])
        db.upsert(SELLERS, rows)
        if not indexed:
            db.execute('DROP INDEX "ix_sellers_updated_at"')
        db.batch_rows = 64
        columns = [c.name for c in SELLERS.all_columns]
        low, high = START + timedelta(minutes=99), START + timedelta(minutes=400)
        batches = list(db.rows_updated_between(SELLERS, columns, low, high))
        empty = list(db.rows_updated_between(SELLERS, columns, high, high))
        everything = list(db.rows_updated_between(SELLERS, columns, None, high))
    got = pa.Table.from_batches(batches)
    assert len(batches) > 1 and empty == []
    assert got.schema == pa.schema([pa.field(c.name, c.type.arrow) for c in SELLERS.all_columns])
    times = got["updated_at"].to_pylist()
    assert times == sorted(times) and len(times) == 301
    assert (min(times), max(times)) == (low + timedelta(minutes=1), high)
    inside = pc.and_(
        pc.greater(rows["updated_at"], pa.scalar(low)),
        pc.less_equal(rows["updated_at"], pa.scalar(high)),
    )
    want = rows.filter(inside)
    assert sorted(got.to_pylist(), key=str) == sorted(want.to_pylist(), key=str)
    whole = pa.Table.from_batches(everything)["updated_at"].to_pylist()
    assert whole == sorted(whole) and len(whole) == 401


def test_a_window_of_the_whole_table_is_read_in_table_order_and_sorted(tmp_path: Path) -> None:
    """Through the index, each row of a whole-table window costs SQLite a page read elsewhere
    in the table (1.7x the time of a scan and a sort for a million orders); a bounded window
    uses the index."""
    with open_source(str(tmp_path / "source.db"), create=True) as db:
        db.create_tables([SELLERS])
        db.upsert(SELLERS, _sellers(50))

        def plan(whole: bool) -> str:
            sql = db._select_sql(
                SELLERS, ["seller_id", "updated_at"], "updated_at > ?", "updated_at", whole=whole
            )
            return " | ".join(db.query(f"EXPLAIN QUERY PLAN {sql}", ["2024"])["detail"].to_pylist())

        assert "USING INDEX ix_sellers_updated_at" in plan(whole=False)
        assert "INDEX" not in plan(whole=True) and "SCAN" in plan(whole=True)


def test_an_order_must_be_one_of_the_columns_read(tmp_path: Path) -> None:
    with open_source(str(tmp_path / "source.db"), create=True) as db:
        db.create_tables([SELLERS])
        with pytest.raises(ValueError, match="order_by"):
            list(db.select_batches(SELLERS, ["seller_id"], order_by="updated_at"))
