"""The order tables of the generated source: orders, their customers, items, payments and
reviews, with the time of each row's last change derived from the order's events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.source.arrays import (
    DAY,
    F64,
    I64,
    US,
    Mask,
    Rng,
    build_table,
    choose,
    day_start,
    group_positions,
    lognormal,
    money,
    random_ids,
    timestamps,
    zip_strings,
)
from medallion.source.dimensions import Products
from medallion.source.places import places
from medallion.source.profile import (
    BLACK_FRIDAY,
    FIRST_PURCHASE,
    GROWTH_KNOTS,
    HOUR_WEIGHTS,
    INSTALLMENT_WEIGHTS,
    LAST_PURCHASE_DAY,
    MESSAGE_SEPARATORS,
    MESSAGES,
    ORDER_STATUSES,
    PAYMENT_TYPES,
    SCORE_SHARES,
    SCORES,
    SINGLE_PAYMENT_SHARES,
    STATUS_SHARES,
    TITLES,
    UNHAPPY_SCORE_SHARES,
    UNIQUE_CUSTOMER_SHARE,
)


@dataclass(frozen=True)
class Orders:
    ids: pa.Array
    status: I64  # index into ORDER_STATUSES
    purchase: I64
    approved: I64
    carrier: I64
    delivered: I64
    estimated: I64
    has_approved: Mask
    has_carrier: Mask
    has_delivered: Mask
    unique: I64  # customer_unique_id index
    micros: I64  # sub-second part of updated_at

    @property
    def n(self) -> int:
        return len(self.status)

    @property
    def last_event(self) -> I64:
        """The latest timestamp set on each order (the time of its last change)."""
        out = np.where(self.has_approved, self.approved, self.purchase)
        out = np.where(self.has_carrier, self.carrier, out)
        return np.where(self.has_delivered, self.delivered, out)

    @property
    def paid_at(self) -> I64:
        return np.where(self.has_approved, self.approved, self.purchase)


def purchase_times(rng: Rng, n: int) -> I64:
    """Purchase timestamps from 2016-09-04 to 2018-10-17, growing over time, by hour of day."""
    days = np.arange(FIRST_PURCHASE, LAST_PURCHASE_DAY + 1, DAY, dtype=np.int64)
    knots_t = np.asarray([k[0] for k in GROWTH_KNOTS], dtype=np.float64)
    knots_v = np.asarray([k[1] for k in GROWTH_KNOTS], dtype=np.float64)
    weight = np.interp(days.astype(np.float64), knots_t, knots_v)
    weight[days == BLACK_FRIDAY] *= 4
    day = rng.choice(days, size=n, p=weight / weight.sum())
    hour = choose(rng, n, HOUR_WEIGHTS)
    return (day + hour * 3600 + rng.integers(0, 3600, n)).astype(np.int64)


def draw_orders(rng: Rng, n: int) -> Orders:
    purchase = purchase_times(rng, n)
    status = choose(rng, n, STATUS_SHARES)
    name = np.asarray(ORDER_STATUSES)[status]
    canceled = name == "canceled"
    approved = purchase + lognormal(rng, 1200, 1.8, n, low=60, high=20 * DAY).astype(np.int64)
    carrier = approved + lognormal(rng, 2 * DAY, 0.8, n, low=3600, high=30 * DAY).astype(np.int64)
    delivered = carrier + lognormal(rng, 7 * DAY, 0.6, n, low=DAY, high=90 * DAY).astype(np.int64)
    has_approved = (name != "created") & ~(canceled & (rng.random(n) < 0.23))
    has_carrier = np.isin(name, ["shipped", "delivered"]) | (
        canceled & has_approved & (rng.random(n) < 0.12)
    )
    has_delivered = (name == "delivered") | (canceled & has_carrier & (rng.random(n) < 0.08))
    n_unique = max(1, round(n * UNIQUE_CUSTOMER_SHARE))
    unique = np.empty(n, dtype=np.int64)
    perm = rng.permutation(n)
    unique[perm[:n_unique]] = np.arange(n_unique)
    unique[perm[n_unique:]] = rng.integers(0, n_unique, n - n_unique)
    return Orders(
        ids=random_ids(rng, n),
        status=status,
        purchase=purchase,
        approved=approved,
        carrier=carrier,
        delivered=delivered,
        estimated=day_start(purchase) + rng.integers(15, 35, n) * DAY,
        has_approved=has_approved,
        has_carrier=has_carrier,
        has_delivered=has_delivered,
        unique=unique,
        micros=rng.integers(0, US, n),
    )


def build_orders(o: Orders, customer_ids: pa.Array) -> pa.Table:
    return build_table(
        "orders",
        {
            "order_id": o.ids,
            "customer_id": customer_ids,
            "order_status": pa.array(ORDER_STATUSES).take(pa.array(o.status)),
            "order_purchase_timestamp": timestamps(o.purchase),
            "order_approved_at": timestamps(o.approved, ~o.has_approved),
            "order_delivered_carrier_date": timestamps(o.carrier, ~o.has_carrier),
            "order_delivered_customer_date": timestamps(o.delivered, ~o.has_delivered),
            "order_estimated_delivery_date": timestamps(o.estimated),
            "updated_at": timestamps(o.last_event, micros=o.micros),
        },
    )


def build_customers(rng: Rng, o: Orders, n_zips: int) -> tuple[pa.Table, I64]:
    """One customer row per order; rows of a customer_unique_id share one address."""
    geo = places()
    pool_zip, pool_city = geo.sample(rng, n_zips)
    n_unique = int(o.unique.max()) + 1
    home = rng.integers(0, n_zips, n_unique)[o.unique]
    city = pa.array(pool_city[home])
    table = build_table(
        "customers",
        {
            "customer_id": random_ids(rng, o.n),
            "customer_unique_id": random_ids(rng, n_unique).take(pa.array(o.unique)),
            "customer_zip_code_prefix": zip_strings(pool_zip[home]),
            "customer_city": geo.names.take(city),
            "customer_state": geo.states.take(city),
            "updated_at": timestamps(o.purchase, micros=rng.integers(0, US, o.n)),
        },
    )
    return table, pool_zip[home]


# -- items and payments ---------------------------------------------------------------------------
def build_items(rng: Rng, o: Orders, p: Products, seller_ids: pa.Array) -> tuple[pa.Table, I64]:
    """Order items (90 % single) and each order's total in cents (price + freight)."""
    n = o.n
    extra = np.clip(2 + rng.geometric(0.753, n) - 1, 2, 21)
    count = np.where(rng.random(n) < 0.9, 1, extra).astype(np.int64)
    order, position = group_positions(count)
    first = rng.choice(len(p.price_cents), size=n, p=p.popularity)
    own = rng.choice(len(p.price_cents), size=len(order), p=p.popularity)
    same = (rng.random(n) < 0.5)[order]
    product = np.where(same | (position == 0), first[order], own)
    weight = np.nan_to_num(p.weight_g[product], nan=500.0)
    freight = np.round((700 + weight * 0.4) * rng.lognormal(0, 0.3, len(order))).astype(np.int64)
    freight[rng.random(len(order)) < 0.003] = 0
    price = p.price_cents[product]
    totals = np.bincount(order, weights=price + freight, minlength=n).astype(np.int64)
    shipping = o.paid_at[order] + rng.integers(2 * DAY, 8 * DAY, len(order))
    table = build_table(
        "order_items",
        {
            "order_id": o.ids.take(pa.array(order)),
            "order_item_id": pa.array(position + 1),
            "product_id": p.table["product_id"].take(pa.array(product)),
            "seller_id": seller_ids.take(pa.array(p.seller[product])),
            "shipping_limit_date": timestamps(shipping),
            "price": money(price),
            "freight_value": money(freight),
            "updated_at": timestamps(o.paid_at[order], micros=o.micros[order]),
        },
    )
    return table, totals


