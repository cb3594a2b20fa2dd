"""The business questions, as named SQL over Gold (run with `medallion query NAME`)."""

from __future__ import annotations

from dataclasses import dataclass

from medallion.registry import Registry

SOLD = "order_status NOT IN ('canceled', 'unavailable')"


@dataclass(frozen=True)
class NamedQuery:
    name: str
    title: str
    sql: str


QUERIES: tuple[NamedQuery, ...] = (
    NamedQuery(
        "monthly_revenue",
        "Monthly revenue, orders and average order value",
        f"""
        SELECT strftime(order_purchase_timestamp, '%Y-%m') AS month, count(*) AS orders,
            sum(payment_value) AS revenue, round(avg(payment_value), 2) AS avg_order_value
        FROM fact_order WHERE {SOLD} AND purchase_date_key <> 0
        GROUP BY month ORDER BY month
        """,
    ),
    NamedQuery(
        "top_categories",
        "Top product categories by revenue",
        f"""
        SELECT coalesce(p.category_name_english, 'unknown') AS category,
            count(DISTINCT f.order_id) AS orders, count(*) AS units, sum(f.price) AS revenue
        FROM fact_order_item f JOIN dim_product p ON p.product_sk = f.product_sk
        WHERE f.{SOLD}
        GROUP BY category ORDER BY revenue DESC, category LIMIT 15
        """,
    ),
    NamedQuery(
        "rfm_segments",
        "RFM segment sizes and value",
        """
        SELECT segment, count(*) AS customers, sum(monetary) AS monetary,
            round(avg(monetary), 2) AS avg_monetary, round(avg(recency_days), 1) AS avg_recency
        FROM feature_customer_rfm GROUP BY segment ORDER BY customers DESC, segment
        """,
    ),
    NamedQuery(
        "revenue_by_state",
        "Revenue by customer state, with the address valid at purchase time",
        f"""
        SELECT coalesce(c.state, 'unknown') AS state, count(*) AS orders,
            sum(o.payment_value) AS revenue
        FROM fact_order o JOIN dim_customer c ON c.customer_sk = o.customer_sk
        WHERE o.{SOLD}
        GROUP BY state ORDER BY revenue DESC, state
        """,
    ),
    NamedQuery(
        "delivery_by_state",
        "Delivery time and late-delivery share by customer state",
        """
        SELECT coalesce(c.state, 'unknown') AS state, count(*) AS delivered_orders,
            round(avg(o.delivery_days), 2) AS avg_delivery_days,
            round(avg(CASE WHEN o.is_late THEN 1.0 ELSE 0.0 END), 4) AS late_share
        FROM fact_order o JOIN dim_customer c ON c.customer_sk = o.customer_sk
        WHERE o.order_status = 'delivered' AND o.delivery_days IS NOT NULL
        GROUP BY state ORDER BY delivered_orders DESC, state
        """,
    ),
    NamedQuery(
        "seller_reliability",
        "Seller reliability against customer satisfaction",
        """
        SELECT CASE WHEN late_delivery_rate IS NULL THEN 'no deliveries'
                WHEN late_delivery_rate = 0 THEN '0%'
                WHEN late_delivery_rate <= 0.05 THEN '0-5%'
                WHEN late_delivery_rate <= 0.15 THEN '5-15%'
                ELSE '>15%' END AS late_rate_band,
            count(*) AS sellers, sum(orders) AS orders,
            round(avg(avg_review_score), 3) AS avg_review_score,
            round(avg(avg_delivery_days), 2) AS avg_delivery_days
        FROM feature_seller_reliability
        GROUP BY late_rate_band ORDER BY min(coalesce(late_delivery_rate, 2)), late_rate_band
        """,
    ),
    NamedQuery(
        "day_type_effects",
        "Weekday versus weekend and holiday purchases",
        f"""
        WITH days AS (
            SELECT date_key, CASE WHEN is_holiday THEN 'holiday'
                WHEN is_weekend THEN 'weekend' ELSE 'weekday' END AS day_type
            FROM dim_date WHERE date_key <> 0
        ),
        per_day AS (
            SELECT purchase_date_key, count(*) AS orders, sum(payment_value) AS revenue
            FROM fact_order WHERE {SOLD} GROUP BY purchase_date_key
        )
        SELECT d.day_type, count(*) AS days, sum(p.orders) AS orders,
            round(sum(p.orders) / count(*), 2) AS orders_per_day,
            round(sum(p.revenue) / count(*), 2) AS revenue_per_day
        FROM per_day p JOIN days d ON d.date_key = p.purchase_date_key
        GROUP BY d.day_type ORDER BY d.day_type
        """,
    ),
)

_REGISTRY = Registry("query", QUERIES)


def named_query(name: str) -> NamedQuery:
    return _REGISTRY[name]
