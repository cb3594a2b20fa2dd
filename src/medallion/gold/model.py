"""The Gold tables, declared as data: inputs (Silver or Gold tables) and how each is built.

Every builder is pure: it gets its inputs as Arrow tables and returns the table to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from medallion.engine import Engine
from medallion.gold import facts, features
from medallion.gold.dimensions import (
    DIMENSIONS,
    SCD2Dimension,
    build_date_dimension,
    build_dim_location,
)
from medallion.registry import Registry


class GoldKind(StrEnum):
    SCD2 = "scd2"  # history folded from every state Bronze captured
    SNAPSHOT = "snapshot"  # rebuilt from its inputs whenever one of them changed


Inputs = Mapping[str, pa.Table]  # "silver.orders" -> table (reference names stripped)
Builder = Callable[[Inputs, Engine], pa.Table]


@dataclass(frozen=True)
class GoldTable:
    name: str
    kind: GoldKind
    inputs: tuple[str, ...]  # "silver.<table>" or "gold.<table>"
    build: Builder | None = None  # SNAPSHOT tables
    dimension: SCD2Dimension | None = None  # SCD2 tables
    optional_inputs: tuple[str, ...] = ()  # may not exist yet (streamed reviews)
    grain: tuple[str, ...] = ()  # the columns that identify a row (SCD2: the surrogate key)
    date_keys: tuple[str, ...] = ()  # yyyymmdd keys into dim_date (0: unknown date)

    def __post_init__(self) -> None:
        if self.kind is GoldKind.SCD2:
            assert self.dimension is not None
            object.__setattr__(self, "grain", (self.dimension.spec.sk_column,))
        if not self.grain:
            raise ValueError(f"Gold table {self.name} declares no grain")

    @property
    def dimension_keys(self) -> dict[str, str]:
        """Surrogate-key column -> the SCD2 dimension it points at (from the inputs)."""
        return {
            f"{ref.removeprefix('gold.dim_')}_sk": ref.removeprefix("gold.")
            for ref in self.inputs
            if ref.startswith("gold.dim_") and ref.removeprefix("gold.") in _SCD2_NAMES
        }


def sql(query: str) -> Builder:
    """A builder that runs one query with every input visible under its short name."""

    def build(inputs: Inputs, engine: Engine) -> pa.Table:
        return engine.query(query, {ref.split(".", 1)[1]: t for ref, t in inputs.items()})

    return build


def _date(inputs: Inputs, engine: Engine) -> pa.Table:
    return build_date_dimension(
        inputs["silver.orders"],
        inputs["silver.order_reviews"],
        inputs["silver.order_items"],
        engine,
    )


def _location(inputs: Inputs, engine: Engine) -> pa.Table:
    return build_dim_location(inputs["silver.geolocation"], engine)


def _rfm(inputs: Inputs, engine: Engine) -> pa.Table:
    return sql(features.rfm_sql(None))(inputs, engine)


STREAMED_REVIEWS = "silver.review_events"
_SCD2_NAMES = {d.spec.name for d in DIMENSIONS}
_FACT_INPUTS = ("silver.orders", "silver.customers", "gold.dim_customer")

GOLD_TABLES: tuple[GoldTable, ...] = (
    GoldTable(
        "dim_location",
        GoldKind.SNAPSHOT,
        ("silver.geolocation",),
        _location,
        grain=("zip_code_prefix",),
    ),
    GoldTable(
        "dim_date",
        GoldKind.SNAPSHOT,
        ("silver.orders", "silver.order_reviews", "silver.order_items"),
        _date,
        grain=("date_key",),
    ),
    *(
        GoldTable(
            d.spec.name,
            GoldKind.SCD2,
            (
                f"silver.{d.silver}",
                *(f"silver.{t}" for t in d.contract.upstream),
                *(("gold.dim_location",) if d.location_zip else ()),
            ),
            dimension=d,
        )
        for d in DIMENSIONS
    ),
    GoldTable(
        "fact_order_item",
        GoldKind.SNAPSHOT,
        ("silver.order_items", *_FACT_INPUTS, "gold.dim_product", "gold.dim_seller"),
        sql(facts.FACT_ORDER_ITEM),
        grain=("order_id", "order_item_id"),
        date_keys=("purchase_date_key", "shipping_limit_date_key"),
    ),
    GoldTable(
        "fact_payment",
        GoldKind.SNAPSHOT,
        ("silver.order_payments", *_FACT_INPUTS),
        sql(facts.FACT_PAYMENT),
        grain=("order_id", "payment_sequential"),
        date_keys=("purchase_date_key",),
    ),
    GoldTable(
        "fact_review",
        GoldKind.SNAPSHOT,
        ("silver.order_reviews", STREAMED_REVIEWS),
        sql(facts.FACT_REVIEW),
        optional_inputs=(STREAMED_REVIEWS,),
        grain=("review_id", "order_id"),
        date_keys=("creation_date_key",),
    ),
    GoldTable(
        "fact_order",
        GoldKind.SNAPSHOT,
        (
            *_FACT_INPUTS,
            "silver.order_items",
            "silver.order_payments",
            "silver.order_reviews",
            STREAMED_REVIEWS,
        ),
        sql(facts.FACT_ORDER),
        optional_inputs=(STREAMED_REVIEWS,),
        grain=("order_id",),
        date_keys=(
            "purchase_date_key",
            "approved_date_key",
            "delivered_date_key",
            "estimated_date_key",
        ),
    ),
    GoldTable(
        "feature_customer_rfm",
        GoldKind.SNAPSHOT,
        ("silver.orders", "silver.customers", "silver.order_payments"),
        _rfm,
        grain=("customer_unique_id", "as_of_date"),
    ),
    GoldTable(
        "feature_product_performance",
        GoldKind.SNAPSHOT,
        ("silver.order_items", "gold.fact_review"),
        sql(features.PRODUCT_PERFORMANCE),
        grain=("product_id",),
    ),
    GoldTable(
        "feature_seller_reliability",
        GoldKind.SNAPSHOT,
        ("silver.order_items", "gold.fact_order"),
        sql(features.SELLER_RELIABILITY),
        grain=("seller_id",),
    ),
)

_REGISTRY = Registry("Gold table", GOLD_TABLES)


def gold_table(name: str) -> GoldTable:
    return _REGISTRY[name]
