"""The ``dirty`` change type: new rows broken by the defects of the registry, in rotation.

Each inserted row is built clean (a new order, item or review, or a copy of an existing review
or GPS point) and then corrupted by its defect's ``batch`` corruption.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from medallion.catalog import DELETED_AT, UPDATED_AT, source_table
from medallion.source.arrays import (
    DAY,
    US,
    build_table,
    day_start,
    micro_timestamps,
    random_ids,
    set_column,
    timestamps,
)
from medallion.source.batch import Ctx, np_column, parent_rows, sample, select_orders
from medallion.source.defects import Defect, find_defect
from medallion.source.new_orders import sale_pairs
from medallion.source.orders import review_texts

# the defects a batch inserts, in rotation
_ROTATION = tuple(
    find_defect(table, name)
    for table, name in (
        ("orders", "null_required"),
        ("order_items", "negative_price"),
        ("order_items", "unknown_reference"),
        ("orders", "bad_timestamp"),
        ("order_reviews", "score_out_of_range"),
        ("geolocation", "duplicate"),
        ("order_reviews", "duplicate"),
    )
)


def _corrupted(ctx: Ctx, defect: Defect, rows: pa.Table, last_id: int = 0) -> pa.Table:
    assert defect.batch is not None, f"{defect.table} {defect.name} is not made by batches"
    return defect.batch(ctx.rng, rows, last_id)


def _restamped(ctx: Ctx, copies: pa.Table) -> pa.Table:
    """Copies live again, at the batch's next change times."""
    n = copies.num_rows
    copies = set_column(copies, UPDATED_AT, micro_timestamps(ctx.batch.times(n)))
    return set_column(copies, DELETED_AT, pa.nulls(n, pa.timestamp("us")))


# -- new rows -------------------------------------------------------------------------------------
def _orders(ctx: Ctx, n: int, defect: Defect) -> None:
    """New orders: delivered ones for a defect on the delivery date, else just created; with a
    random customer unless the defect is on the customer."""
    times = ctx.batch.times(n)
    secs = times // US
    delivered = "order_delivered_customer_date" in defect.columns
    columns = {
        "order_id": random_ids(ctx.rng, n),
        "order_status": pa.array(["delivered" if delivered else "created"] * n, pa.string()),
        "order_purchase_timestamp": timestamps(secs),
        "order_estimated_delivery_date": timestamps(day_start(secs) + 20 * DAY),
        UPDATED_AT: micro_timestamps(times),
    }
    customers = ctx.tables["customers"]["customer_id"]
    if "customer_id" not in defect.columns and len(customers):
        columns["customer_id"] = customers.take(pa.array(ctx.rng.integers(0, len(customers), n)))
    if delivered:
        columns["order_approved_at"] = timestamps(secs + 3600)
        columns["order_delivered_carrier_date"] = timestamps(secs + DAY)
        columns["order_delivered_customer_date"] = timestamps(secs + 2 * DAY)
    rows = _corrupted(ctx, defect, build_table("orders", columns))
    ctx.batch.insert("orders", rows, "dirty", defect.name)


