"""The ``new_orders`` change type: new orders with their customers, items and payments."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.errors import SourceError
from medallion.source.arrays import (
    DAY,
    I64,
    US,
    build_table,
    choose,
    group_positions,
    micro_timestamps,
    money,
    random_ids,
    timestamps,
    zip_strings,
)
from medallion.source.batch import Ctx
from medallion.source.orders import installments, split_cents
from medallion.source.places import places
from medallion.source.profile import PAYMENT_TYPES


def _new_customers(ctx: Ctx, k: int, times: I64) -> pa.Table:
    """Customer rows for ``k`` new orders: ~15 % returning customer_unique_ids, the rest new."""
    rng, customers = ctx.rng, ctx.tables["customers"]
    chosen = ctx.pick_people(round(k * 0.15), "new_orders")
    first = pc.index_in(chosen, value_set=customers["customer_unique_id"])
    home = customers.take(first)
    n_new = k - len(chosen)
    zips, city = places().sample(rng, n_new)
    geo = places()
    order = rng.permutation(k)
    return build_table(
        "customers",
        {
            "customer_id": random_ids(rng, k),
            "customer_unique_id": _concat(
                home["customer_unique_id"], random_ids(rng, n_new), order
            ),
            "customer_zip_code_prefix": _concat(
                home["customer_zip_code_prefix"], zip_strings(zips), order
            ),
            "customer_city": _concat(home["customer_city"], geo.names.take(pa.array(city)), order),
            "customer_state": _concat(
                home["customer_state"], geo.states.take(pa.array(city)), order
            ),
            "updated_at": micro_timestamps(times),
        },
    )


def _concat(a: pa.ChunkedArray, b: pa.Array, order: I64) -> pa.Array:
    return pa.concat_arrays([a.combine_chunks().cast(pa.string()), b]).take(pa.array(order))


def sale_pairs(ctx: Ctx) -> pa.Table:
    """(product, seller, price, freight) of existing sales whose product and seller exist."""
    items = ctx.tables["order_items"]
    ok = pc.and_(
        pc.is_in(items["product_id"], value_set=ctx.tables["products"]["product_id"]),
        pc.is_in(items["seller_id"], value_set=ctx.tables["sellers"]["seller_id"]),
    )
    ok = pc.and_(ok, pc.greater(pc.fill_null(items["price"], Decimal(0)), Decimal(0)))
    pairs = items.filter(ok).select(["product_id", "seller_id", "price", "freight_value"])
    if pairs.num_rows == 0:
        raise SourceError("new orders need existing order items with known products and sellers")
    return pairs


def _new_items(ctx: Ctx, order_ids: pa.Array, times: I64) -> tuple[pa.Table, I64]:
    rng, k = ctx.rng, len(order_ids)
    count = np.where(rng.random(k) < 0.9, 1, rng.integers(2, 5, k)).astype(np.int64)
    order, position = group_positions(count)
    pairs = sale_pairs(ctx)
    sale = pa.array(rng.integers(0, pairs.num_rows, len(order)))
    chosen = pairs.take(sale)
    totals = np.bincount(
        order, weights=_cents(chosen["price"]) + _cents(chosen["freight_value"]), minlength=k
    ).astype(np.int64)
    seconds = times // US
    items = build_table(
        "order_items",
        {
            "order_id": order_ids.take(pa.array(order)),
            "order_item_id": pa.array(position + 1),
            "product_id": chosen["product_id"],
            "seller_id": chosen["seller_id"],
            "shipping_limit_date": timestamps(seconds[order] + 6 * DAY),
            "price": chosen["price"],
            "freight_value": chosen["freight_value"],
            "updated_at": micro_timestamps(times[order]),
        },
    )
    return items, totals


def _new_payments(ctx: Ctx, order_ids: pa.Array, totals: I64, times: I64) -> pa.Table:
    """One payment per order, or a credit card plus a voucher; values add up exactly."""
    rng, k = ctx.rng, len(order_ids)
    count = np.where(rng.random(k) < 0.95, 1, 2).astype(np.int64)
    order, position = group_positions(count)
    single = np.asarray([0, 1, 3])[choose(rng, len(order), (0.75, 0.2, 0.05))]
    kind = np.where(count[order] == 1, single, np.where(position == 0, 0, 2)).astype(np.int64)
    weight = rng.random(len(order)) + np.where(position == 0, 1.0, 0.1)
    return build_table(
        "order_payments",
        {
            "order_id": order_ids.take(pa.array(order)),
            "payment_sequential": pa.array(position + 1),
            "payment_type": pa.array(PAYMENT_TYPES).take(pa.array(kind)),
            "payment_installments": pa.array(installments(rng, kind)),
            "payment_value": money(split_cents(totals, order, weight)),
            "updated_at": micro_timestamps(times[order]),
        },
    )


def new_orders(ctx: Ctx, k: int) -> None:
    """New orders (created or approved) with their customers, items and payments."""
    if k == 0:
        return
    rng, times = ctx.rng, ctx.batch.times(k)
    customers = _new_customers(ctx, k, times)
    approved = rng.random(k) < 0.7
    seconds = times // US
    purchase = seconds - np.where(approved, rng.integers(60, 1800, k), 0)
    ids = random_ids(rng, k)
    orders = build_table(
        "orders",
        {
            "order_id": ids,
            "customer_id": customers["customer_id"],
            "order_status": pa.array(np.where(approved, "approved", "created").tolist()),
            "order_purchase_timestamp": timestamps(purchase),
            "order_approved_at": timestamps(seconds, ~approved),
            "order_estimated_delivery_date": timestamps(
                purchase - purchase % DAY + rng.integers(15, 35, k) * DAY
            ),
            "updated_at": micro_timestamps(times),
        },
    )
    items, totals = _new_items(ctx, ids, times)
    ctx.batch.insert("customers", customers, "new_orders")
    ctx.batch.insert("orders", orders, "new_orders")
    ctx.batch.insert("order_items", items, "new_orders")
    ctx.batch.insert("order_payments", _new_payments(ctx, ids, totals, times), "new_orders")


def _cents(column: pa.ChunkedArray | pa.Array) -> I64:
    values = pc.cast(column, pa.float64()).fill_null(0).to_numpy()
    return np.round(np.asarray(values) * 100).astype(np.int64)