def split_cents(totals: I64, group: I64, weight: F64) -> I64:
    """Split each group's total into its rows by ``weight``; sums stay exact to the cent."""
    wsum = np.bincount(group, weights=weight, minlength=len(totals))
    safe = np.where(wsum[group] > 0, wsum[group], 1.0)
    share = np.floor(totals[group] * (weight / safe)).astype(np.int64)
    rest = totals - np.bincount(group, weights=share, minlength=len(totals)).astype(np.int64)
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    share[first] += rest[group[first]]
    return share


def installments(rng: Rng, kind: I64) -> I64:
    """Installments per payment: 0..24 for credit cards, 1 otherwise."""
    card = choose(rng, len(kind), tuple(float(w) for w in INSTALLMENT_WEIGHTS))
    return np.where(kind == 0, card, 1).astype(np.int64)


def build_payments(rng: Rng, o: Orders, totals: I64, scale: float) -> pa.Table:
    n = o.n
    multi = rng.random(n) < 0.03
    count = np.where(multi, np.clip(1 + rng.geometric(0.67, n), 2, 29), 1).astype(np.int64)
    undefined = np.zeros(n, dtype=np.bool_)
    n_undefined = round(3 * scale)
    canceled = np.flatnonzero(np.asarray(ORDER_STATUSES)[o.status] == "canceled")
    if n_undefined and len(canceled):
        undefined[rng.choice(canceled, size=min(n_undefined, len(canceled)), replace=False)] = True
    count += undefined
    order, position = group_positions(count)
    is_undefined = undefined[order] & (position == count[order] - 1)
    single = choose(rng, len(order), SINGLE_PAYMENT_SHARES)
    lead = np.where(rng.random(len(order)) < 0.75, 0, 2)
    kind = np.where(multi[order], np.where(position == 0, lead, 2), single)
    kind = np.where(is_undefined, 4, kind).astype(np.int64)
    weight = np.where(is_undefined, 0.0, rng.random(len(order)) + np.where(position == 0, 1.0, 0.1))
    value = split_cents(totals, order, weight)
    return build_table(
        "order_payments",
        {
            "order_id": o.ids.take(pa.array(order)),
            "payment_sequential": pa.array(position + 1),
            "payment_type": pa.array(PAYMENT_TYPES).take(pa.array(kind)),
            "payment_installments": pa.array(installments(rng, kind)),
            "payment_value": money(value),
            "updated_at": timestamps(o.paid_at[order], micros=o.micros[order]),
        },
    )


