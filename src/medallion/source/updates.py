"""The change types that touch existing rows: status steps, customer and seller moves,
product updates, soft and hard deletes, and late updates (visible after newer changes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import DELETED_AT, UPDATED_AT, source_table
from medallion.source.arrays import DAY, I64, US, choose, micro_timestamps, micros, zip_strings
from medallion.source.batch import (
    CHILDREN,
    Ctx,
    key_columns,
    np_column,
    parent_rows,
    partial_table,
    sample,
    select_orders,
)
from medallion.source.places import categories, places

_NEXT_STATUS = {
    "created": "approved",
    "approved": "shipped",
    "invoiced": "shipped",
    "processing": "shipped",
    "shipped": "delivered",
}


# -- updates --------------------------------------------------------------------------------------
def status_updates(ctx: Ctx, k: int) -> None:
    """Orders move one step: created → approved → shipped → delivered (timestamps kept ordered)."""
    o = ctx.orders
    status = np_column(o, "order_status")
    purchase, _ = micros(o, "order_purchase_timestamp")
    eligible = (
        ctx.live_orders() & np.isin(status, list(_NEXT_STATUS)) & (purchase < ctx.batch.start_us)
    )
    rows = ctx.pick_orders(eligible, k, "status_updates")
    if not len(rows):
        return
    old = o.take(pa.array(rows))
    times = ctx.batch.times(len(rows))
    now = times // US * US
    step = np.asarray([_NEXT_STATUS[s] for s in status[rows]])  # per changed order
    approved, has_approved = micros(old, "order_approved_at")
    carrier, has_carrier = micros(old, "order_delivered_carrier_date")
    delivered, has_delivered = micros(old, "order_delivered_customer_date")
    ships = np.isin(step, ["shipped", "delivered"])
    new = partial_table(
        "orders",
        {
            "order_id": old["order_id"],
            "order_status": pa.array(step.tolist(), pa.string()),
            "order_approved_at": micro_timestamps(np.where(has_approved, approved, now)),
            "order_delivered_carrier_date": micro_timestamps(
                np.where(has_carrier, carrier, now), ~(has_carrier | ships)
            ),
            "order_delivered_customer_date": micro_timestamps(
                np.where(step == "delivered", now, delivered),
                ~(has_delivered | (step == "delivered")),
            ),
            UPDATED_AT: micro_timestamps(times),
        },
    )
    ctx.batch.update("orders", new, old, "status_updates", "update")


def _new_places(
    ctx: Ctx, n: int, old_zip: Any, group: I64, *, sellers: bool = False
) -> tuple[pa.Array, I64]:
    """A new place per group whose zip differs from every old zip of the group's rows."""
    tries = 4
    zips, city = places().sample(ctx.rng, n * tries, sellers=sellers)
    text = zip_strings(zips).to_numpy(zero_copy_only=False).reshape(n, tries)
    clash = np.zeros((n, tries), dtype=np.bool_)
    for j in range(tries):  # one step per candidate
        same = (text[group, j] == old_zip).astype(np.float64)
        clash[:, j] = np.bincount(group, weights=same, minlength=n) > 0
    pick = np.argmax(~clash, axis=1)
    flat = np.arange(n) * tries + pick
    return zip_strings(zips[flat]), city[flat]


def _moved(ctx: Ctx, name: str, rows: I64, group: I64, *, n: int, change: str) -> None:
    """Rows of ``name`` get the new place of their group (one new place per group)."""
    prefix = name.removesuffix("s")
    table = ctx.tables[name]
    old = table.take(pa.array(rows))
    zip_col, city_col, state_col = (f"{prefix}_{c}" for c in ("zip_code_prefix", "city", "state"))
    zips, city = _new_places(ctx, n, np_column(old, zip_col), group, sellers=name == "sellers")
    geo = places()
    key = source_table(name).row_key[0]
    new = partial_table(
        name,
        {
            key: old[key],
            zip_col: zips.take(pa.array(group)),
            city_col: geo.names.take(pa.array(city[group])),
            state_col: geo.states.take(pa.array(city[group])),
            UPDATED_AT: micro_timestamps(ctx.batch.times(n)[group]),
        },
    )
    ctx.batch.update(name, new, old, change, "update")


