"""The source's change token: it moves with every committed write, and only there is one."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.source.db import change_token, open_source

CUSTOMERS = source_table("customers")
T0 = datetime(2018, 1, 1)


def customer(key: str, city: str = "rio", at: datetime = T0) -> pa.Table:
    return pa.table(
        {
            "customer_id": [key],
            "customer_unique_id": [f"u{key}"],
            "customer_zip_code_prefix": ["01037"],
            "customer_city": [city],
            "customer_state": ["RJ"],
            "updated_at": pa.array([at], pa.timestamp("us")),
            "deleted_at": pa.array([None], pa.timestamp("us")),
        }
    )


def test_every_committed_write_moves_the_sqlite_token(tmp_path: Path) -> None:
    location = str(tmp_path / "source.db")
    with open_source(location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
        db.upsert(CUSTOMERS, customer("c1"))
    seen = [change_token(location)]
    assert seen[0] is not None and seen[0].startswith("sqlite:")
    with open_source(location) as db:  # reads move nothing
        db.read_table(CUSTOMERS)
        db.stats([CUSTOMERS])
    assert change_token(location) == seen[0]
    writes = [
        lambda db: db.upsert(CUSTOMERS, customer("c2")),  # an insert
        lambda db: db.upsert(CUSTOMERS, customer("c2", "santos")),  # an update in place
        lambda db: db.delete_rows(CUSTOMERS, pa.table({"customer_id": ["c1"]})),
        lambda db: db.execute('ALTER TABLE "olist_customers_dataset" ADD COLUMN "x" TEXT'),
    ]
    for write in writes:
        with open_source(location) as db:
            write(db)
        seen.append(change_token(location))
    assert len(set(seen)) == len(seen), seen


def test_a_write_by_another_program_moves_the_token(tmp_path: Path) -> None:
    """Not only our own writes: any SQLite connection that commits (here Python's sqlite3,
    changing one value without touching ``updated_at``)."""
    location = str(tmp_path / "source.db")
    with open_source(location, create=True) as db:
        db.create_tables([CUSTOMERS])
        db.upsert(CUSTOMERS, customer("c1"))
    before = change_token(location)
    with sqlite3.connect(location) as con:
        con.execute("UPDATE olist_customers_dataset SET customer_city = 'recife'")
    assert change_token(location) != before


def test_no_token_in_wal_mode_nor_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """In WAL mode a commit may leave the counter as it was; PostgreSQL has no such text."""
    location = str(tmp_path / "source.db")
    with open_source(location, create=True) as db:
        db.create_tables([CUSTOMERS])
    with sqlite3.connect(location) as con:
        con.execute("PRAGMA journal_mode=WAL")
    assert change_token(location) is None
    with open_source(pg_url, create=True) as db:
        db.create_tables([CUSTOMERS])
    assert change_token(pg_url) is None


@pytest.mark.parametrize("missing", [True, False])
def test_an_unreadable_file_has_no_token(tmp_path: Path, missing: bool) -> None:
    location = str(tmp_path / "source.db")
    with open_source(location, create=True) as db:
        db.create_tables([CUSTOMERS])
        if missing:
            Path(location).unlink()
        else:
            Path(location).write_bytes(b"short")
    assert change_token(location) is None
