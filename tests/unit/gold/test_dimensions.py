"""SCD2 events from Bronze history: one event per entity and instant, with the entity's state
then (pure: Arrow in, Arrow out)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from medallion.catalog import bronze_schema, source_table
from medallion.engine import default_engine
from medallion.gold.dimensions import DIMENSIONS, dimension_events, touched_entities
from medallion.gold.links import links_sql, rows_of
from medallion.silver.contracts import silver_table
from medallion.silver.transform import valid_history

T = datetime(2018, 1, 1)
ENGINE = default_engine()
PERSON, OTHER = "ee" * 16, "ff" * 16


def at(hours: int) -> datetime:
    return T + timedelta(hours=hours)


def bronze(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Bronze rows: ``op`` 'delete' with only a key is a tombstone (a hard delete)."""
    schema = bronze_schema(source_table(table))
    filled = []
    for row in rows:
        tombstone = row.get("op") == "delete" and "updated_at" not in row
        filled.append(
            {
                **row,
                "_run_id": "r",
                "_ingested_at": T,
                "_ingest_date": T.date(),
                "_source_updated_at": row.get("at", row.get("updated_at")),
                "_op": "delete" if tombstone or row.get("deleted_at") else "upsert",
            }
        )
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in filled], schema)


def history(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    return valid_history(silver_table(table), bronze(table, rows), ENGINE)


def links(d: Any, raw: pa.Table) -> pa.Table:
    return ENGINE.query(links_sql(d, "b"), {"b": raw})


def dim(name: str) -> Any:
    return next(d for d in DIMENSIONS if d.spec.name == name)


def events(name: str, hist: pa.Table, lookup: pa.Table | None = None) -> list[tuple]:
    out = dimension_events(dim(name), hist, lookup, ENGINE)
    key, *attrs = (c for c, _ in dim(name).columns)
    return sorted(
        (r[key], r["effective_at"], *(r[a] for a in attrs[:3]), r["is_delete"])
        for r in out.to_pylist()
    )


def customer(cid: str, state: str, when: datetime, deleted: bool = False) -> dict[str, Any]:
    return {"customer_id": cid, "customer_unique_id": PERSON, "customer_zip_code_prefix": "01037",
            "customer_city": "x", "customer_state": state, "updated_at": when,
            "deleted_at": when if deleted else None}  # fmt: skip


def test_a_person_is_their_latest_live_customer_row_at_each_instant() -> None:
    c1, c2 = "c1" * 16, "c2" * 16
    hist = history(
        "customers",
        [
            customer(c1, "SP", at(1)),
            customer(c2, "RJ", at(2)),
            customer(c2, "RJ", at(3), deleted=True),  # back to the live SP row
            {"customer_id": c1, "op": "delete", "at": at(4)},  # a tombstone: nothing is live
            customer(c1, "MG", at(5)),  # restored
            customer(c2, "X", at(6)),  # an invalid state: Silver rejects it, so does Gold
        ],
    )
    assert events("dim_customer", hist) == [
        (PERSON, at(1), "01037", "x", "SP", False),
        (PERSON, at(2), "01037", "x", "RJ", False),
        (PERSON, at(3), "01037", "x", "SP", False),
        (PERSON, at(4), None, None, None, True),
        (PERSON, at(5), "01037", "x", "MG", False),
    ]


def product(when: datetime, weight: int, deleted: bool = False) -> dict[str, Any]:
    return {"product_id": "a1" * 16, "product_category_name": " Perfumaria ",
            "product_weight_g": weight, "updated_at": when,
            "deleted_at": when if deleted else None}  # fmt: skip


def translation(english: str, when: datetime, deleted: bool = False) -> dict[str, Any]:
    return {"product_category_name": "perfumaria", "product_category_name_english": english,
            "updated_at": when, "deleted_at": when if deleted else None}  # fmt: skip


def test_a_product_takes_the_translation_in_force_at_each_instant() -> None:
    hist = history("products", [product(at(1), 100), product(at(4), 200)])
    lookup = history(
        "product_category_name_translation",
        [
            translation("perfumery", at(0)),
            translation("perfume", at(2)),  # a relabel: an event of the product at 2
            translation("perfume", at(3), deleted=True),  # untranslated: the Portuguese name
        ],
    )
    assert events("dim_product", hist, lookup) == [
        ("a1" * 16, at(1), "perfumaria", "perfumery", 100, False),
        ("a1" * 16, at(2), "perfumaria", "perfume", 100, False),
        ("a1" * 16, at(3), "perfumaria", "perfumaria", 100, False),
        ("a1" * 16, at(4), "perfumaria", "perfumaria", 200, False),
    ]


def test_touched_entities_follow_rows_and_relabels() -> None:
    c1, c2 = "c1" * 16, "c2" * 16
    raw = bronze(
        "customers",
        [customer(c1, "SP", at(1)), {**customer(c2, "SP", at(1)), "customer_unique_id": OTHER}],
    )
    linked = links(dim("dim_customer"), raw)
    new = history("customers", [{"customer_id": c1, "op": "delete", "at": at(2)}])
    touched = touched_entities(dim("dim_customer"), linked, new, None, ENGINE)
    assert touched["e"].to_pylist() == [PERSON]  # the tombstone's person, found in history
    rows = rows_of(dim("dim_customer"), raw, linked, touched, ENGINE)
    assert rows["customer_id"].to_pylist() == [c1]
    products = bronze("products", [product(at(1), 100)])
    relabel = history("product_category_name_translation", [translation("perfume", at(2))])
    empty = history("products", [])
    got = touched_entities(
        dim("dim_product"), links(dim("dim_product"), products), empty, relabel, ENGINE
    )
    assert got["e"].to_pylist() == ["a1" * 16]
