"""The registry of dirty-row defects: each defect, applied to clean rows, breaks them as it says
(the generator's corruption and the change batches' one), and touches nothing else."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion.catalog import UPDATED_AT, source_table
from medallion.errors import CatalogError
from medallion.source.defects import (
    DEFECT_NAMES,
    DEFECTS,
    Corrupt,
    Defect,
    defects_of,
    find_defect,
)
from medallion.source.generator import GeneratedData

ROWS = 40
Check = Callable[[pa.Table, pa.Table, dict[str, pa.Table]], None]


def values(table: pa.Table, column: str) -> list[object]:
    return table[column].to_pylist()


def secs(table: pa.Table, column: str) -> np.ndarray:
    return table[column].cast(pa.int64()).fill_null(0).to_numpy() // 1_000_000


def unknown(table: pa.Table, column: str, reference: pa.Table) -> np.ndarray:
    known = pc.is_in(table[column], value_set=reference[column].combine_chunks())
    return ~pc.fill_null(known, False).to_numpy(zero_copy_only=False)


# -- what each defect does to a clean row: (clean, dirty, all clean tables) -> asserts ----------
def no_customer(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    assert dirty["customer_id"].null_count == ROWS


def unknown_customer(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    assert unknown(dirty, "customer_id", t["customers"]).all()


def order_time_travel(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    purchase, delivered = (
        secs(dirty, "order_purchase_timestamp"),
        secs(dirty, "order_delivered_customer_date"),
    )
    delivered_early = pc.is_valid(dirty["order_delivered_customer_date"]).to_numpy() & (
        delivered < purchase
    )
    odd_year = np.isin(pc.year(dirty["order_purchase_timestamp"]).to_numpy(), [1900, 2100])
    assert (delivered_early | odd_year).all()


def negative_price(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    assert values(dirty, "price") == [-p for p in values(clean, "price")]


def no_product(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    assert dirty["product_id"].null_count == ROWS


def unknown_product_or_seller(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    seller = unknown(dirty, "seller_id", t["sellers"])
    product = unknown(dirty, "product_id", t["products"])
    assert (seller ^ product).all()  # exactly one of the two references is broken


def score_out_of_range(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    assert set(values(dirty, "review_score")) <= {0, 6, 7, 8, 9}


def review_time_travel(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    created, answered = secs(dirty, "review_creation_date"), secs(dirty, "review_answer_timestamp")
    future = pc.year(dirty["review_creation_date"]).to_numpy() == 2100
    assert ((answered < created) | future).all()


def review_copy(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    assert not set(values(dirty, "review_id")) & set(values(t["order_reviews"], "review_id"))
    later = secs(dirty, UPDATED_AT) - secs(clean, UPDATED_AT)
    assert (later == 1).all()  # Silver rejects the later of two equal reviews


def point_copy(clean: pa.Table, dirty: pa.Table, t: dict[str, pa.Table]) -> None:
    last = t["geolocation"].num_rows
    assert values(dirty, "geolocation_id") == list(range(last + 1, last + ROWS + 1))
    assert (secs(dirty, UPDATED_AT) >= secs(clean, UPDATED_AT)).all()


EXPECTED: dict[tuple[str, str], Check] = {
    ("orders", "null_required"): no_customer,
    ("orders", "unknown_reference"): unknown_customer,
    ("orders", "bad_timestamp"): order_time_travel,
    ("order_items", "negative_price"): negative_price,
    ("order_items", "null_required"): no_product,
    ("order_items", "unknown_reference"): unknown_product_or_seller,
    ("order_reviews", "score_out_of_range"): score_out_of_range,
    ("order_reviews", "bad_timestamp"): review_time_travel,
    ("order_reviews", "duplicate"): review_copy,
    ("geolocation", "duplicate"): point_copy,
}
CORRUPTIONS = [
    pytest.param(d, how, id=f"{d.table}-{d.name}-{how}")
    for d in DEFECTS
    for how in ("corrupt", "batch")
    if getattr(d, how) is not None
]


@pytest.mark.parametrize(("defect", "how"), CORRUPTIONS)
def test_each_defect_breaks_clean_rows_as_declared(
    data: Callable[..., GeneratedData], defect: Defect, how: str
) -> None:
    tables = data(0.01).tables
    clean = tables[defect.table].slice(0, ROWS)
    corrupt: Corrupt = getattr(defect, how)
    dirty = corrupt(np.random.default_rng(5), clean, tables[defect.table].num_rows)
    assert dirty.schema.equals(clean.schema) and dirty.num_rows == ROWS
    EXPECTED[defect.table, defect.name](clean, dirty, tables)
    untouched = [c for c in clean.column_names if c not in defect.columns]
    assert dirty.select(untouched).equals(clean.select(untouched))
    changed = np.zeros(ROWS, dtype=np.bool_)
    for column in defect.columns:
        same = pc.fill_null(pc.equal(dirty[column], clean[column]), False).to_numpy()
        both_null = (pc.is_null(dirty[column]).to_numpy()) & pc.is_null(clean[column]).to_numpy()
        changed |= ~(same | both_null)
    assert changed.all()  # every row is broken
    again = corrupt(np.random.default_rng(5), clean, tables[defect.table].num_rows)
    assert again.equals(dirty)  # a seed gives the same rows


def test_every_defect_is_declared_once_with_real_columns() -> None:
    assert set(EXPECTED) == {(d.table, d.name) for d in DEFECTS}
    assert len(DEFECTS) == len(EXPECTED)
    for d in DEFECTS:
        assert set(d.columns) <= set(source_table(d.table).arrow_schema().names), d
        assert d.silver_rules, d
        assert find_defect(d.table, d.name) is d
    assert set(DEFECT_NAMES) == {d.name for d in DEFECTS} and len(DEFECT_NAMES) == 6
    assert [d.name for d in defects_of("order_items")] == [
        "negative_price",
        "null_required",
        "unknown_reference",
    ]
    with pytest.raises(CatalogError, match="no dirty-row defect"):
        find_defect("orders", "negative_price")


def test_copies_are_the_defects_that_change_the_key() -> None:
    for d in DEFECTS:
        assert d.copy == bool(set(source_table(d.table).row_key) & set(d.columns)), d
