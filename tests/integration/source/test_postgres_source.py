"""The source package on a real PostgreSQL gives what it gives on embedded SQLite: the same
rows from the real Kaggle files, exact money, and the same change batch."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from medallion.catalog import SOURCE_TABLES, SourceTable, source_table
from medallion.source.changes import ChangeSpec, apply_changes
from medallion.source.db import SourceDatabase, open_source
from medallion.source.generator import GeneratorConfig, generate, write_to_source
from medallion.source.kaggle_csv import load_csv_dir

pytestmark = pytest.mark.postgres

LOADED_AT = datetime(2024, 1, 2, 3, 4, 5)
EVERYTHING = ChangeSpec(
    seed=3, new_orders=12, status_updates=6, customer_moves=5, product_updates=8,
    seller_moves=4, soft_deletes=4, hard_deletes=4, late_updates=6, dirty=14,
)  # fmt: skip
ITEMS = (
    '"order_id","order_item_id","product_id","seller_id","shipping_limit_date",'
    '"price","freight_value"\n'
    '"00010242fe8c5a6d1ba2dd792cb16214",1,"4244733e06e7ecb4970a6e2683c13e61",'
    '"48436dadf9f0c01e3ddaa6fb8beb4c1d",2017-09-19 09:45:35,58.90,13.29\n'
)


def _sorted(db: SourceDatabase, table: SourceTable) -> pa.Table:
    data = db.read_table(table)
    return data.sort_by([(c, "ascending") for c in table.row_key])


def test_real_files_load_into_postgres_as_into_sqlite(
    pg_url: str, olist_dir: Path, tmp_path: Path
) -> None:
    with open_source(pg_url) as pg, open_source(str(tmp_path / "s.db"), create=True) as lite:
        loaded = load_csv_dir(pg, olist_dir, loaded_at=LOADED_AT)
        load_csv_dir(lite, olist_dir, loaded_at=LOADED_AT)
        assert [(r.table, r.rows_upserted) for r in loaded] == [
            ("products", 32_951),
            ("sellers", 3_095),
            ("product_category_name_translation", 71),
        ]
        for r in loaded:
            table = source_table(r.table)
            assert _sorted(pg, table).equals(_sorted(lite, table)), r.table


def test_money_is_exact_and_duplicates_keep_the_last(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / source_table("order_items").csv_file).write_text(ITEMS + ITEMS.splitlines()[1])
    with open_source(pg_url) as db:
        [result] = load_csv_dir(db, tmp_path, loaded_at=LOADED_AT)
        assert (result.rows_in_file, result.duplicates_dropped, result.rows_upserted) == (2, 1, 1)
        items = db.read_table(source_table("order_items"), ["price", "freight_value"])
    assert items.to_pylist() == [{"price": Decimal("58.90"), "freight_value": Decimal("13.29")}]


def test_a_change_batch_on_postgresql_matches_sqlite(pg_url: str, tmp_path: Path) -> None:
    data = generate(GeneratorConfig(scale=0.01, seed=7))
    with open_source(pg_url) as pg, open_source(str(tmp_path / "s.db"), create=True) as lite:
        write_to_source(pg, data)
        write_to_source(lite, data)
        on_pg, on_lite = apply_changes(pg, EVERYTHING), apply_changes(lite, EVERYTHING)
        assert on_pg.to_json() == on_lite.to_json()
        for table in SOURCE_TABLES:
            assert _sorted(pg, table).equals(_sorted(lite, table)), table.name
