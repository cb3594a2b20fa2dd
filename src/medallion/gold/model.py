"""The Gold tables, declared once as data: one declaration type per kind of table.

A kind says how a table is built and what it promises: an SCD2 :class:`Dimension` is folded
from every state Bronze captured; a :class:`ReferenceDimension` (locations) and the
:class:`DateDimension` are rebuilt from their inputs; a :class:`Fact` is one SQL query with a
declared grain, dimension and date keys, and the Silver table it mirrors; a :class:`Feature`
is a per-entity aggregate. The tasks (``gold.layer``) and the Gold checks
(``checks.declared``) are derived from these declarations; adding a Gold table is one
declaration plus its build function.

Every builder is pure: it gets its inputs as relations (Arrow tables or lazy scans) and returns
the table to write, kept by the engine near the table it is for (:meth:`Engine.keep`), so a
Spark server builds it without it crossing the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from medallion.catalog import TableRef, gold_ref, silver_ref
from medallion.engine import Engine, Relation
from medallion.gold import facts, features
from medallion.gold.dates import build_dim_date
from medallion.gold.dimensions import (
    DIMENSIONS,
    SCD2Dimension,
    build_dim_location,
    date_span,
)
from medallion.gold.increment import ByKey
from medallion.registry import Registry
from medallion.storage import DeltaHandle

Inputs = Mapping[TableRef, Relation]
Builder = Callable[[Inputs, Engine, DeltaHandle | None], Relation]  # inputs, engine, kept near


@dataclass(frozen=True)
class OptionalInput:
    """An input that may not exist yet (written outside the batch run, e.g. by the stream
    consumer): read as an empty table with the columns of ``shaped_like`` until it does."""

    ref: TableRef
    shaped_like: TableRef


@dataclass(frozen=True, kw_only=True)
class GoldTable:
    """What every kind declares: its name, inputs and grain (the columns naming one row)."""

    name: str
    inputs: tuple[TableRef, ...]  # tables the build reads; the task waits for them
    grain: tuple[str, ...]
    optional_inputs: tuple[OptionalInput, ...] = ()
    date_keys: tuple[str, ...] = ()  # yyyymmdd keys into dim_date (0: unknown date)

    def __post_init__(self) -> None:
        if not self.grain:
            raise ValueError(f"Gold table {self.name} declares no grain")

    @property
    def ref(self) -> TableRef:
        return gold_ref(self.name)

    @property
    def lookup_key(self) -> tuple[str, ...]:
        """The columns an incremental build looks its stored rows up by: the grain (the
        files are laid out for it, :func:`~medallion.storage.file_layout`)."""
        return self.grain

    @property
    def reads(self) -> tuple[TableRef, ...]:
        """Every table the build reads, optional ones included (their versions are recorded)."""
        return (*self.inputs, *(o.ref for o in self.optional_inputs))

    @property
    def dimension_keys(self) -> dict[str, str]:
        """Surrogate-key column -> the SCD2 dimension it points at (from the inputs)."""
        return {
            f"{ref.name.removeprefix('dim_')}_sk": ref.name
            for ref in self.inputs
            if ref.layer == "gold" and ref.name in _SCD2_NAMES
        }


@dataclass(frozen=True, kw_only=True)
class Snapshot(GoldTable):
    """A table rebuilt from its inputs whenever one of them moved: only for the keys their
    changes touched when it declares ``by_key``, else whole (its rows written as a diff)."""

    builder: Builder
    by_key: ByKey | None = None

    def build(self, inputs: Inputs, engine: Engine, near: DeltaHandle | None = None) -> Relation:
        """The table's rows, kept by ``engine`` near ``near`` (the table they are for)."""
        return self.builder(inputs, engine, near)


@dataclass(frozen=True, kw_only=True)
class Dimension(GoldTable):
    """An SCD2 dimension: history folded from every state Bronze captured."""

    fold: SCD2Dimension

    @property
    def lookup_key(self) -> tuple[str, ...]:
        """A dimension's rows are looked up by the entity they version (its natural key)."""
        return self.fold.spec.natural_key


@dataclass(frozen=True, kw_only=True)
class ReferenceDimension(Snapshot):
    """A type-1 dimension with an unknown member, rebuilt from Silver (no history kept)."""


