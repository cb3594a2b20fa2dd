"""Gold facts: dimension keys chosen by point-in-time join on the event time; a missing or
late dimension row maps to the unknown member (sk 0) and is re-keyed on the next build.
Money stays DECIMAL; sums never pass through floats."""

from __future__ import annotations


def date_key(ts: str) -> str:
    """yyyymmdd as INTEGER; 0 (the unknown date) when missing or implausible."""
    return (
        f"CASE WHEN {ts} BETWEEN TIMESTAMP '2000-01-01' AND TIMESTAMP '2099-12-31' "
        f"THEN CAST(strftime({ts}, '%Y%m%d') AS INTEGER) ELSE 0 END"
    )


def rounded(expr: str, digits: int) -> str:
    """The DOUBLE ``expr`` rounded half away from zero to ``digits`` decimals, the same on
    every engine: ``round(x, d)`` is not (at a half, DuckDB rounds the double's exact binary
    value, Sail the double times 10^d; Spark makes DECIMAL of DECIMAL)."""
    scale = 10**digits
    return f"round(({expr}) * {scale}) / {scale}"


def pit(table: str, alias: str, on: str, at: str) -> str:
    """A point-in-time LEFT JOIN: the version whose [valid_from, valid_to) holds ``at``."""
    return (
        f"LEFT JOIN {table} {alias} ON {on} "
        f"AND {at} >= {alias}.valid_from AND {at} < {alias}.valid_to"
    )


def _days(start: str, end: str) -> str:
    """Days from ``start`` to ``end``, a DOUBLE."""
    return f"date_diff('second', {start}, {end}) / 86400"


PURCHASE = "o.order_purchase_timestamp"
CUSTOMER_PIT = pit("dim_customer", "dc", "dc.customer_unique_id = c.customer_unique_id", PURCHASE)

# Live Silver orders only: a soft- or hard-deleted order leaves the facts. Every customer row,
# deleted or not, maps an order to its person: the point-in-time join then finds the version
# valid when the order was bought, also when the customer was deleted later.
LIVE = """
    orders_live AS (SELECT * FROM orders WHERE NOT is_deleted),
    customer_people AS (SELECT customer_id, customer_unique_id FROM customers)
"""

FACT_ORDER_ITEM = f"""
WITH {LIVE}
SELECT i.order_id, i.order_item_id,
    coalesce(dc.customer_sk, 0) AS customer_sk,
    coalesce(dp.product_sk, 0) AS product_sk,
    coalesce(ds.seller_sk, 0) AS seller_sk,
    {date_key(PURCHASE)} AS purchase_date_key,
    {date_key("i.shipping_limit_date")} AS shipping_limit_date_key,
    o.order_status, {PURCHASE},
    i.price, i.freight_value, CAST(i.price + i.freight_value AS DECIMAL(14,2)) AS item_total
FROM order_items i
LEFT JOIN orders_live o ON o.order_id = i.order_id
LEFT JOIN customer_people c ON c.customer_id = o.customer_id
{CUSTOMER_PIT}
{pit("dim_product", "dp", "dp.product_id = i.product_id", PURCHASE)}
{pit("dim_seller", "ds", "ds.seller_id = i.seller_id", PURCHASE)}
WHERE NOT i.is_deleted
ORDER BY i.order_id, i.order_item_id
"""

# Batch reviews and streamed review events, one row per review: the version updated last wins
# (a batch row's updated_at, an event's event_time); on a tie the stream wins, being the
# fresher channel for the same instant. A batch delete newer than every event removes it.
REVIEWS_UNIFIED = """
    reviews_all AS (
        SELECT review_id, order_id, review_score, review_comment_title,
            review_comment_message, review_creation_date, review_answer_timestamp,
            updated_at, is_deleted, 'batch' AS source
        FROM order_reviews
        UNION ALL
        SELECT review_id, order_id, review_score, review_comment_title,
            review_comment_message, review_creation_date, review_answer_timestamp,
            updated_at, is_deleted, 'stream' AS source
        FROM review_events
    ),
    reviews_latest AS (
        SELECT * FROM reviews_all
        QUALIFY row_number() OVER (PARTITION BY review_id, order_id
            ORDER BY updated_at DESC, source DESC) = 1
    ),
    reviews_live AS (SELECT * FROM reviews_latest WHERE NOT is_deleted)
"""