def customer_moves(ctx: Ctx, k: int) -> None:
    """Customer_unique_ids move: all their customer rows get one new zip, city and state."""
    uid = ctx.tables["customers"]["customer_unique_id"]
    chosen = ctx.pick_people(k, "customer_moves")
    rows = np.flatnonzero(pc.is_in(uid, value_set=chosen).to_numpy(zero_copy_only=False))
    group = pc.index_in(uid.take(pa.array(rows)), value_set=chosen).to_numpy()
    _moved(ctx, "customers", rows, group.astype(np.int64), n=len(chosen), change="customer_moves")


def seller_moves(ctx: Ctx, k: int) -> None:
    """Sellers relocate to a new zip, city and state."""
    n = ctx.tables["sellers"].num_rows
    rows = sample(ctx.rng, np.arange(n), k, "seller_moves")
    group = np.arange(len(rows), dtype=np.int64)
    _moved(ctx, "sellers", rows, group, n=len(rows), change="seller_moves")


def _remeasure(rng: np.random.Generator, old: pa.ChunkedArray, typical: int) -> I64:
    """A different positive measure: the old one ± 5-25 % (at least 1), or a typical one."""
    values = np.asarray(old.fill_null(typical).to_numpy(), dtype=np.int64)
    delta = np.maximum(1, np.round(values * rng.uniform(0.05, 0.25, len(values)))).astype(np.int64)
    sign = np.where(rng.random(len(values)) < 0.5, -1, 1)
    new = values + sign * delta
    return np.where(new < 1, values + delta, new).astype(np.int64)


_MEASURES = (
    ("product_weight_g", 700),
    ("product_length_cm", 25),
    ("product_height_cm", 13),
    ("product_width_cm", 20),
)


def product_updates(ctx: Ctx, k: int) -> None:
    """Products get another real category, new measures, or both."""
    rng, products = ctx.rng, ctx.tables["products"]
    rows = sample(rng, np.arange(products.num_rows), k, "product_updates")
    if not len(rows):
        return
    old = products.take(pa.array(rows))
    m = len(rows)
    kind = choose(rng, m, (0.4, 0.4, 0.2))  # 0 category, 1 measures, 2 both
    cats = categories()["product_category_name"]
    old_idx = pc.index_in(old["product_category_name"], value_set=cats).fill_null(-1)
    old_idx_np = np.asarray(old_idx.to_numpy(), dtype=np.int64)
    new_idx = rng.integers(0, len(cats) - 1, m)
    new_idx += (old_idx_np >= 0) & (new_idx >= old_idx_np)
    recat = pa.array(kind != 1)
    columns: dict[str, Any] = {
        "product_id": old["product_id"],
        "product_category_name": pc.if_else(
            recat, cats.take(pa.array(new_idx)), old["product_category_name"]
        ),
    }
    for col, typical in _MEASURES:
        columns[col] = pc.if_else(
            pa.array(kind != 0), pa.array(_remeasure(rng, old[col], typical)), old[col]
        )
    columns[UPDATED_AT] = micro_timestamps(ctx.batch.times(m))
    ctx.batch.update(
        "products", partial_table("products", columns), old, "product_updates", "update"
    )