@dataclass(frozen=True, kw_only=True)
class DateDimension(Snapshot):
    """Whole years of days covering every date a fact refers to: ``span`` gives the first
    and last day from the inputs, ``builder`` the rows."""

    span: Callable[[Inputs, Engine], tuple[date, date]]


@dataclass(frozen=True, kw_only=True)
class Fact(Snapshot):
    """One row per ``grain`` from one SQL query; ``mirrors`` is the Silver table whose live
    rows it has one-to-one (reconciled by key), ``totals`` the money columns whose sums must
    equal that table's."""

    mirrors: TableRef | None = None
    totals: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Feature(Snapshot):
    """Per-entity aggregates for analytics and models, recomputed from their inputs."""


def sql(query: str) -> Builder:
    """A builder that runs one query with every input visible under its table name."""

    def build(inputs: Inputs, engine: Engine, near: DeltaHandle | None) -> Relation:
        return engine.keep(query, {ref.name: t for ref, t in inputs.items()}, near=near)

    return build


def dimension(fold: SCD2Dimension) -> Dimension:
    """The declaration of an SCD2 dimension: inputs and grain follow from its fold."""
    upstream = (fold.silver, *fold.contract.upstream)
    return Dimension(
        name=fold.spec.name,
        inputs=(
            *(silver_ref(t) for t in upstream),
            *((gold_ref("dim_location"),) if fold.location_zip else ()),
        ),
        grain=(fold.spec.sk_column,),
        fold=fold,
    )


def _date_span(inputs: Inputs, engine: Engine) -> tuple[date, date]:
    reviews = [inputs[silver_ref("order_reviews")], inputs[_STREAMED_REVIEWS.ref]]
    return date_span(
        inputs[silver_ref("orders")], reviews, inputs[silver_ref("order_items")], engine
    )


def _date(inputs: Inputs, engine: Engine, near: DeltaHandle | None) -> Relation:
    """Generated here (a few thousand days), so returned as Arrow: written, or sent once to
    a Spark server for the diff."""
    return build_dim_date(*_date_span(inputs, engine))


def _location(inputs: Inputs, engine: Engine, near: DeltaHandle | None) -> Relation:
    return build_dim_location(inputs[silver_ref("geolocation")], engine, near)


def _rfm(inputs: Inputs, engine: Engine, near: DeltaHandle | None) -> Relation:
    return sql(features.rfm_sql(None))(inputs, engine, near)


def _silver(*names: str) -> tuple[TableRef, ...]:
    return tuple(silver_ref(n) for n in names)


# What a change to each input touches, as queries over its changed rows (``changed``)
_OWN = "SELECT {key} FROM changed"
_ORDERS_OF_CUSTOMERS = """
    SELECT order_id FROM orders WHERE customer_id IN (SELECT customer_id FROM changed)
"""
# the people's customer ids first: a join of every order with every customer costs 2x more
_ORDERS_OF_PEOPLE = """
    SELECT order_id FROM orders WHERE customer_id IN (
        SELECT customer_id FROM customers
        WHERE customer_unique_id IN (SELECT customer_unique_id FROM changed)
    )
"""


def _items_of(key: str, wanted: str) -> str:
    """The ``wanted`` column of the order items whose ``key`` changed."""
    return f"SELECT {wanted} FROM order_items WHERE {key} IN (SELECT {key} FROM changed)"


def _by_order(*own: TableRef, via_items: tuple[str, ...] = ()) -> ByKey:
    """Fact rows rebuilt per order: ``own`` inputs have an order_id (and are filtered to the
    touched orders); customers and dim_customer reach orders through the customer; the
    dimensions ``via_items`` (dim_product: product_id) through the order's items."""
    touched: dict[TableRef, str] = {ref: _OWN.format(key="order_id") for ref in own}
    touched[silver_ref("customers")] = _ORDERS_OF_CUSTOMERS
    touched[gold_ref("dim_customer")] = _ORDERS_OF_PEOPLE
    for column in via_items:
        touched[gold_ref(f"dim_{column.removesuffix('_id')}")] = _items_of(column, "order_id")
    return ByKey("order_id", touched, own)


