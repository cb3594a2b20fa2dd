"""Gold dimensions: SCD2 customer, product and seller from Silver's change feed, and the
location and date dimensions. Pure: Arrow in, Arrow out, SQL through the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from medallion.engine import Engine
from medallion.gold.dates import build_dim_date
from medallion.gold.scd2 import UNKNOWN_SK, SCD2Spec, apply_scd2, unknown_member

CHANGED = "_change_type IN ('insert', 'update_postimage')"


@dataclass(frozen=True)
class SCD2Dimension:
    """An SCD2 dimension fed by one Silver table: how its events are selected, and which
    derived columns are joined on after the fold."""

    spec: SCD2Spec
    silver: str
    events_sql: str  # over ``changes`` (Silver CDF rows) and ``current`` (Silver now)
    location_zip: str | None = None  # join lat/lng from dim_location on this column
    derived: tuple[tuple[str, str], ...] = ()  # (name, SQL over the dimension)


DIMENSIONS: tuple[SCD2Dimension, ...] = (
    SCD2Dimension(
        SCD2Spec("dim_customer", ("customer_unique_id",), ("zip_code_prefix", "city", "state")),
        "customers",
        f"""
        SELECT e.customer_unique_id, e.customer_zip_code_prefix AS zip_code_prefix,
            e.customer_city AS city, e.customer_state AS state, e.updated_at AS effective_at,
            -- a person is gone only when none of their customer rows is live any more
            e.is_deleted AND NOT EXISTS (
                SELECT 1 FROM current c WHERE c.customer_unique_id = e.customer_unique_id
                AND NOT c.is_deleted) AS is_delete
        FROM changes e WHERE {CHANGED} AND e.customer_unique_id IS NOT NULL
        """,
        location_zip="zip_code_prefix",
    ),
    SCD2Dimension(
        SCD2Spec(
            "dim_product",
            ("product_id",),
            (
                "category_name",
                "category_name_english",
                "weight_g",
                "length_cm",
                "height_cm",
                "width_cm",
            ),
            ("name_length", "description_length", "photos_qty"),
        ),
        "products",
        f"""
        SELECT product_id, product_category_name AS category_name,
            product_category_name_english AS category_name_english,
            product_weight_g AS weight_g, product_length_cm AS length_cm,
            product_height_cm AS height_cm, product_width_cm AS width_cm,
            product_name_length AS name_length,
            product_description_length AS description_length,
            product_photos_qty AS photos_qty,
            updated_at AS effective_at, is_deleted AS is_delete
        FROM changes WHERE {CHANGED}
        """,
        derived=(("volume_cm3", "CAST(length_cm AS INTEGER) * height_cm * width_cm"),),
    ),
    SCD2Dimension(
        SCD2Spec("dim_seller", ("seller_id",), ("zip_code_prefix", "city", "state")),
        "sellers",
        f"""
        SELECT seller_id, seller_zip_code_prefix AS zip_code_prefix, seller_city AS city,
            seller_state AS state, updated_at AS effective_at, is_deleted AS is_delete
        FROM changes WHERE {CHANGED}
        """,
        location_zip="zip_code_prefix",
    ),
)


def scd2_events(
    dim: SCD2Dimension, changes: pa.Table, current: pa.Table, engine: Engine
) -> pa.Table:
    return engine.query(dim.events_sql, {"changes": changes, "current": current})


def build_scd2(
    dim: SCD2Dimension,
    history: pa.Table | None,
    events: pa.Table,
    *,
    known: pa.Table | None,
    location: pa.Table | None,
    engine: Engine,
) -> tuple[pa.Table, pa.Table]:
    """The dimension and every event it was folded from.

    Each key that has new events is re-folded from ALL its events (``known`` ones and the new
    ones), not from its stored versions: a version records when its state began, not every
    event that repeated it, so an out-of-order event could otherwise be placed wrongly. Keys
    without new events keep their stored versions.
    """
    everything = _distinct_events(known, events, engine)
    keys = ", ".join(dim.spec.natural_key)
    touched = engine.query(f"SELECT DISTINCT {keys} FROM e", {"e": events})
    relevant = engine.query(
        f"SELECT * FROM a SEMI JOIN t USING ({keys})", {"a": everything, "t": touched}
    )
    folded = apply_scd2(dim.spec, None, relevant, engine)
    if history is not None and history.num_rows:
        core = history.select(list(dim.spec.columns))
        kept = engine.query(
            f"SELECT * FROM h ANTI JOIN t USING ({keys})", {"h": core, "t": touched}
        )
        folded = pa.concat_tables([kept, folded], promote_options="permissive")
    has_unknown = pc.any(pc.equal(folded[dim.spec.sk_column], UNKNOWN_SK)).as_py()
    if not has_unknown:
        folded = pa.concat_tables(
            [unknown_member(dim.spec, folded.schema, engine), folded], promote_options="permissive"
        )
    return attach_derived(dim, folded, location, engine), everything


def _distinct_events(known: pa.Table | None, new: pa.Table, engine: Engine) -> pa.Table:
    if known is None or known.num_rows == 0:
        return engine.query("SELECT DISTINCT * FROM n", {"n": new})
    columns = ", ".join(new.column_names)
    return engine.query(
        f"SELECT DISTINCT * FROM (SELECT {columns} FROM k UNION ALL SELECT {columns} FROM n)",
        {"k": known, "n": new},
    )


def attach_derived(
    dim: SCD2Dimension, folded: pa.Table, location: pa.Table | None, engine: Engine
) -> pa.Table:
    extra = "".join(f", {sql} AS {name}" for name, sql in dim.derived)
    if dim.location_zip is None:
        return engine.query(f"SELECT d.*{extra} FROM d ORDER BY 1", {"d": folded})
    if location is None:
        return engine.query(
            f"SELECT d.*, NULL::DOUBLE AS lat, NULL::DOUBLE AS lng{extra} FROM d ORDER BY 1",
            {"d": folded},
        )
    return engine.query(
        f"""
        SELECT d.*, l.lat, l.lng{extra} FROM d
        LEFT JOIN loc l ON l.zip_code_prefix = d.{dim.location_zip}
        ORDER BY 1
        """,
        {"d": folded, "loc": location},
    )


def build_dim_location(geolocation: pa.Table, engine: Engine) -> pa.Table:
    """One row per zip prefix from Silver geolocation, plus the unknown member."""
    return engine.query(
        """
        SELECT 'unknown' AS zip_code_prefix, NULL::DOUBLE AS lat, NULL::DOUBLE AS lng,
            NULL::VARCHAR AS city, NULL::VARCHAR AS state, 0 AS point_count
        UNION ALL
        SELECT zip_code_prefix, lat, lng, city, state, point_count FROM g
        ORDER BY zip_code_prefix
        """,
        {"g": geolocation},
    )


def fact_date_range(
    orders: pa.Table, reviews: pa.Table, items: pa.Table, engine: Engine
) -> tuple[date, date]:
    """The first and last date any fact refers to (plausible dates only)."""
    row = engine.query(
        """
        WITH d AS (
            SELECT unnest([order_purchase_timestamp, order_approved_at,
                order_delivered_carrier_date, order_delivered_customer_date,
                order_estimated_delivery_date]) AS t FROM orders
            UNION ALL SELECT unnest([review_creation_date, review_answer_timestamp]) FROM reviews
            UNION ALL SELECT shipping_limit_date FROM items
        )
        SELECT coalesce(min(t)::DATE, DATE '2016-01-01') AS lo,
            coalesce(max(t)::DATE, DATE '2016-01-01') AS hi
        FROM d WHERE t BETWEEN TIMESTAMP '2000-01-01' AND TIMESTAMP '2099-12-31'
        """,
        {"orders": orders, "reviews": reviews, "items": items},
    ).to_pylist()[0]
    return row["lo"], row["hi"]


def build_date_dimension(
    orders: pa.Table, reviews: pa.Table, items: pa.Table, engine: Engine
) -> pa.Table:
    lo, hi = fact_date_range(orders, reviews, items, engine)
    return build_dim_date(date(lo.year, 1, 1), date(hi.year, 12, 31))