# -- deletes --------------------------------------------------------------------------------------
def soft_deletes(ctx: Ctx, k: int) -> None:
    """Orders and their live items, payments and reviews get ``deleted_at`` = ``updated_at``."""
    rows = ctx.pick_orders(ctx.live_orders(), k, "soft_deletes")
    if not len(rows):
        return
    ids = ctx.orders["order_id"].take(pa.array(rows)).combine_chunks()
    times = ctx.batch.times(len(rows))
    for name in ("orders", *CHILDREN):
        old = select_orders(ctx.tables[name], ids, live_only=True)
        when = micro_timestamps(times[parent_rows(old, ids)])
        new = partial_table(name, {**key_columns(name, old), DELETED_AT: when, UPDATED_AT: when})
        ctx.batch.update(name, new, old, "soft_deletes", "soft_delete")


def hard_deletes(ctx: Ctx, k: int) -> None:
    """Orders deleted together with all their items, payments and reviews."""
    rows = ctx.pick_orders(np.ones(len(ctx.taken), dtype=np.bool_), k, "hard_deletes")
    if not len(rows):
        return
    ids = ctx.orders["order_id"].take(pa.array(rows)).combine_chunks()
    times = ctx.batch.times(len(rows))
    for name in (*CHILDREN, "orders"):
        old = select_orders(ctx.tables[name], ids, live_only=False)
        ctx.batch.delete(name, old, times[parent_rows(old, ids)], "hard_deletes")


# -- late updates ---------------------------------------------------------------------------------
def _late_times(ctx: Ctx, name: str, n: int) -> I64:
    """The table's old max updated_at, then times less than 3 s before it."""
    top = ctx.max_us[name]
    out = top - ctx.rng.integers(1, 3 * US, n)
    out[:1] = top
    return out.astype(np.int64)


def _late_reviews(ctx: Ctx, k: int) -> int:
    reviews = ctx.tables["order_reviews"]
    if k == 0 or "order_reviews" not in ctx.max_us:
        return 0
    top = ctx.max_us["order_reviews"]
    answer, has_answer = micros(reviews, "review_answer_timestamp")
    created, has_created = micros(reviews, "review_creation_date")
    parent = parent_rows(reviews, ctx.orders["order_id"].combine_chunks())
    live = np.asarray(pc.is_null(reviews[DELETED_AT]).to_numpy(zero_copy_only=False))
    free = (parent >= 0) & ~ctx.taken[np.clip(parent, 0, None)]
    ok = (
        live
        & free
        & has_answer
        & has_created
        & (answer < top - 10 * US)
        & (created < top - DAY * US)
    )
    rows = sample(ctx.rng, np.flatnonzero(ok), k, "late_updates")
    ctx.taken[parent[rows]] = True
    old = reviews.take(pa.array(rows))
    times = _late_times(ctx, "order_reviews", len(rows))
    new = partial_table(
        "order_reviews",
        {
            **key_columns("order_reviews", old),
            "review_answer_timestamp": micro_timestamps(times // US * US),
            UPDATED_AT: micro_timestamps(times),
        },
    )
    ctx.batch.update("order_reviews", new, old, "late_updates", "update")
    return len(rows)


def _late_orders(ctx: Ctx, k: int) -> int:
    if k == 0 or "orders" not in ctx.max_us:
        return 0
    _, has_estimate = micros(ctx.orders, "order_estimated_delivery_date")
    rows = ctx.pick_orders(ctx.live_orders() & has_estimate, k, "late_updates")
    old = ctx.orders.take(pa.array(rows))
    estimate, _ = micros(old, "order_estimated_delivery_date")
    shift = ctx.rng.integers(1, 11, len(rows)) * DAY * US
    new = partial_table(
        "orders",
        {
            "order_id": old["order_id"],
            "order_estimated_delivery_date": micro_timestamps(estimate + shift),
            UPDATED_AT: micro_timestamps(_late_times(ctx, "orders", len(rows))),
        },
    )
    ctx.batch.update("orders", new, old, "late_updates", "update")
    return len(rows)


def late_updates(ctx: Ctx, k: int) -> None:
    """Updates visible late: review answers and estimated delivery dates, old updated_at."""
    done = _late_reviews(ctx, (k + 1) // 2)
    _late_orders(ctx, k - done)
