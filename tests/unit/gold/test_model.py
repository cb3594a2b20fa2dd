"""The Gold declarations drive the tasks and the checks: each kind promises what it declares,
and a new table is one declaration plus its build function."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medallion.catalog import SOURCE_TABLES, TableRef, gold_ref, silver_ref, source_tables
from medallion.checks.declared import gold_checks
from medallion.engine import Engine, Relation, default_engine
from medallion.errors import CatalogError
from medallion.gold.layer import make_tasks
from medallion.gold.model import (
    GOLD_TABLES,
    DateDimension,
    Dimension,
    Fact,
    Feature,
    GoldTable,
    ReferenceDimension,
    gold_table,
    sql,
)
from medallion.storage import DeltaHandle


def _checks_of(table: str, tables: tuple[GoldTable, ...] = GOLD_TABLES) -> set[str]:
    return {c.name for c in gold_checks(0.5, tables) if c.table == table}


def test_table_refs_parse_and_print() -> None:
    assert TableRef.parse("silver.orders") == silver_ref("orders")
    assert str(gold_ref("fact_order")) == "gold.fact_order"
    for bad in ("orders", ".orders", "silver."):
        with pytest.raises(CatalogError, match="is not a table reference"):
            TableRef.parse(bad)


def test_every_kind_is_declared_once() -> None:
    kinds = {type(g) for g in GOLD_TABLES}
    assert kinds == {Dimension, ReferenceDimension, DateDimension, Fact, Feature}
    assert isinstance(gold_table("dim_location"), ReferenceDimension)
    assert isinstance(gold_table("dim_date"), DateDimension)


def test_scd2_dimension_inputs_and_grain_follow_from_its_fold() -> None:
    product = gold_table("dim_product")
    assert isinstance(product, Dimension)
    assert product.grain == ("product_sk",)
    assert set(product.inputs) == {
        silver_ref("products"),
        silver_ref("product_category_name_translation"),
    }
    customer = gold_table("dim_customer")
    assert gold_ref("dim_location") in customer.inputs  # lat/lng joined on the zip prefix
    assert _checks_of("dim_customer") >= {"one_current_version", "customer_sk_unique"}
    assert "row_count_drift" not in _checks_of("dim_customer")


def test_fact_checks_are_derived_from_its_declaration() -> None:
    fact = gold_table("fact_payment")
    assert isinstance(fact, Fact)
    assert fact.dimension_keys == {"customer_sk": "dim_customer"}
    assert _checks_of("fact_payment") == {
        "order_id_payment_sequential_unique",
        "row_count_drift",
        "customer_sk_not_null",
        "customer_sk_in_dim_customer",
        "purchase_date_key_in_dim_date",
        "reconcile_with_silver",
        "payment_value_sum_matches_silver",
    }
    assert "reconcile_with_silver" not in _checks_of("fact_review")  # mirrors nothing


def test_optional_inputs_are_read_but_not_waited_for() -> None:
    review = gold_table("fact_review")
    streamed = silver_ref("review_events")
    assert streamed in review.reads and streamed not in review.inputs
    task = next(t for t in make_tasks(SOURCE_TABLES) if t.name == "gold.fact_review")
    assert task.upstream == ("silver.order_reviews",)


def _top_states(
    inputs: dict[TableRef, pa.Table], engine: Engine, near: DeltaHandle | None
) -> Relation:
    return sql("SELECT customer_state AS state, count(*) AS customers FROM customers GROUP BY 1")(
        inputs, engine, near
    )


def test_a_new_table_is_one_declaration_plus_its_build() -> None:
    """The example the design promises: declare it, and its task, upstream edges and checks
    exist with no other change."""
    new = Feature(
        name="feature_state_customers",
        inputs=(silver_ref("customers"),),
        grain=("state",),
        builder=_top_states,
    )
    declared = (*GOLD_TABLES, new)
    tasks = {t.name: t for t in make_tasks(source_tables(["customers"]), declared)}
    assert tasks["gold.feature_state_customers"].upstream == ("silver.customers",)
    assert _checks_of(new.name, declared) == {"state_unique", "row_count_drift"}
    customers = pa.table({"customer_id": ["a", "b", "c"], "customer_state": ["SP", "SP", "RJ"]})
    built = new.build({silver_ref("customers"): customers}, default_engine())
    assert isinstance(built, pa.Table)  # DuckDB keeps a result in memory
    assert sorted(built.to_pylist(), key=lambda r: r["state"]) == [
        {"state": "RJ", "customers": 1},
        {"state": "SP", "customers": 2},
    ]