def _items(ctx: Ctx, n: int, defect: Defect) -> None:
    """Extra items on existing orders, sold before by the same seller at the same price."""
    rows = ctx.pick_orders(ctx.live_orders(), n, "dirty")
    if not len(rows):
        return
    ids = ctx.orders["order_id"].take(pa.array(rows)).combine_chunks()
    items = select_orders(ctx.tables["order_items"], ids, live_only=False)
    last = np.zeros(len(rows), dtype=np.int64)
    np.maximum.at(last, parent_rows(items, ids), np_column(items, "order_item_id").astype(np.int64))
    pairs = sale_pairs(ctx)
    pairs = pairs.take(pa.array(ctx.rng.integers(0, pairs.num_rows, len(rows))))
    times = ctx.batch.times(len(rows))
    table = build_table(
        "order_items",
        {
            "order_id": ids,
            "order_item_id": pa.array(last + 1),
            "product_id": pairs["product_id"],
            "seller_id": pairs["seller_id"],
            "shipping_limit_date": timestamps(times // US + 6 * DAY),
            "price": pairs["price"],
            "freight_value": pairs["freight_value"],
            UPDATED_AT: micro_timestamps(times),
        },
    )
    ctx.batch.insert("order_items", _corrupted(ctx, defect, table), "dirty", defect.name)


def _reviews(ctx: Ctx, n: int, defect: Defect) -> None:
    """New five-star reviews of existing orders; the defect draws its score before the texts
    and ids are drawn (the order of draws is part of what a seed produces)."""
    rng = ctx.rng
    rows = ctx.pick_orders(ctx.live_orders(), n, "dirty")
    times = ctx.batch.times(len(rows))
    secs = times // US
    five = np.full(len(rows), 5, dtype=np.int64)
    scored = _corrupted(ctx, defect, pa.table({"review_score": pa.array(five)}))
    title, message = review_texts(rng, five)
    columns = {
        "review_id": random_ids(rng, len(rows)),
        "order_id": ctx.orders["order_id"].take(pa.array(rows)),
        "review_score": scored["review_score"],
        "review_comment_title": title,
        "review_comment_message": message,
        "review_creation_date": timestamps(day_start(secs)),
        "review_answer_timestamp": timestamps(secs),
        UPDATED_AT: micro_timestamps(times),
    }
    ctx.batch.insert("order_reviews", build_table("order_reviews", columns), "dirty", defect.name)


# -- copies ---------------------------------------------------------------------------------------
def _review_copies(ctx: Ctx, n: int, defect: Defect) -> None:
    """Copies of reviews whose orders this batch has not touched."""
    reviews = ctx.tables["order_reviews"]
    parent = parent_rows(reviews, ctx.orders["order_id"].combine_chunks())
    free = (parent >= 0) & ~ctx.taken[np.clip(parent, 0, None)]
    rows = sample(ctx.rng, np.flatnonzero(free), n, "dirty")
    ctx.taken[parent[rows]] = True
    copies = _corrupted(ctx, defect, reviews.take(pa.array(rows)))
    ctx.batch.insert("order_reviews", _restamped(ctx, copies), "dirty", defect.name)


def _point_copies(ctx: Ctx, n: int, defect: Defect) -> None:
    """Copies of random GPS points (read from the source: the snapshot holds only their ids)."""
    if not len(ctx.geo_ids) or n == 0:
        return
    source = ctx.geo_ids[ctx.rng.integers(0, len(ctx.geo_ids), n)]
    wanted = np.unique(source)
    db, geo = ctx.db, source_table("geolocation")
    marks = ", ".join(db.param(i + 1) for i in range(len(wanted)))
    sql = f'SELECT * FROM {db.qualified(geo)} WHERE "geolocation_id" IN ({marks})'
    found = db.cast_to_catalog(geo, db.query(sql, [int(v) for v in wanted]))
    found = found.sort_by("geolocation_id")
    copies = found.take(pa.array(np.searchsorted(np_column(found, "geolocation_id"), source)))
    copies = _corrupted(ctx, defect, copies, last_id=int(ctx.geo_ids[-1]))
    copies = _restamped(ctx, copies).select(geo.arrow_schema().names)
    ctx.batch.insert("geolocation", copies, "dirty", defect.name)


_MAKERS: dict[tuple[str, bool], Callable[[Ctx, int, Defect], None]] = {
    ("orders", False): _orders,
    ("order_items", False): _items,
    ("order_reviews", False): _reviews,
    ("order_reviews", True): _review_copies,
    ("geolocation", True): _point_copies,
}


def dirty(ctx: Ctx, k: int) -> None:
    """``k`` dirty rows, the defects of :data:`_ROTATION` in turn."""
    per_kind = np.bincount(np.arange(k) % len(_ROTATION), minlength=len(_ROTATION))
    for defect, n in zip(_ROTATION, per_kind.tolist(), strict=True):
        if n:
            _MAKERS[defect.table, defect.copy](ctx, n, defect)
