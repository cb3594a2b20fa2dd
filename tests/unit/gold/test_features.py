"""Feature SQL on small hand-computed cases."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from medallion.engine import default_engine
from medallion.gold import features

D = datetime


def orders(*rows: tuple[str, str, str, datetime, datetime | None]) -> pa.Table:
    keys = ("order_id", "customer_id", "order_status", "order_purchase_timestamp",
            "order_delivered_customer_date")  # fmt: skip
    table = pa.Table.from_pylist([dict(zip(keys, r, strict=True)) for r in rows])
    return table.append_column("is_deleted", pa.array([False] * len(rows)))


def customers(*pairs: tuple[str, str]) -> pa.Table:
    return pa.table({
        "customer_id": [p[0] for p in pairs],
        "customer_unique_id": [p[1] for p in pairs],
        "is_deleted": [False] * len(pairs),
    })  # fmt: skip


def payments(*rows: tuple[str, str]) -> pa.Table:
    return pa.table({
        "order_id": [r[0] for r in rows],
        "payment_value": pa.array([Decimal(r[1]) for r in rows], pa.decimal128(12, 2)),
        "is_deleted": [False] * len(rows),
    })  # fmt: skip


def rfm(as_of: date | None, o: pa.Table, c: pa.Table, p: pa.Table) -> dict[str, dict]:
    out = default_engine().query(
        features.rfm_sql(as_of), {"orders": o, "customers": c, "order_payments": p}
    )
    return {r["customer_unique_id"]: r for r in out.to_pylist()}


ORDERS = orders(
    ("o1", "c1", "delivered", D(2018, 1, 1), D(2018, 1, 5)),
    ("o2", "c2", "delivered", D(2018, 1, 10), D(2018, 1, 12)),
    ("o3", "c2", "delivered", D(2018, 2, 1), D(2018, 2, 3)),
    ("o4", "c3", "delivered", D(2018, 3, 1), D(2018, 3, 9)),
    ("o5", "c3", "canceled", D(2018, 3, 2), None),
    ("o6", "c4", "delivered", D(2018, 3, 20), D(2018, 4, 2)),
)
CUSTOMERS = customers(("c1", "u1"), ("c2", "u2"), ("c3", "u3"), ("c4", "u4"))
PAYMENTS = payments(("o1", "100.00"), ("o2", "50.00"), ("o3", "25.50"), ("o4", "10.00"),
             ("o4", "5.00"), ("o5", "999.00"), ("o6", "70.00"))  # fmt: skip


def test_rfm_matches_a_hand_computed_case() -> None:
    got = rfm(None, ORDERS, CUSTOMERS, PAYMENTS)  # as of the last purchase date, 2018-03-20
    assert {k: (v["recency_days"], v["frequency"], v["monetary"]) for k, v in got.items()} == {
        "u1": (78, 1, Decimal("100.00")),
        "u2": (47, 2, Decimal("75.50")),
        "u3": (19, 1, Decimal("15.00")),  # the canceled order does not count
        # u4's order was purchased on the as-of date but delivered after it: not known yet
    }
    # quintiles by rank over 3 customers: ranks 1,2,3 -> 1 + floor(5 * (rank - 1) / 3)
    assert {k: (v["r_score"], v["f_score"], v["m_score"]) for k, v in got.items()} == {
        "u1": (1, 1, 4),
        "u2": (2, 4, 2),
        "u3": (4, 1, 1),
    }
    assert {k: v["segment"] for k, v in got.items()} == {
        "u1": "Lost",
        "u2": "At Risk",
        "u3": "Promising",
    }
    assert {v["rfm_score"] for v in got.values()} == {114, 242, 411}


def test_rfm_as_of_an_earlier_date_uses_only_what_was_known() -> None:
    got = rfm(date(2018, 1, 11), ORDERS, CUSTOMERS, PAYMENTS)
    # o2 was purchased on 01-10 but delivered on 01-12: unknown as delivered on 01-11
    assert {k: (v["recency_days"], v["frequency"], v["monetary"]) for k, v in got.items()} == {
        "u1": (10, 1, Decimal("100.00")),
    }
    assert got["u1"]["as_of_date"] == date(2018, 1, 11)


def test_product_performance_does_not_double_count_orders() -> None:
    items = pa.table({
        "order_id": ["o1", "o1", "o2", "o3"],
        "product_id": ["p", "p", "p", "q"],
        "price": pa.array([Decimal("10.00")] * 3 + [Decimal("7.00")], pa.decimal128(12, 2)),
        "is_deleted": [False] * 4,
    })  # fmt: skip
    reviews = pa.table({
        "review_id": ["r1", "r2", "r3"],
        "order_id": ["o1", "o1", "o2"],  # o1 has two reviews
        "review_score": pa.array([5, 3, 1], pa.int16()),
    })  # fmt: skip
    out = default_engine().query(
        features.PRODUCT_PERFORMANCE, {"order_items": items, "fact_review": reviews}
    )
    got = {r["product_id"]: r for r in out.to_pylist()}
    p = got["p"]
    assert (p["units"], p["orders"], p["revenue"], p["review_count"]) == (3, 2, Decimal("30.00"), 3)
    # o1 counts once with its average 4.0, o2 with 1.0: (4 + 1) / 2
    assert p["avg_review_score"] == 2.5
    assert (got["q"]["orders"], got["q"]["avg_review_score"], got["q"]["review_count"]) == (
        1,
        None,
        0,
    )


def test_average_delivery_days_are_exact_whatever_the_row_order() -> None:
    """0.01 and 0.02 days average to exactly 0.015, which rounds half away from zero to 0.02;
    an average of doubles gives 0.01499... and 0.01, or either, by summation order."""
    days = [0.01, 0.02] * 500
    n = len(days)
    items = pa.table({
        "order_id": [f"o{i}" for i in range(n)],
        "seller_id": ["s"] * n,
        "price": pa.array([Decimal("1.00")] * n, pa.decimal128(12, 2)),
        "is_deleted": [False] * n,
    })  # fmt: skip
    facts = pa.table({
        "order_id": [f"o{i}" for i in range(n)],
        "order_status": ["delivered"] * n,
        "delivery_days": days,
        "is_late": [False] * n,
        "review_score": pa.array([5] * n, pa.int16()),
    })  # fmt: skip
    got = set()
    for order in (range(n), reversed(range(n))):
        picked = pa.array(list(order))
        out = default_engine().query(
            features.SELLER_RELIABILITY,
            {"order_items": items.take(picked), "fact_order": facts.take(picked)},
        )
        got.add(out["avg_delivery_days"][0].as_py())
    exact = sum(Decimal(str(d)) for d in days) / n
    assert got == {float(exact.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP"))}


def test_quintiles_give_tied_values_one_score_by_rank() -> None:
    base = pa.table({"v": [1, 1, 1, 2, 3, 3]})
    out = default_engine().query(f"{features.quintiles('v')} ORDER BY v", {"base": base})
    # ranks 1, 4, 5 of 6 rows -> 1 + floor(5 * (rank - 1) / 6)
    assert out.to_pydict() == {"v": [1, 2, 3], "q": [1, 3, 4]}
    down = default_engine().query(f"{features.quintiles('v', 'DESC')} ORDER BY v", {"base": base})
    assert down.to_pydict() == {"v": [1, 2, 3], "q": [3, 2, 1]}  # ranks 4, 3, 1


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-3, 6)), min_size=1, max_size=40),
    direction=st.sampled_from(["ASC", "DESC"]),
)
def test_quintiles_equal_rank_over_every_row(values: list[int | None], direction: str) -> None:
    """The running count over distinct values is the rank each row would get (NULLs too)."""
    base = pa.table({"id": list(range(len(values))), "v": pa.array(values, pa.int64())})
    by_rank = (
        f"SELECT id, 1 + CAST(floor(5.0 * (rank() OVER (ORDER BY v {direction}) - 1) "
        "/ count(*) OVER ()) AS INTEGER) AS q FROM base ORDER BY id"
    )
    by_count = (
        f"SELECT id, q FROM base JOIN ({features.quintiles('v', direction)}) s "
        "ON s.v IS NOT DISTINCT FROM base.v ORDER BY id"
    )
    engine = default_engine()
    assert engine.query(by_count, {"base": base}) == engine.query(by_rank, {"base": base})
