"""Gold dimensions: SCD2 customer, product and seller folded from every state Bronze captured,
and the location and date dimensions. Pure: relations in, SQL through the engine; a result
that may be as large as a table is kept by the engine (:meth:`Engine.keep`), never brought
into this process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from medallion.engine import Engine, Relation, rows_in
from medallion.errors import SCD2Error
from medallion.gold.scd2 import UNKNOWN_SK, SCD2Spec, unknown_member
from medallion.silver.contracts import SilverTable, silver_table
from medallion.sql import quote as _q
from medallion.storage import DeltaHandle


@dataclass(frozen=True)
class SCD2Dimension:
    """An SCD2 dimension folded from every state Bronze captured of one Silver table.

    ``columns`` maps each dimension column (natural key first, then the attributes) to the
    Silver column it comes from; a Silver lookup column (a product's English category name)
    is taken as of each event's time. When the natural key is not the Silver row key (a person,
    ``customer_unique_id``, has many customer rows), the entity's state at a time is its most
    recently updated live row at that time; it is deleted when none is live.
    """

    spec: SCD2Spec
    silver: str
    columns: tuple[tuple[str, str], ...]
    location_zip: str | None = None  # join lat/lng from dim_location on this column
    derived: tuple[tuple[str, str], ...] = ()  # (name, SQL over the dimension)

    def __post_init__(self) -> None:
        declared = tuple(c for c, _ in self.columns)
        if declared != (*self.spec.natural_key, *self.spec.attributes):
            raise SCD2Error(
                f"{self.spec.name}: columns {declared} must be the natural key and the "
                f"attributes in order {(*self.spec.natural_key, *self.spec.attributes)}"
            )
        if len(self.spec.natural_key) != 1:
            raise SCD2Error(f"{self.spec.name}: a natural key of one column is supported")

    @property
    def entity(self) -> str:
        """The Silver column holding the natural key."""
        return self.columns[0][1]

    @property
    def contract(self) -> SilverTable:
        return silver_table(self.silver)


DIMENSIONS: tuple[SCD2Dimension, ...] = (
    SCD2Dimension(
        SCD2Spec("dim_customer", ("customer_unique_id",), ("zip_code_prefix", "city", "state")),
        "customers",
        (
            ("customer_unique_id", "customer_unique_id"),
            ("zip_code_prefix", "customer_zip_code_prefix"),
            ("city", "customer_city"),
            ("state", "customer_state"),
        ),
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
        (
            ("product_id", "product_id"),
            ("category_name", "product_category_name"),
            ("category_name_english", "product_category_name_english"),
            ("weight_g", "product_weight_g"),
            ("length_cm", "product_length_cm"),
            ("height_cm", "product_height_cm"),
            ("width_cm", "product_width_cm"),
            ("name_length", "product_name_length"),
            ("description_length", "product_description_length"),
            ("photos_qty", "product_photos_qty"),
        ),
        derived=(("volume_cm3", "CAST(length_cm AS INTEGER) * height_cm * width_cm"),),
    ),
    SCD2Dimension(
        SCD2Spec("dim_seller", ("seller_id",), ("zip_code_prefix", "city", "state")),
        "sellers",
        (
            ("seller_id", "seller_id"),
            ("zip_code_prefix", "seller_zip_code_prefix"),
            ("city", "seller_city"),
            ("state", "seller_state"),
        ),
        location_zip="zip_code_prefix",
    ),
)


def touched_entities(
    dim: SCD2Dimension,
    linked: Relation,
    new: Relation,
    lookup_new: Relation | None,
    engine: Engine,
) -> pa.Table:
    """The natural keys (column ``e``) whose history a batch changes: every entity a new row's
    key ever belonged to, and every entity that ever had a lookup value the batch relabels (a
    small answer: the batch's entities).

    ``linked`` holds the links of the whole Bronze history (:mod:`medallion.gold.links`);
    ``new`` and ``lookup_new`` are the valid states appended since the last build
    (``valid_history``).
    """
    rk = ", ".join(_q(k) for k in dim.contract.key)
    entity = _q(dim.entity)
    sql = f"SELECT DISTINCT {entity} AS e FROM h SEMI JOIN n USING ({rk}) WHERE {entity} NOTNULL"
    tables = {"h": linked, "n": new}
    lookup = dim.contract.lookup
    if lookup is not None and lookup_new is not None and rows_in(lookup_new):
        on = _q(lookup.on)
        sql += f" UNION SELECT {entity} FROM h SEMI JOIN ln USING ({on}) WHERE {entity} NOTNULL"
        tables["ln"] = lookup_new
    return engine.query(sql, tables)


def dimension_events(
    dim: SCD2Dimension, history: Relation, lookup: Relation | None, engine: Engine
) -> Relation:
    """One SCD2 event per entity and instant at which any of its rows (or its lookup row)
    changed, carrying the entity's state at that instant (kept by the engine). Set-based.

    ``history`` holds every valid Bronze state of the entities' rows (``valid_history``),
    ``lookup`` every valid state of the lookup table (None when the table has no lookup).
    """
    key = dim.contract.key
    rk, rk_h = ", ".join(_q(k) for k in key), ", ".join(f"h.{_q(k)}" for k in key)
    rk_desc = ", ".join(f"{_q(k)} DESC" for k in key)
    e = _q(dim.entity)
    spec_lookup = dim.contract.lookup
    lookup_times, lookup_join, lookup_order, looked_up = "", "", "", {}
    tables: dict[str, Relation] = {"hist": history}
    if spec_lookup is not None:
        if lookup is None:
            raise SCD2Error(f"{dim.spec.name}: the lookup table's history is needed")
        on = _q(spec_lookup.on)
        values = [c for c in silver_table(spec_lookup.table).column_names if c != spec_lookup.on]
        live = ", ".join(
            f"CASE WHEN is_deleted THEN NULL ELSE {_q(c)} END AS {_q(c)}" for c in values
        )
        lookup_times = (
            f"UNION SELECT h.{e}, l.updated_at FROM lk l JOIN h ON l.{on} = h.{on} "
            f"WHERE h.{e} NOTNULL AND l.updated_at NOTNULL"
        )
        lookup_join = f"""
            LEFT JOIN (
                SELECT {on}, updated_at AS _l_at, is_deleted AS _l_deleted,
                    _ingested_at AS _l_ingested, {live}
                FROM lk
            ) l ON l.{on} = s.{on} AND l._l_at <= s._at
        """
        # the lookup row as it stood at the instant (as Silver picks its latest row)
        lookup_order = "l._l_at DESC NULLS LAST, l._l_deleted DESC, l._l_ingested DESC"
        looked_up = {c.name: c.expr for c in spec_lookup.columns}
        tables["lk"] = lookup
    picked = ", ".join(
        f"CASE WHEN s._gone THEN NULL ELSE {looked_up.get(src, f's.{_q(src)}')} END AS {_q(col)}"
        for col, src in dim.columns[1:]
    )
    nk = _q(dim.spec.natural_key[0])
    event = f"s._entity AS {nk}, {picked}, s._at AS effective_at, s._gone AS is_delete"
    if lookup_order:  # one row per event: the lookup row as it stood at the instant
        names = ", ".join(_q(c) for c in (*dim.spec.natural_key, *dim.spec.attributes))
        last = f"""
        SELECT {names}, effective_at, is_delete FROM (
            SELECT {event}, row_number() OVER (PARTITION BY s._entity, s._at
                ORDER BY {lookup_order}) AS _rank
            FROM state s {lookup_join}
        ) e WHERE _rank = 1
        """
    else:
        last = f"SELECT {event} FROM state s"
    # explicit column lists, so that the query means the same on every engine
    same_row = " AND ".join(f"h.{_q(k)} = k.{_q(k)}" for k in key)
    columns = [_q(c) for c in history.schema.names]
    h_columns = ", ".join(
        f"""coalesce({e}, last_value({e} IGNORE NULLS) OVER (
            PARTITION BY {rk} ORDER BY updated_at, is_deleted, _ingested_at
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS {e}"""
        if c == e
        else c
        for c in columns
    )
    # at one instant a delete wins, then the row ingested last (as Silver picks a key's row)
    sql = f"""
    WITH h AS (  -- a tombstone carries only its key: it belongs to the row's last entity
        SELECT {h_columns} FROM hist WHERE updated_at NOTNULL
    ),
    times AS (
        SELECT DISTINCT {e} AS _entity, updated_at AS _at FROM h WHERE {e} NOTNULL
        {lookup_times}
    ),
    links AS (SELECT DISTINCT {e} AS _entity, {rk} FROM h WHERE {e} NOTNULL),
    as_of AS (  -- each of the entity's rows as it stood at the instant
        SELECT _entity, _at, {", ".join(columns)} FROM (
            SELECT t._entity, t._at, h.*, row_number() OVER (
                PARTITION BY t._entity, t._at, {rk_h}
                ORDER BY h.updated_at DESC, h.is_deleted DESC, h._ingested_at DESC) AS _rank
            FROM times t JOIN links k ON k._entity = t._entity
            JOIN h ON {same_row} AND h.updated_at <= t._at
        ) a WHERE _rank = 1
    ),
    state AS (  -- the entity's latest live row, or gone when it has none
        SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY _entity, _at
                ORDER BY _gone, updated_at DESC, {rk_desc}) AS _rank
            FROM (SELECT *, is_deleted OR {e} IS DISTINCT FROM _entity AS _gone FROM as_of) g
        ) r WHERE _rank = 1
    )
    {last}
    """
    return engine.keep(sql, tables)


def with_derived(
    dim: SCD2Dimension,
    stored: Relation | None,
    folded: Relation,
    touched: pa.Table | None,
    *,
    location: Relation | None,
    engine: Engine,
    near: DeltaHandle | None = None,
) -> Relation:
    """The dimension, kept by the engine ``near`` the table it is for: the ``touched``
    entities (all when None) as ``folded`` (:func:`fold_scd2` of ALL their events) with the
    derived columns; the others keep their ``stored`` versions (with ``stored`` None, only the
    touched entities' rows are returned: the caller writes them over those entities' rows);
    the unknown member; ``folded`` discarded. Folding a key from all its events, never from
    its stored versions, is what makes the result independent of the order in which events
    arrived, and equal to a rebuild."""
    try:
        core = ", ".join(_q(c) for c in dim.spec.columns)
        if touched is not None and stored is None:
            only = f"d AS (SELECT {core} FROM f)"
            return attach_derived(dim, only, {"f": folded}, location, engine, near=near)
        tables: dict[str, Relation] = {"f": folded}
        if touched is not None and stored is not None:
            kept = (  # the stored versions of every other entity, and the unknown member
                f"SELECT {core} FROM h WHERE {_q(dim.spec.natural_key[0])} NOT IN "
                f"(SELECT e FROM t) OR {dim.spec.sk_column} = {UNKNOWN_SK} UNION ALL "
            )
            tables |= {"h": stored, "t": touched}
        else:
            kept = ""
        tables["u"] = unknown_member(dim.spec, folded.schema, engine)
        ctes = f"""
            b AS ({kept}SELECT {core} FROM f),
            d AS (
                SELECT * FROM b UNION ALL SELECT {core} FROM u
                WHERE NOT EXISTS (SELECT 1 FROM b WHERE {dim.spec.sk_column} = {UNKNOWN_SK})
            )"""
        return attach_derived(dim, ctes, tables, location, engine, near=near)
    finally:
        engine.discard(folded)


def attach_derived(
    dim: SCD2Dimension,
    ctes: str,
    tables: Mapping[str, Relation],
    location: Relation | None,
    engine: Engine,
    *,
    near: DeltaHandle | None,
) -> Relation:
    """The dimension ``d`` (defined by the common table expressions ``ctes`` over ``tables``)
    with its derived columns and the lat/lng of its location, in surrogate key order."""
    extra = "".join(f", {sql} AS {name}" for name, sql in dim.derived)
    if dim.location_zip is None:
        sql = f"WITH {ctes} SELECT d.*{extra} FROM d ORDER BY 1"
    elif location is None:
        sql = f"""WITH {ctes}
            SELECT d.*, NULL::DOUBLE AS lat, NULL::DOUBLE AS lng{extra} FROM d ORDER BY 1"""
    else:
        sql = f"""WITH {ctes}
            SELECT d.*, l.lat, l.lng{extra} FROM d
            LEFT JOIN loc l ON l.zip_code_prefix = d.{dim.location_zip}
            ORDER BY 1"""
        tables = {**tables, "loc": location}
    return engine.keep(sql, tables, near=near)


def build_dim_location(
    geolocation: Relation, engine: Engine, near: DeltaHandle | None = None
) -> Relation:
    """One row per zip prefix from Silver geolocation, plus the unknown member (kept by the
    engine ``near`` the table it is for)."""
    return engine.keep(
        """
        SELECT 'unknown' AS zip_code_prefix, NULL::DOUBLE AS lat, NULL::DOUBLE AS lng,
            NULL::VARCHAR AS city, NULL::VARCHAR AS state, 0 AS point_count
        UNION ALL
        SELECT zip_code_prefix, lat, lng, city, state, point_count FROM g
        ORDER BY zip_code_prefix
        """,
        {"g": geolocation},
        near=near,
    )


def fact_date_range(
    orders: Relation, reviews: Sequence[Relation], items: Relation, engine: Engine
) -> tuple[date, date]:
    """The first and last date any fact refers to (plausible dates only): one small answer."""
    named = {f"reviews{i}": r for i, r in enumerate(reviews)}
    review_dates = "".join(
        f" UNION ALL SELECT unnest([review_creation_date, review_answer_timestamp]) FROM {n}"
        for n in named
    )
    row = engine.query(
        f"""
        WITH d AS (
            SELECT unnest([order_purchase_timestamp, order_approved_at,
                order_delivered_carrier_date, order_delivered_customer_date,
                order_estimated_delivery_date]) AS t FROM orders
            {review_dates}
            UNION ALL SELECT shipping_limit_date FROM items
        )
        SELECT coalesce(min(t)::DATE, DATE '2016-01-01') AS lo,
            coalesce(max(t)::DATE, DATE '2016-01-01') AS hi
        FROM d WHERE t BETWEEN TIMESTAMP '2000-01-01' AND TIMESTAMP '2099-12-31'
        """,
        {"orders": orders, **named, "items": items},
    ).to_pylist()[0]
    return row["lo"], row["hi"]


def date_span(
    orders: Relation, reviews: Sequence[Relation], items: Relation, engine: Engine
) -> tuple[date, date]:
    """The first and last day of dim_date: whole years around every fact date."""
    lo, hi = fact_date_range(orders, reviews, items, engine)
    return date(lo.year, 1, 1), date(hi.year, 12, 31)
