"""Hard deletes by key buckets: exact tombstones, and keys read only in buckets that differ.

Small buckets (``hard_delete_bucket_rows=4``, buckets at any table size) split a few dozen
keys into 8 buckets, so each case can aim at one bucket; every test runs on SQLite and on real
PostgreSQL. A run right after another with no write to the source would skip the table on
SQLite (``skip_unchanged_source``, tested in ``test_bronze.py``); these tests turn that off to
compare keys on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from tests.integration.test_bronze import make_settings, run_bronze

from medallion.catalog import SOURCE_TABLES, SourceTable, source_table
from medallion.engine import default_engine
from medallion.runner import TaskResult
from medallion.settings import Settings
from medallion.source.db import open_source
from medallion.source.key_hash import row_hash
from medallion.storage import Lake

CUSTOMERS = source_table("customers")
ITEMS = source_table("order_items")
T0 = datetime(2018, 1, 1, 12, 0, 0)
BUCKETS = 8  # 40 keys / 4 per bucket -> 10 -> the power of two below


@pytest.fixture
def settings(tmp_path: Path, source_url: str) -> Settings:
    s = make_settings(
        tmp_path,
        source_url,
        hard_delete_bucket_rows=4,
        hard_delete_buckets_above=0,
        skip_unchanged_source=False,
    )
    s.home.mkdir(parents=True)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return s


def rows(table: SourceTable, keys: Sequence[tuple[Any, ...]], at: datetime) -> pa.Table:
    """Rows with the given keys, other business columns NULL, updated at ``at``."""
    columns: dict[str, pa.Array] = {}
    for c in table.all_columns:
        if c.name in table.row_key:
            values = [k[table.row_key.index(c.name)] for k in keys]
            columns[c.name] = pa.array(values, c.type.arrow)
        elif c.name == "updated_at":
            columns[c.name] = pa.array([at] * len(keys), c.type.arrow)
        else:
            columns[c.name] = pa.nulls(len(keys), c.type.arrow)
    return pa.table(columns)


def bucket_of(table: SourceTable, keys: Sequence[tuple[Any, ...]]) -> list[int]:
    """Each key's bucket, computed by the same SQL Bronze runs in DuckDB."""
    data = pa.table({k: [key[i] for key in keys] for i, k in enumerate(table.row_key)})
    data = data.cast(pa.schema([pa.field(k, table.column(k).type.arrow) for k in table.row_key]))
    sql = f"SELECT {row_hash(table, 'duckdb')} % {BUCKETS} AS b FROM data"
    return [int(b) for b in default_engine().query(sql, {"data": data})["b"].to_pylist()]


def tombstones(settings: Settings, table: SourceTable, run_id: str) -> set[tuple[Any, ...]]:
    data = DeltaTable(f"{settings.lake_location}/bronze/{table.name}").to_pyarrow_table()
    return {
        (*(r[k] for k in table.row_key), r["_source_updated_at"])
        for r in data.to_pylist()
        if r["_run_id"] == run_id and r["_op"] == "delete" and r["deleted_at"] is None
    }


def run(settings: Settings, table: SourceTable) -> tuple[TaskResult, str]:
    report = run_bronze(settings, tables=(table.name,))
    outcome = report.outcomes[0]
    assert report.ok, outcome.error
    assert outcome.result is not None
    return outcome.result, report.run_id


def seeded(settings: Settings, n: int = 40) -> list[tuple[str]]:
    keys = [(f"c{i:02d}",) for i in range(n)]
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, keys, T0))
    run(settings, CUSTOMERS)
    return keys


def soft_deleted(keys: Sequence[tuple[str]], at: datetime) -> pa.Table:
    """Customers with these keys soft-deleted (``deleted_at``) at ``at``."""
    data = rows(CUSTOMERS, keys, at)
    column = data.schema.get_field_index("deleted_at")
    return data.set_column(column, "deleted_at", pa.array([at] * len(keys), pa.timestamp("us")))


def delete(settings: Settings, table: SourceTable, keys: Sequence[tuple[Any, ...]]) -> None:
    with open_source(settings.source_location) as db:
        db.delete_rows(table, rows(table, keys, T0).select(list(table.row_key)))


