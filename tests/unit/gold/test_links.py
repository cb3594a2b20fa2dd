"""The links of an SCD2 dimension, kept beside it: always those of the whole Bronze history
(made again when Bronze is not its own past plus appends), and the rows they pick."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medallion.catalog import bronze_schema, source_table
from medallion.engine import default_engine
from medallion.gold.dimensions import DIMENSIONS
from medallion.gold.links import current_links, links_name, links_sql, raw_key, rows_of
from medallion.silver.transform import conformed_expr
from medallion.storage import Lake

T = datetime(2018, 1, 1)
ENGINE = default_engine()
DIM = next(d for d in DIMENSIONS if d.spec.name == "dim_customer")
PEOPLE = ["a" * 32, "b" * 32, "c" * 32]
KEYS = ["1" * 32, "2" * 32, "3" * 32, "4" * 32]
# a key as the source may spell it: Silver conforms each to the lowercase, trimmed key
SPELLINGS = [lambda k: k, str.upper, lambda k: f" {k} ", lambda k: k[:4].upper() + k[4:]]


def customer(raw: str, person: str | None, hours: int, tombstone: bool = False) -> dict[str, Any]:
    when = T + timedelta(hours=hours)
    if tombstone:  # a hard delete carries only its key
        return {"customer_id": raw, "_op": "delete", "_source_updated_at": when}
    return {"customer_id": raw, "customer_unique_id": person, "customer_zip_code_prefix": "01037",
            "customer_city": "x", "customer_state": "SP", "updated_at": when,
            "_op": "upsert", "_source_updated_at": when}  # fmt: skip


def bronze(rows: list[dict[str, Any]]) -> pa.Table:
    schema = bronze_schema(source_table("customers"))
    meta = {"_run_id": "r", "_ingested_at": T, "_ingest_date": T.date()}
    filled = [{f.name: {**meta, **r}.get(f.name) for f in schema} for r in rows]
    return pa.Table.from_pylist(filled, schema)


def as_set(table: pa.Table) -> set[tuple[Any, ...]]:
    return {tuple(r.values()) for r in table.to_pylist()}


def each_once(table: pa.Table) -> set[tuple[Any, ...]]:
    """The rows of ``table`` as a set, which must hold each of them once (kept links never
    hold a link twice)."""
    rows = [tuple(r.values()) for r in table.to_pylist()]
    assert len(rows) == len(set(rows)), "a link is kept twice"
    return set(rows)


def reference_rows(raw: pa.Table, people: list[str]) -> set[tuple[Any, ...]]:
    """Every Bronze row whose conformed key ever belonged to one of ``people``, found by
    conforming every row (what the build did before the links were kept)."""
    key = conformed_expr(DIM.contract, "customer_id")
    person = conformed_expr(DIM.contract, "customer_unique_id")
    found = ENGINE.query(
        f"SELECT * FROM b WHERE {key} IN (SELECT {key} FROM b WHERE {person} IN (SELECT e FROM t))",
        {"b": raw, "t": pa.table({"e": pa.array(people, pa.string())})},
    )
    return as_set(found)


def test_every_dimension_s_key_is_read_from_its_bronze_column() -> None:
    for dim in DIMENSIONS:
        bronze_columns = bronze_schema(source_table(dim.contract.bronze)).names
        for key in raw_key(dim):
            assert key in bronze_columns
            assert key in conformed_expr(dim.contract, key)  # conformed from that column


def test_the_rows_of_a_person_are_every_row_of_every_key_they_ever_had() -> None:
    one, two, three = KEYS[:3]
    raw = bronze(
        [
            customer(one.upper(), PEOPLE[0], 1),  # spelt otherwise: the same key
            customer(one, PEOPLE[1], 2),  # the key moved to another person
            customer(one, None, 3, tombstone=True),
            customer(two, PEOPLE[1], 1),
            customer(f"  {three} ", PEOPLE[0], 1),
            customer("", PEOPLE[0], 1),  # no key: conformed to NULL, nobody's row
        ]
    )
    linked = ENGINE.query(links_sql(DIM, "b"), {"b": raw})
    got = rows_of(DIM, raw, linked, pa.table({"e": [PEOPLE[0]]}), ENGINE)
    assert sorted(got["customer_id"].to_pylist()) == sorted([one.upper(), one, one, f"  {three} "])
    assert as_set(got) == reference_rows(raw, [PEOPLE[0]])


def test_links_are_extended_by_appends_and_made_again_when_bronze_is_new(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    source = lake.table("bronze", "customers")
    write = {"transactions": {}, "metadata": {}}
    source.append(bronze([customer(KEYS[0], PEOPLE[0], 1)]), expected={}, **write)
    store = lake.table("gold", links_name(DIM))

    def links_now(through: int) -> set[tuple[Any, ...]]:
        rows = source.relation(version=through)
        got = current_links(
            DIM, lake, source, rows, through=through, engine=ENGINE, metadata={"step": "test"}
        )
        assert as_set(ENGINE.query("SELECT * FROM l", {"l": got})) == as_set(
            ENGINE.query(links_sql(DIM, "b"), {"b": rows})
        )
        store._move_to_latest()
        return each_once(ENGINE.query("SELECT * FROM l", {"l": store.relation()}))

    assert len(links_now(0)) == 1  # made from the whole history
    assert store.version == 0
    source.append(bronze([customer(KEYS[0].upper(), PEOPLE[1], 2)]), expected={}, **write)
    assert len(links_now(1)) == 2
    assert _operations(store) == ["WRITE:Overwrite", "WRITE:Append"]  # extended, not made again
    source.append(bronze([customer(KEYS[0], PEOPLE[0], 3)]), expected={}, **write)
    links_now(2)  # no new link: the progress alone is recorded
    assert _operations(store)[-1] == "WRITE:Append" and store.version == 2
    links_now(1)  # ahead of a build that folds less: kept as it is
    assert store.version == 2
    source.drop()  # Bronze made anew: the links of the old one must go
    source = lake.table("bronze", "customers")
    source.append(bronze([customer(KEYS[1], PEOPLE[2], 1)]), expected={}, **write)
    assert {r[2] for r in links_now(0)} == {PEOPLE[2]}
    made = len(_operations(store))
    current_links(DIM, lake, source, source.relation(), through=0, engine=ENGINE, metadata={})
    assert len(_operations(store)) == made  # up to date: nothing written
    rows = source.relation()
    current_links(DIM, lake, source, rows, through=0, engine=ENGINE, metadata={}, anew=True)
    assert _operations(store)[made:] == ["WRITE:Overwrite"]  # a full refresh makes them again


def test_links_conformed_by_other_rules_are_made_again(tmp_path: Path, monkeypatch: Any) -> None:
    lake = Lake(str(tmp_path))
    source = lake.table("bronze", "customers")
    write = {"transactions": {}, "metadata": {}}
    source.append(bronze([customer(KEYS[0], PEOPLE[0], 1)]), expected={}, **write)
    current_links(DIM, lake, source, source.relation(), through=0, engine=ENGINE, metadata={})
    source.append(bronze([customer(KEYS[1], PEOPLE[1], 2)]), expected={}, **write)
    import medallion.gold.links as module

    rules = module.links_sql  # another release conforms the person in upper case
    monkeypatch.setattr(
        module, "links_sql", lambda d, src: rules(d, src).replace("lower(", "upper(")
    )
    got = current_links(DIM, lake, source, source.relation(), through=1, engine=ENGINE, metadata={})
    people = {
        r["customer_unique_id"] for r in ENGINE.query("SELECT * FROM l", {"l": got}).to_pylist()
    }
    assert people == {PEOPLE[0].upper(), PEOPLE[1].upper()}  # none kept from the old rules


def _operations(store: Any) -> list[str]:
    history = reversed(store._history(100))
    return [f"{c['operation']}:{(c.get('operationParameters') or {}).get('mode')}" for c in history]


row = st.builds(
    lambda key, spelling, person, tomb, hours: customer(
        SPELLINGS[spelling](KEYS[key]), PEOPLE[person], hours, tomb
    ),
    st.integers(0, len(KEYS) - 1),
    st.integers(0, len(SPELLINGS) - 1),
    st.integers(0, len(PEOPLE) - 1),
    st.booleans(),
    st.integers(0, 48),
)
step = st.tuples(st.sampled_from(["append", "overwrite", "anew"]), st.lists(row, max_size=4))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=6), people=st.lists(st.sampled_from(PEOPLE)))
def test_kept_links_pick_the_rows_conforming_the_whole_history_picks(
    tmp_path_factory: Any, steps: list[tuple[str, list[dict[str, Any]]]], people: list[str]
) -> None:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    write = {"transactions": {}, "metadata": {}}
    for how, rows in steps:
        source = lake.table("bronze", "customers")
        if how == "anew" and source.exists:
            source.drop()
            source = lake.table("bronze", "customers")
        if how == "overwrite" and source.exists:
            source.overwrite(bronze(rows), **write)
        else:
            source.append(bronze(rows), expected={}, **write)
        assert source.version is not None
        raw = source.relation()
        got = current_links(
            DIM, lake, source, raw, through=source.version, engine=ENGINE, metadata={}
        )
        whole = ENGINE.query(links_sql(DIM, "b"), {"b": raw})
        assert each_once(ENGINE.query("SELECT * FROM l", {"l": got})) == as_set(whole)
        picked = rows_of(DIM, raw, got, pa.table({"e": pa.array(people, pa.string())}), ENGINE)
        assert as_set(picked) == reference_rows(ENGINE.query("SELECT * FROM b", {"b": raw}), people)