# -- reviews --------------------------------------------------------------------------------------
def review_texts(rng: Rng, score: I64) -> tuple[pa.Array, pa.Array]:
    """Titles (~12 % set) and messages (~41 % set) matching each review's score."""
    n = len(score)
    mood = np.where(score <= 2, 0, np.where(score == 3, 1, 2))

    def pick(options: tuple[tuple[str, ...], ...]) -> pa.Array:
        flat = pa.array([t for group in options for t in group])
        sizes = np.asarray([len(g) for g in options], dtype=np.int64)
        start = np.cumsum(sizes) - sizes
        index = start[mood] + (rng.random(n) * sizes[mood]).astype(np.int64)
        return flat.take(pa.array(index))

    title = pick(TITLES)
    first, second = pick(MESSAGES), pick(MESSAGES)
    sep = pa.array(MESSAGE_SEPARATORS).take(pa.array(rng.integers(0, len(MESSAGE_SEPARATORS), n)))
    joined = pc.binary_join_element_wise(first, second, sep)
    message = pc.if_else(pa.array(rng.random(n) < 0.3), joined, first)
    none = pa.scalar(None, pa.string())
    return (
        pc.if_else(pa.array(rng.random(n) < 0.12), title, none),
        pc.if_else(pa.array(rng.random(n) < 0.41), message, none),
    )


def review_scores(rng: Rng, happy: Mask) -> I64:
    scores = np.asarray(SCORES, dtype=np.int64)
    good = scores[choose(rng, len(happy), SCORE_SHARES)]
    bad = scores[choose(rng, len(happy), UNHAPPY_SCORE_SHARES)]
    return np.where(happy, good, bad).astype(np.int64)


def build_reviews(rng: Rng, o: Orders) -> pa.Table:
    """~99.2 % of orders reviewed, ~0.55 % twice; ~0.8 % of review ids shared by two orders."""
    base = np.flatnonzero(rng.random(o.n) < 0.9923)
    again = rng.choice(base, size=round(len(base) * 0.0055), replace=False) if len(base) else base
    order = np.concatenate([base, np.sort(again)]).astype(np.int64)
    later = np.r_[np.zeros(len(base), np.int64), rng.integers(1, 30, len(again))] * DAY
    n = len(order)
    ref = np.where(o.has_delivered[order], o.delivered[order], o.estimated[order])
    wait = np.where(rng.random(n) < 0.85, 0, rng.integers(1, 6, n)) * DAY
    created = day_start(ref) + DAY + wait + later
    answered = created + lognormal(rng, DAY, 1.0, n, low=60, high=60 * DAY).astype(np.int64)
    ids = random_ids(rng, n)
    shared = round(len(base) * 0.008)
    if shared and len(base) >= 2 * shared:
        pair = rng.choice(len(base), size=2 * shared, replace=False)
        index = np.arange(n)
        index[pair[shared:]] = pair[:shared]
        ids = ids.take(pa.array(index))
    score = review_scores(rng, np.asarray(ORDER_STATUSES)[o.status[order]] == "delivered")
    title, message = review_texts(rng, score)
    return build_table(
        "order_reviews",
        {
            "review_id": ids,
            "order_id": o.ids.take(pa.array(order)),
            "review_score": pa.array(score),
            "review_comment_title": title,
            "review_comment_message": message,
            "review_creation_date": timestamps(created),
            "review_answer_timestamp": timestamps(answered),
            "updated_at": timestamps(answered, micros=rng.integers(0, US, n)),
        },
    )