def test_no_change_reads_no_key(settings: Settings) -> None:
    """New keys alone move the fingerprint by exactly themselves: nothing compared. A
    soft-deleted key hard-deleted later moves it otherwise: buckets compared, none differs
    (the key is live on neither side), no key read; with no commit to record the new key set,
    the next run compares the buckets again."""
    keys = seeded(settings)
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, [("new",)], T0 + timedelta(days=1)))
    result, _ = run(settings, CUSTOMERS)
    assert result.metrics["upserts"] == 1
    assert (result.metrics["delete_buckets"], compared(result)) == (0, 0)
    t2 = T0 + timedelta(days=2)
    soft = soft_deleted([keys[4]], t2)
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, soft)
    result, _ = run(settings, CUSTOMERS)
    assert (result.metrics["soft_deletes"], compared(result)) == (1, 0)
    delete(settings, CUSTOMERS, [keys[4]])
    for _ in range(2):
        result, _ = run(settings, CUSTOMERS)
        assert result.rows_written == 0
        assert result.metrics["delete_buckets"] == BUCKETS
        assert result.metrics["delete_buckets_differing"] == 0
        assert result.metrics["delete_source_keys_read"] == 0


def test_one_delete_reads_only_its_bucket(settings: Settings) -> None:
    keys = seeded(settings)
    buckets = bucket_of(CUSTOMERS, keys)
    victim = keys[7]
    delete(settings, CUSTOMERS, [victim])
    result, run_id = run(settings, CUSTOMERS)
    assert tombstones(settings, CUSTOMERS, run_id) == {(victim[0], T0)}
    same = [k for k, b in zip(keys, buckets, strict=True) if b == buckets[7] and k != victim]
    assert result.metrics["delete_buckets_differing"] == 1
    assert result.metrics["delete_source_keys_read"] == len(same)
    assert result.metrics["delete_bronze_keys_compared"] == len(same) + 1


def test_delete_and_late_insert_in_the_same_bucket(settings: Settings) -> None:
    """The count of the bucket stays the same: only the fingerprint sees the swap. The new
    key arrives stamped before the watermark (a late row), so it is no candidate either."""
    keys = seeded(settings)
    victim = keys[3]
    target = bucket_of(CUSTOMERS, [victim])[0]
    newcomer = next(
        k for k in ((f"n{i:02d}",) for i in range(200)) if bucket_of(CUSTOMERS, [k])[0] == target
    )
    delete(settings, CUSTOMERS, [victim])
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, [newcomer], T0 - timedelta(days=1)))
    result, run_id = run(settings, CUSTOMERS)
    assert tombstones(settings, CUSTOMERS, run_id) == {(victim[0], T0)}
    assert result.metrics["delete_buckets_differing"] == 1


def test_every_key_of_a_bucket_deleted(settings: Settings) -> None:
    keys = seeded(settings)
    buckets = bucket_of(CUSTOMERS, keys)
    gone = [k for k, b in zip(keys, buckets, strict=True) if b == buckets[0]]
    assert len(gone) > 1
    delete(settings, CUSTOMERS, gone)
    result, run_id = run(settings, CUSTOMERS)
    assert tombstones(settings, CUSTOMERS, run_id) == {(k[0], T0) for k in gone}
    assert result.metrics["delete_buckets_differing"] == 1
    assert result.metrics["delete_source_keys_read"] == 0


def test_reinsert_and_soft_delete_keep_their_meaning(settings: Settings) -> None:
    """A tombstoned key re-inserted is live again (no second tombstone); a soft-deleted key
    hard-deleted later gets none (its latest Bronze row is already a delete)."""
    keys = seeded(settings)
    t1 = T0 + timedelta(days=1)
    delete(settings, CUSTOMERS, [keys[1]])
    soft = soft_deleted([keys[2]], t1)
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, soft)
    _, run_id = run(settings, CUSTOMERS)
    assert tombstones(settings, CUSTOMERS, run_id) == {(keys[1][0], t1)}
    t2 = T0 + timedelta(days=2)
    with open_source(settings.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, [keys[1]], t2))
    delete(settings, CUSTOMERS, [keys[2]])
    result, run_id = run(settings, CUSTOMERS)
    assert tombstones(settings, CUSTOMERS, run_id) == set()
    assert result.metrics["upserts"] == 1
    result, _ = run(settings, CUSTOMERS)
    assert result.rows_written == 0
    assert result.metrics["delete_buckets_differing"] == 0


def test_composite_keys(settings: Settings) -> None:
    """order_items: one item of an order goes, its sibling stays; a whole order goes."""
    keys = [(f"o{i:02d}", j) for i in range(14) for j in (1, 2, 3)]
    with open_source(settings.source_location) as db:
        db.upsert(ITEMS, rows(ITEMS, keys, T0))
    run(settings, ITEMS)
    gone = [("o03", 2), ("o09", 1), ("o09", 2), ("o09", 3)]
    delete(settings, ITEMS, gone)
    result, run_id = run(settings, ITEMS)
    assert tombstones(settings, ITEMS, run_id) == {(o, i, T0) for o, i in gone}
    differing = len({*bucket_of(ITEMS, gone)})
    assert result.metrics["delete_buckets"] == BUCKETS
    assert result.metrics["delete_buckets_differing"] == differing
    assert result.metrics["delete_source_keys_read"] < len(keys) - len(gone)


