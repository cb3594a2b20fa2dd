"""The registry of dirty-row defects: every kind of broken source row, declared once as data.

A :class:`Defect` names the table and the columns it breaks, how it corrupts rows, and the
Silver rules that quarantine such a row. The generator corrupts existing rows with ``corrupt``
(:func:`medallion.source.generator.generate` with a dirty rate); a change batch inserts new
rows corrupted with ``batch`` (the ``dirty`` change type). A copy defect does not touch its
row: the dirty row is an extra copy of it under a new key, stamped later than the original.

Corruptions draw from the random stream in a fixed order, so a seed gives the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import UPDATED_AT
from medallion.errors import CatalogError
from medallion.source.arrays import (
    DAY,
    I64,
    US,
    Rng,
    random_ids,
    replace_rows,
    seconds,
    set_column,
    timestamps,
)
from medallion.source.dimensions import geolocation_times
from medallion.source.profile import epoch

Corrupt = Callable[[Rng, pa.Table, int], pa.Table]
"""``(rng, rows, last_id) -> rows``: every one of ``rows`` corrupted (same rows, same schema);
``last_id`` is the table's highest serial key, after which copies get theirs."""


@dataclass(frozen=True)
class Defect:
    """One kind of dirty row."""

    table: str
    name: str  # as the dirty-row list and the change manifest name it
    columns: tuple[str, ...]  # the columns it changes
    corrupt: Corrupt  # how the generator corrupts existing rows
    silver_rules: tuple[str, ...]  # Silver quarantines the row under (at least) one of these
    batch: Corrupt | None = None  # how a change batch corrupts the rows it inserts (None: never)
    copy: bool = False  # the dirty row is a new copy of the row, which itself stays clean