def _by_item_column(key: str, fact: str) -> ByKey:
    """Feature rows rebuilt per ``key`` of order_items (product_id, seller_id), also when a
    fact row of one of their orders changed."""
    return ByKey(
        key,
        {
            silver_ref("order_items"): _OWN.format(key=key),
            gold_ref(fact): _items_of("order_id", key),
        },
        (silver_ref("order_items"),),
    )


_SCD2_NAMES = {d.spec.name for d in DIMENSIONS}
_FACT_INPUTS = (*_silver("orders", "customers"), gold_ref("dim_customer"))
_STREAMED_REVIEWS = OptionalInput(silver_ref("review_events"), silver_ref("order_reviews"))

GOLD_TABLES: tuple[GoldTable, ...] = (
    ReferenceDimension(
        name="dim_location",
        inputs=_silver("geolocation"),
        grain=("zip_code_prefix",),
        builder=_location,
    ),
    DateDimension(
        name="dim_date",
        inputs=_silver("orders", "order_reviews", "order_items"),
        optional_inputs=(_STREAMED_REVIEWS,),  # streamed reviews' dates are fact dates too
        grain=("date_key",),
        builder=_date,
        span=_date_span,
    ),
    *(dimension(d) for d in DIMENSIONS),
    Fact(
        name="fact_order_item",
        inputs=(
            *_silver("order_items"),
            *_FACT_INPUTS,
            gold_ref("dim_product"),
            gold_ref("dim_seller"),
        ),
        grain=("order_id", "order_item_id"),
        date_keys=("purchase_date_key", "shipping_limit_date_key"),
        builder=sql(facts.FACT_ORDER_ITEM),
        by_key=_by_order(*_silver("order_items", "orders"), via_items=("product_id", "seller_id")),
        mirrors=silver_ref("order_items"),
    ),
    Fact(
        name="fact_payment",
        inputs=(*_silver("order_payments"), *_FACT_INPUTS),
        grain=("order_id", "payment_sequential"),
        date_keys=("purchase_date_key",),
        builder=sql(facts.FACT_PAYMENT),
        by_key=_by_order(*_silver("order_payments", "orders")),
        mirrors=silver_ref("order_payments"),
        totals=("payment_value",),
    ),
    Fact(
        name="fact_review",
        inputs=_silver("order_reviews"),
        optional_inputs=(_STREAMED_REVIEWS,),
        grain=("review_id", "order_id"),
        date_keys=("creation_date_key",),
        builder=sql(facts.FACT_REVIEW),
        by_key=_by_order(_STREAMED_REVIEWS.ref, *_silver("order_reviews")),
    ),
    Fact(
        name="fact_order",
        inputs=(*_FACT_INPUTS, *_silver("order_items", "order_payments", "order_reviews")),
        optional_inputs=(_STREAMED_REVIEWS,),
        grain=("order_id",),
        date_keys=(
            "purchase_date_key",
            "approved_date_key",
            "delivered_date_key",
            "estimated_date_key",
        ),
        builder=sql(facts.FACT_ORDER),
        by_key=_by_order(
            _STREAMED_REVIEWS.ref,
            *_silver("orders", "order_items", "order_payments", "order_reviews"),
        ),
        mirrors=silver_ref("orders"),
    ),
    Feature(
        name="feature_customer_rfm",
        inputs=_silver("orders", "customers", "order_payments"),
        grain=("customer_unique_id", "as_of_date"),
        builder=_rfm,
    ),
    Feature(
        name="feature_product_performance",
        inputs=(*_silver("order_items"), gold_ref("fact_review")),
        grain=("product_id",),
        builder=sql(features.PRODUCT_PERFORMANCE),
        by_key=_by_item_column("product_id", "fact_review"),
    ),
    Feature(
        name="feature_seller_reliability",
        inputs=(*_silver("order_items"), gold_ref("fact_order")),
        grain=("seller_id",),
        builder=sql(features.SELLER_RELIABILITY),
        by_key=_by_item_column("seller_id", "fact_order"),
    ),
)

_REGISTRY = Registry("Gold table", GOLD_TABLES)


def gold_table(name: str) -> GoldTable:
    return _REGISTRY[name]