# -- the source keys unchanged since the last commit: nothing to compare ------------------------
@pytest.fixture
def shipping(tmp_path: Path, source_url: str) -> Settings:
    """Default thresholds: a small table ships every source key (no buckets)."""
    s = make_settings(tmp_path, source_url, skip_unchanged_source=False)
    s.home.mkdir(parents=True)
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return s


def moved(keys: Sequence[tuple[str]], at: datetime) -> pa.Table:
    """Customers with these keys moved to another city at ``at``."""
    data = rows(CUSTOMERS, keys, at)
    city = data.schema.get_field_index("customer_city")
    return data.set_column(city, "customer_city", pa.array(["Elsewhere"] * len(keys)))


def compared(result: TaskResult) -> int:
    return int(result.metrics["delete_bronze_keys_compared"])


def test_unchanged_source_keys_read_no_bronze_key(shipping: Settings) -> None:
    keys = seeded(shipping)
    result, _ = run(shipping, CUSTOMERS)
    assert result.rows_written == 0
    assert compared(result) == 0
    assert result.metrics["delete_source_keys_read"] == len(keys)
    with open_source(shipping.source_location) as db:  # an update keeps the key set
        db.upsert(CUSTOMERS, moved([keys[5]], T0 + timedelta(days=1)))
    result, _ = run(shipping, CUSTOMERS)
    assert (result.metrics["upserts"], compared(result)) == (1, 0)
    Lake.from_settings(shipping).table("bronze", CUSTOMERS.name).compact(None, {})
    result, _ = run(shipping, CUSTOMERS)  # compaction is no data commit: still known
    assert (result.rows_written, compared(result)) == (0, 0)


def test_a_delete_hidden_by_a_late_insert_is_found(shipping: Settings) -> None:
    """The key count stays, no row is a candidate: only the keys' fingerprint moves."""
    keys = seeded(shipping)
    delete(shipping, CUSTOMERS, [keys[3]])
    with open_source(shipping.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, [("late",)], T0 - timedelta(days=1)))
    result, run_id = run(shipping, CUSTOMERS)
    assert tombstones(shipping, CUSTOMERS, run_id) == {(keys[3][0], T0)}
    assert compared(result) == len(keys)
    result, _ = run(shipping, CUSTOMERS)  # the tombstones' commit recorded the new key set
    assert (result.rows_written, compared(result)) == (0, 0)


def test_keys_that_move_without_a_commit_are_compared_every_run(shipping: Settings) -> None:
    """A soft-deleted key hard-deleted later changes the source keys but not Bronze: with no
    commit to record them in, each run compares again (and finds nothing) until one commits."""
    keys = seeded(shipping)
    t1 = T0 + timedelta(days=1)
    soft = soft_deleted([keys[2]], t1)
    with open_source(shipping.source_location) as db:
        db.upsert(CUSTOMERS, soft)
    result, _ = run(shipping, CUSTOMERS)
    assert (result.metrics["soft_deletes"], compared(result)) == (1, 0)
    delete(shipping, CUSTOMERS, [keys[2]])
    for _ in range(2):
        result, run_id = run(shipping, CUSTOMERS)
        assert (result.rows_written, compared(result)) == (0, len(keys) - 1)
        assert tombstones(shipping, CUSTOMERS, run_id) == set()
    with open_source(shipping.source_location) as db:
        db.upsert(CUSTOMERS, moved([keys[9]], T0 + timedelta(days=2)))
    result, _ = run(shipping, CUSTOMERS)
    assert (result.metrics["upserts"], compared(result)) == (1, len(keys) - 1)
    result, _ = run(shipping, CUSTOMERS)
    assert compared(result) == 0


def test_new_keys_alone_read_no_bronze_key_and_a_delete_beside_them_is_found(
    shipping: Settings,
) -> None:
    keys = seeded(shipping)
    with open_source(shipping.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, [("new1",), ("new2",)], T0 + timedelta(days=1)))
    result, _ = run(shipping, CUSTOMERS)
    assert (result.metrics["upserts"], compared(result)) == (2, 0)
    with open_source(shipping.source_location) as db:
        db.upsert(CUSTOMERS, rows(CUSTOMERS, [("new3",)], T0 + timedelta(days=2)))
    delete(shipping, CUSTOMERS, [keys[6]])
    result, run_id = run(shipping, CUSTOMERS)
    assert tombstones(shipping, CUSTOMERS, run_id) == {(keys[6][0], T0 + timedelta(days=2))}
    assert result.metrics["upserts"] == 1
    assert compared(result) == len(keys) + 2