FACT_REVIEW = f"""
WITH {REVIEWS_UNIFIED}
SELECT review_id, order_id, review_score,
    coalesce(review_comment_title, '') <> '' OR coalesce(review_comment_message, '') <> ''
        AS has_comment,
    {date_key("review_creation_date")} AS creation_date_key,
    {rounded("date_diff('second', review_creation_date, review_answer_timestamp) / 3600", 2)}
        AS answer_hours,
    source
FROM reviews_live
ORDER BY review_id, order_id
"""

FACT_PAYMENT = f"""
WITH {LIVE}
SELECT p.order_id, p.payment_sequential, p.payment_type,
    p.payment_installments AS installments, p.payment_value,
    coalesce(dc.customer_sk, 0) AS customer_sk,
    {date_key(PURCHASE)} AS purchase_date_key
FROM order_payments p
LEFT JOIN orders_live o ON o.order_id = p.order_id
LEFT JOIN customer_people c ON c.customer_id = o.customer_id
{CUSTOMER_PIT}
WHERE NOT p.is_deleted
ORDER BY p.order_id, p.payment_sequential
"""

FACT_ORDER = f"""
WITH {LIVE}, {REVIEWS_UNIFIED},
items AS (
    SELECT order_id, count(*) AS item_count, sum(price) AS items_value,
        sum(freight_value) AS freight_value
    FROM order_items WHERE NOT is_deleted GROUP BY order_id
),
payments AS (
    SELECT order_id, sum(payment_value) AS payment_value, count(*) AS payment_count,
        max(payment_installments) AS max_installments,
        arg_max(payment_type, (payment_value, payment_type)) AS main_payment_type
    FROM order_payments WHERE NOT is_deleted GROUP BY order_id
),
review AS (
    SELECT order_id, arg_max(review_score,
        (coalesce(review_answer_timestamp, review_creation_date), review_id)) AS review_score
    FROM reviews_live GROUP BY order_id
)
SELECT o.order_id, coalesce(dc.customer_sk, 0) AS customer_sk,
    {date_key(PURCHASE)} AS purchase_date_key,
    {date_key("o.order_approved_at")} AS approved_date_key,
    {date_key("o.order_delivered_customer_date")} AS delivered_date_key,
    {date_key("o.order_estimated_delivery_date")} AS estimated_date_key,
    o.order_status, {PURCHASE},
    coalesce(i.item_count, 0) AS item_count,
    coalesce(i.items_value, 0)::DECIMAL(14,2) AS items_value,
    coalesce(i.freight_value, 0)::DECIMAL(14,2) AS freight_value,
    coalesce(p.payment_value, 0)::DECIMAL(14,2) AS payment_value,
    coalesce(p.payment_count, 0) AS payment_count,
    p.max_installments, p.main_payment_type AS payment_type,
    {rounded(_days(PURCHASE, "o.order_delivered_customer_date"), 2)} AS delivery_days,
    {rounded(_days(PURCHASE, "o.order_estimated_delivery_date"), 2)} AS estimated_days,
    {rounded(_days("o.order_estimated_delivery_date", "o.order_delivered_customer_date"), 2)}
        AS delay_days,
    o.order_delivered_customer_date::DATE > o.order_estimated_delivery_date::DATE AS is_late,
    r.review_score
FROM orders_live o
LEFT JOIN customer_people c ON c.customer_id = o.customer_id
{CUSTOMER_PIT}
LEFT JOIN items i ON i.order_id = o.order_id
LEFT JOIN payments p ON p.order_id = o.order_id
LEFT JOIN review r ON r.order_id = o.order_id
ORDER BY o.order_id
"""