# -- corruptions ----------------------------------------------------------------------------------
def _nulls(column: str) -> Corrupt:
    """The column becomes NULL."""

    def corrupt(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
        return set_column(rows, column, pa.nulls(rows.num_rows, rows.schema.field(column).type))

    return corrupt


def _unknown_ids(column: str) -> Corrupt:
    """The column refers to random ids that no row has."""

    def corrupt(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
        return set_column(rows, column, random_ids(rng, rows.num_rows))

    return corrupt


def _negative_price(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    return set_column(rows, "price", pc.negate(rows["price"].combine_chunks()))


def _unknown_seller_or_product(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    """Half the rows (at random) name an unknown seller, the others an unknown product."""
    seller = rng.random(rows.num_rows) < 0.5
    rows = replace_rows(
        rows, "seller_id", np.flatnonzero(seller), random_ids(rng, int(seller.sum()))
    )
    unknown = random_ids(rng, int((~seller).sum()))
    return replace_rows(rows, "product_id", np.flatnonzero(~seller), unknown)


def _delivered_before_purchase(rows: pa.Table, where: I64, days: I64 | int) -> pa.Table:
    purchase = seconds(rows, "order_purchase_timestamp")[where]
    delivered = timestamps(purchase - days * DAY)
    return replace_rows(rows, "order_delivered_customer_date", where, delivered)


def _order_time_travel(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    """Half the orders (at random) delivered 1-29 days before purchase, the others bought in
    1900 or 2100 (at the same time of day)."""
    purchase = seconds(rows, "order_purchase_timestamp")
    early = rng.random(rows.num_rows) < 0.5
    delivered, odd_year = np.flatnonzero(early), np.flatnonzero(~early)
    rows = _delivered_before_purchase(rows, delivered, rng.integers(1, 30, len(delivered)))
    year = np.where(rng.random(len(odd_year)) < 0.5, epoch(1900, 1, 1), epoch(2100, 1, 1))
    moved = timestamps(year + purchase[odd_year] % DAY)
    return replace_rows(rows, "order_purchase_timestamp", odd_year, moved)


def _delivered_three_days_early(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    return _delivered_before_purchase(rows, np.arange(rows.num_rows, dtype=np.int64), 3)


def _score_out_of_range(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    odd = np.asarray([0, 6, 7, 8, 9], dtype=np.int64)[rng.integers(0, 5, rows.num_rows)]
    return set_column(rows, "review_score", pa.array(odd))


def _review_time_travel(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    """Half the reviews (at random) created in 2100, the others answered 1-5 days before they
    were created."""
    created = seconds(rows, "review_creation_date")
    late = rng.random(rows.num_rows) < 0.5
    early = np.flatnonzero(~late)
    answer = created[early] - rng.integers(1, 6, len(early)) * DAY
    rows = replace_rows(rows, "review_answer_timestamp", early, timestamps(answer))
    future = epoch(2100, 1, 1) + created[late] % (365 * DAY)
    return replace_rows(rows, "review_creation_date", np.flatnonzero(late), timestamps(future))


def _review_copy(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    """A new review_id, a second later: of two equal reviews Silver rejects the later."""
    rows = set_column(rows, "review_id", random_ids(rng, rows.num_rows))
    later = pc.add(rows[UPDATED_AT], pa.scalar(US, pa.duration("us")))
    return set_column(rows, UPDATED_AT, later.combine_chunks())


def _point_copy(rng: Rng, rows: pa.Table, last_id: int) -> pa.Table:
    """The next serial ids: of two equal points Silver rejects the one with the larger id."""
    ids = np.arange(last_id + 1, last_id + rows.num_rows + 1, dtype=np.int64)
    rows = set_column(rows, "geolocation_id", pa.array(ids))
    return set_column(rows, UPDATED_AT, geolocation_times(ids))


# -- the registry ---------------------------------------------------------------------------------
# The generator corrupts each table's defects in this order (part of what a seed produces).
DEFECTS = (
    Defect("orders", "null_required", ("customer_id",),
           corrupt=_nulls("customer_id"), batch=_nulls("customer_id"),
           silver_rules=("customer_id_required",)),
    Defect("orders", "unknown_reference", ("customer_id",),
           corrupt=_unknown_ids("customer_id"),
           silver_rules=("customer_id_exists_in_customers",)),
    Defect("orders", "bad_timestamp", ("order_delivered_customer_date", "order_purchase_timestamp"),
           corrupt=_order_time_travel, batch=_delivered_three_days_early,
           silver_rules=("delivered_after_purchase", "timestamps_plausible")),
    Defect("order_items", "negative_price", ("price",),
           corrupt=_negative_price, batch=_negative_price,
           silver_rules=("price_non_negative",)),
    Defect("order_items", "null_required", ("product_id",),
           corrupt=_nulls("product_id"),
           silver_rules=("product_id_required",)),
    Defect("order_items", "unknown_reference", ("seller_id", "product_id"),
           corrupt=_unknown_seller_or_product, batch=_unknown_ids("product_id"),
           silver_rules=("seller_id_exists_in_sellers", "product_id_exists_in_products")),
    Defect("order_reviews", "score_out_of_range", ("review_score",),
           corrupt=_score_out_of_range, batch=_score_out_of_range,
           silver_rules=("review_score_range",)),
    Defect("order_reviews", "bad_timestamp", ("review_answer_timestamp", "review_creation_date"),
           corrupt=_review_time_travel,
           silver_rules=("answered_after_creation", "timestamps_plausible")),
    Defect("order_reviews", "duplicate", ("review_id", UPDATED_AT),
           corrupt=_review_copy, batch=_review_copy, copy=True,
           silver_rules=("duplicate_content",)),
    Defect("geolocation", "duplicate", ("geolocation_id", UPDATED_AT),
           corrupt=_point_copy, batch=_point_copy, copy=True,
           silver_rules=("duplicate_point",)),
)  # fmt: skip
DEFECT_NAMES = tuple(dict.fromkeys(d.name for d in DEFECTS))


def find_defect(table: str, name: str) -> Defect:
    """The registry's ``name`` defect of ``table``."""
    for d in DEFECTS:
        if (d.table, d.name) == (table, name):
            return d
    raise CatalogError(f"no dirty-row defect {name!r} for table {table}")


def defects_of(table: str) -> tuple[Defect, ...]:
    """The defects of ``table``, in registry order."""
    return tuple(d for d in DEFECTS if d.table == table)
