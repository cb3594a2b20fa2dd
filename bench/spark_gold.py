"""Gold of the PySpark baseline in Spark SQL: the facts of ``src/medallion/gold/facts.py``
translated (``arg_max`` -> ``max_by``, ``date_diff`` -> seconds between epochs), over
dimensions simplified to their current rows, so the point-in-time joins become joins on the
natural key. Reviews come from the batch table only (the bench streams no review events)."""

from __future__ import annotations

PURCHASE = "o.order_purchase_timestamp"


def date_key(ts: str) -> str:
    """yyyymmdd as INT; 0 (the unknown date) when missing or implausible."""
    return (
        f"CASE WHEN {ts} BETWEEN TIMESTAMP '2000-01-01' AND TIMESTAMP '2099-12-31' "
        f"THEN CAST(date_format({ts}, 'yyyyMMdd') AS INT) ELSE 0 END"
    )


def days(start: str, end: str) -> str:
    return f"round((unix_timestamp({end}) - unix_timestamp({start})) / 86400.0, 2)"


# The current row of each person, product and seller; surrogate keys numbered by natural key.
DIMENSIONS = {
    "dim_customer": """
        SELECT row_number() OVER (ORDER BY customer_unique_id) AS customer_sk, *
        FROM (
            SELECT customer_unique_id, customer_zip_code_prefix AS zip_code_prefix,
                customer_city AS city, customer_state AS state,
                row_number() OVER (PARTITION BY customer_unique_id
                    ORDER BY is_deleted, updated_at DESC, customer_id DESC) AS rn
            FROM customers WHERE customer_unique_id IS NOT NULL
        ) WHERE rn = 1
    """,
    "dim_product": """
        SELECT row_number() OVER (ORDER BY p.product_id) AS product_sk, p.product_id,
            p.product_category_name AS category,
            coalesce(t.product_category_name_english, p.product_category_name) AS category_en,
            p.product_weight_g AS weight_g, p.product_photos_qty AS photos
        FROM products p
        LEFT JOIN product_category_name_translation t
            ON t.product_category_name = p.product_category_name AND NOT t.is_deleted
        WHERE NOT p.is_deleted
    """,
    "dim_seller": """
        SELECT row_number() OVER (ORDER BY seller_id) AS seller_sk, seller_id,
            seller_zip_code_prefix AS zip_code_prefix, seller_city AS city, seller_state AS state
        FROM sellers WHERE NOT is_deleted
    """,
}

LIVE = """
    orders_live AS (SELECT * FROM orders WHERE NOT is_deleted),
    customer_people AS (SELECT customer_id, customer_unique_id FROM customers)
"""
CUSTOMER = "LEFT JOIN dim_customer dc ON dc.customer_unique_id = c.customer_unique_id"

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
{CUSTOMER}
LEFT JOIN dim_product dp ON dp.product_id = i.product_id
LEFT JOIN dim_seller ds ON ds.seller_id = i.seller_id
WHERE NOT i.is_deleted
ORDER BY i.order_id, i.order_item_id
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
{CUSTOMER}
WHERE NOT p.is_deleted
ORDER BY p.order_id, p.payment_sequential
"""

FACT_ORDER = f"""
WITH {LIVE},
reviews_live AS (SELECT * FROM order_reviews WHERE NOT is_deleted),
items AS (
    SELECT order_id, count(*) AS item_count, sum(price) AS items_value,
        sum(freight_value) AS freight_value
    FROM order_items WHERE NOT is_deleted GROUP BY order_id
),
payments AS (
    SELECT order_id, sum(payment_value) AS payment_value, count(*) AS payment_count,
        max(payment_installments) AS max_installments,
        max_by(payment_type, struct(payment_value, payment_type)) AS main_payment_type
    FROM order_payments WHERE NOT is_deleted GROUP BY order_id
),
review AS (
    SELECT order_id, max_by(review_score,
        struct(coalesce(review_answer_timestamp, review_creation_date), review_id))
        AS review_score
    FROM reviews_live GROUP BY order_id
)
SELECT o.order_id, coalesce(dc.customer_sk, 0) AS customer_sk,
    {date_key(PURCHASE)} AS purchase_date_key,
    {date_key("o.order_approved_at")} AS approved_date_key,
    {date_key("o.order_delivered_customer_date")} AS delivered_date_key,
    {date_key("o.order_estimated_delivery_date")} AS estimated_date_key,
    o.order_status, {PURCHASE},
    coalesce(i.item_count, 0) AS item_count,
    CAST(coalesce(i.items_value, 0) AS DECIMAL(14,2)) AS items_value,
    CAST(coalesce(i.freight_value, 0) AS DECIMAL(14,2)) AS freight_value,
    CAST(coalesce(p.payment_value, 0) AS DECIMAL(14,2)) AS payment_value,
    coalesce(p.payment_count, 0) AS payment_count,
    p.max_installments, p.main_payment_type AS payment_type,
    {days(PURCHASE, "o.order_delivered_customer_date")} AS delivery_days,
    {days(PURCHASE, "o.order_estimated_delivery_date")} AS estimated_days,
    {days("o.order_estimated_delivery_date", "o.order_delivered_customer_date")} AS delay_days,
    CAST(o.order_delivered_customer_date AS DATE) > CAST(o.order_estimated_delivery_date AS DATE)
        AS is_late,
    r.review_score
FROM orders_live o
LEFT JOIN customer_people c ON c.customer_id = o.customer_id
{CUSTOMER}
LEFT JOIN items i ON i.order_id = o.order_id
LEFT JOIN payments p ON p.order_id = o.order_id
LEFT JOIN review r ON r.order_id = o.order_id
ORDER BY o.order_id
"""

FACTS = {"fact_order_item": FACT_ORDER_ITEM, "fact_payment": FACT_PAYMENT, "fact_order": FACT_ORDER}
