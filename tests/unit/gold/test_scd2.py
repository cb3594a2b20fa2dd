"""SCD2 fold: one test per scenario of GOLD.md, with the exact expected history rows."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from medallion.errors import MedallionError
from medallion.gold.scd2 import (
    HIGH,
    LOW,
    SCD2Error,
    SCD2Spec,
    apply_scd2,
    dimension_schema,
    unknown_member,
)

SPEC = SCD2Spec("dim_customer", ("customer_id",), ("city", "state"), type1=("lat",))
EVENTS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("city", pa.string()),
        ("state", pa.string()),
        ("lat", pa.float64()),
        ("effective_at", pa.timestamp("us")),
        ("is_delete", pa.bool_()),
    ]
)
Row = tuple[Any, ...]


def t(month: int, day: int = 1, year: int = 2018) -> datetime:
    return datetime(year, month, day)


def up(key: str, city: str | None, at: datetime, lat: float = 1.0) -> dict[str, Any]:
    return {"customer_id": key, "city": city, "state": "SP", "lat": lat, "effective_at": at}


def delete(key: str, at: datetime) -> dict[str, Any]:
    return {"customer_id": key, "effective_at": at, "is_delete": True}


def events(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([{"is_delete": False, **r} for r in rows], schema=EVENTS_SCHEMA)


def fold(history: pa.Table | None, *rows: dict[str, Any]) -> pa.Table:
    return apply_scd2(SPEC, history, events(*rows))


def versions(table: pa.Table) -> set[Row]:
    """(key, city, valid_from, valid_to, is_current, is_deleted) per row."""
    cols = ["customer_id", "city", "valid_from", "valid_to", "is_current", "is_deleted"]
    return set(zip(*(table[c].to_pylist() for c in cols), strict=True))


def full(table: pa.Table) -> list[Row]:
    """Every column of every row, order-independent."""
    return sorted(zip(*(table[c].to_pylist() for c in table.column_names), strict=True), key=repr)


def expected_sk(key: str, start: datetime, city: str) -> int:
    """The documented formula, recomputed outside the engine: it must never drift."""
    micros = (start - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    version = {"customer_id": key, "effective_at": micros, "row_hash": row_hash(city)}
    payload = json.dumps(version, separators=(",", ":"))
    return max(int(hashlib.sha256(payload.encode()).hexdigest()[:15], 16), 1)


def row_hash(city: str | None, state: str | None = "SP") -> str:
    return hashlib.sha256(
        json.dumps({"city": city, "state": state}, separators=(",", ":")).encode()
    ).hexdigest()


@pytest.fixture
def loaded() -> pa.Table:
    """Customers a (city x) and b (city y) first seen on 2018-01-01."""
    return fold(None, up("a", "x", t(1)), up("b", "y", t(1)))


def test_first_load(loaded: pa.Table) -> None:
    assert versions(loaded) == {
        ("a", "x", LOW, HIGH, True, False),
        ("b", "y", LOW, HIGH, True, False),
    }
    assert loaded.schema == dimension_schema(SPEC, EVENTS_SCHEMA)
    assert loaded.column_names == [
        "customer_sk", "customer_id", "city", "state", "lat",
        "effective_at", "valid_from", "valid_to", "is_current", "is_deleted", "row_hash",
    ]  # fmt: skip
    a = loaded.filter(pa.compute.equal(loaded["customer_id"], "a")).to_pylist()[0]
    assert a["effective_at"] == t(1)
    assert a["customer_sk"] == expected_sk("a", t(1), "x")
    assert a["row_hash"] == hashlib.sha256(b'{"city":"x","state":"SP"}').hexdigest()
    assert a["row_hash"] == row_hash("x")


def test_row_hash_is_null_safe_and_unambiguous() -> None:
    spec = SCD2Spec("dim_t", ("k",), ("p", "q"))
    table = pa.table(
        {
            "k": ["1", "2", "3", "4"],
            "p": [None, "NULL", "a|b", "a"],
            "q": ["c", "c", "c", "b|c"],
            "effective_at": pa.array([t(1)] * 4, pa.timestamp("us")),
            "is_delete": [False] * 4,
        }
    )
    hashes = apply_scd2(spec, None, table)["row_hash"].to_pylist()
    assert len(set(hashes)) == 4
    assert all(len(h) == 64 for h in hashes)


def test_no_change_changes_nothing(loaded: pa.Table) -> None:
    assert full(fold(loaded, up("a", "x", t(2)), up("b", "y", t(1)))) == full(loaded)


def test_tracked_change_closes_and_opens(loaded: pa.Table) -> None:
    after = fold(loaded, up("a", "z", t(2)))
    assert versions(after) == {
        ("a", "x", LOW, t(2), False, False),
        ("a", "z", t(2), HIGH, True, False),
        ("b", "y", LOW, HIGH, True, False),
    }
    assert sorted(after["customer_sk"].to_pylist()) == sorted(
        [expected_sk("a", t(1), "x"), expected_sk("a", t(2), "z"), expected_sk("b", t(1), "y")]
    )


def test_type1_change_updates_in_place(loaded: pa.Table) -> None:
    after = fold(loaded, up("a", "x", t(2), lat=-23.5))
    assert versions(after) == versions(loaded)
    a = after.filter(pa.compute.equal(after["customer_id"], "a")).to_pylist()[0]
    assert (a["lat"], a["effective_at"], a["customer_sk"]) == (
        -23.5,
        t(1),
        expected_sk("a", t(1), "x"),
    )


def test_several_changes_of_one_key_in_one_batch(loaded: pa.Table) -> None:
    after = fold(loaded, up("a", "y", t(3)), up("a", "w", t(4)), up("a", "z", t(2)))
    assert versions(after) - versions(loaded) == {
        ("a", "x", LOW, t(2), False, False),
        ("a", "z", t(2), t(3), False, False),
        ("a", "y", t(3), t(4), False, False),
        ("a", "w", t(4), HIGH, True, False),
    }


@pytest.fixture
def two_versions(loaded: pa.Table) -> pa.Table:
    """a: x from 1900 to March, z from March on."""
    return fold(loaded, up("a", "z", t(3)))


def test_out_of_order_change_splits_the_interval(two_versions: pa.Table) -> None:
    after = fold(two_versions, up("a", "y", t(2)))
    assert {v for v in versions(after) if v[0] == "a"} == {
        ("a", "x", LOW, t(2), False, False),
        ("a", "y", t(2), t(3), False, False),
        ("a", "z", t(3), HIGH, True, False),
    }


def test_out_of_order_change_before_the_first_observation(two_versions: pa.Table) -> None:
    after = fold(two_versions, up("a", "q", t(12, 1, 2017)))
    assert {v for v in versions(after) if v[0] == "a"} == {
        ("a", "q", LOW, t(1), False, False),
        ("a", "x", t(1), t(3), False, False),
        ("a", "z", t(3), HIGH, True, False),
    }


def test_out_of_order_change_equal_to_its_neighbour_merges(two_versions: pa.Table) -> None:
    assert full(fold(two_versions, up("a", "x", t(2)))) == full(two_versions)
    moved_back = fold(two_versions, up("a", "z", t(2)))  # the next version starts earlier
    assert {v for v in versions(moved_back) if v[0] == "a"} == {
        ("a", "x", LOW, t(2), False, False),
        ("a", "z", t(2), HIGH, True, False),
    }


def test_delete_closes_and_marks_the_current_version(loaded: pa.Table) -> None:
    after = fold(loaded, delete("a", t(2)))
    assert versions(after) == {
        ("a", "x", LOW, t(2), False, True),
        ("b", "y", LOW, HIGH, True, False),
    }


def test_restore_after_delete_opens_a_new_version(loaded: pa.Table) -> None:
    after = fold(fold(loaded, delete("a", t(2))), up("a", "x", t(3)))
    assert {v for v in versions(after) if v[0] == "a"} == {
        ("a", "x", LOW, t(2), False, True),
        ("a", "x", t(3), HIGH, True, False),
    }


def test_redelete_closes_the_restored_version(loaded: pa.Table) -> None:
    restored = fold(fold(loaded, delete("a", t(2))), up("a", "x", t(3)))
    after = fold(restored, delete("a", t(4)))
    assert {v for v in versions(after) if v[0] == "a"} == {
        ("a", "x", LOW, t(2), False, True),
        ("a", "x", t(3), t(4), False, True),
    }
    assert full(fold(after, delete("a", t(5)))) == full(after)  # deleting a deleted key: no-op


def test_delete_of_an_unknown_key_adds_nothing(loaded: pa.Table) -> None:
    assert full(fold(loaded, delete("nobody", t(2)))) == full(loaded)


def test_same_batch_twice_changes_nothing(two_versions: pa.Table) -> None:
    batch = (
        up("a", "y", t(2)),
        up("a", "y", t(2, 15), lat=7.0),
        delete("b", t(4)),
        up("c", "k", t(5)),
    )
    once = fold(two_versions, *batch)
    assert full(fold(once, *batch)) == full(once)
    assert full(fold(once, *batch, *batch)) == full(once)  # duplicates inside a batch too


def test_untouched_keys_pass_through(two_versions: pa.Table) -> None:
    member = unknown_member(SPEC, two_versions.schema)
    history = pa.concat_tables([two_versions, member])
    after = fold(history, up("a", "w", t(5)))
    untouched = [r for r in full(history) if r[1] != "a"]
    assert [r for r in full(after) if r[1] != "a"] == untouched
    assert after.num_rows == history.num_rows + 1


def test_rebuild_from_scratch_equals_step_by_step() -> None:
    steps = [
        [up("a", "x", t(1)), up("b", "y", t(1)), delete("c", t(1))],
        [up("a", "z", t(2)), up("a", "z", t(2, 10), lat=3.0), up("c", "k", t(2))],
        [delete("a", t(3)), up("b", "y", t(3), lat=9.0), delete("c", t(3))],
        [up("a", "x", t(4)), up("b", "v", t(4)), delete("a", t(5)), delete("a", t(6))],
    ]
    history = None
    for step in steps:
        history = fold(history, *step)
    assert history is not None
    assert full(fold(None, *(e for step in reversed(steps) for e in step))) == full(history)


def test_an_older_equal_event_keeps_the_stored_type1_values() -> None:
    """The stored lat may have been seen after the new event: it wins, and a re-run agrees."""
    stored = fold(None, up("a", "x", t(2), lat=1.0))
    after = fold(stored, up("a", "x", t(1), lat=2.0))
    assert after.select(["city", "lat", "effective_at"]).to_pylist() == [
        {"city": "x", "lat": 1.0, "effective_at": t(1)}
    ]
    assert full(fold(after, up("a", "x", t(1), lat=2.0))) == full(after)


def test_a_conflict_absorbed_into_a_version_stays_resolved() -> None:
    """Regression: c@March hid x@March at one instant, then was absorbed into c@February."""
    history = fold(None, up("a", "a", t(1)), up("a", "c", t(3)))
    batch = (up("a", "c", t(2)), up("a", "x", t(3)))
    once = fold(history, *batch)
    assert full(fold(once, *batch)) == full(once)


def test_ties_at_one_instant_are_deterministic(loaded: pa.Table) -> None:
    tie = [up("a", "p", t(2)), up("a", "q", t(2)), delete("b", t(2)), up("b", "r", t(2))]
    results = [fold(loaded, *tie), fold(loaded, *reversed(tie))]
    results.append(fold(fold(loaded, *tie[::2]), *tie[1::2]))
    assert full(results[0]) == full(results[1]) == full(results[2])
    loser, winner = sorted("pq", key=row_hash)  # the greatest tracked hash is in force
    assert versions(results[0]) == {  # and a delete comes after an upsert
        ("a", "x", LOW, t(2), False, False),
        ("a", loser, t(2), t(2), False, False),
        ("a", winner, t(2), HIGH, True, False),
        ("b", "y", LOW, t(2), False, False),
        ("b", "r", t(2), t(2), False, True),
    }


def test_unknown_member() -> None:
    schema = dimension_schema(SPEC, EVENTS_SCHEMA)
    (row,) = unknown_member(SPEC, schema).to_pylist()
    assert row == {
        "customer_sk": 0, "customer_id": "unknown", "city": None, "state": None, "lat": None,
        "effective_at": LOW, "valid_from": LOW, "valid_to": HIGH,
        "is_current": True, "is_deleted": False,
        "row_hash": row_hash(None, None),
    }  # fmt: skip
    int_key = SCD2Spec("dim_n", ("n",), ("v",))
    int_schema = pa.schema([("n", pa.int64()), ("v", pa.string())])
    (member,) = unknown_member(int_key, dimension_schema(int_key, int_schema)).to_pylist()
    assert (member["n_sk"], member["n"]) == (0, None)


def test_missing_event_columns_are_named() -> None:
    table = events(up("a", "x", t(1))).drop_columns(["state", "is_delete"])
    with pytest.raises(SCD2Error, match=r"^dim_customer: events lack columns state, is_delete$"):
        apply_scd2(SPEC, None, table)


def test_null_natural_keys_are_counted() -> None:
    table = events(up("a", "x", t(1)), up("b", "x", t(1)), delete("a", t(2)))
    table = table.set_column(0, "customer_id", pa.array([None, None, "a"], pa.string()))
    with pytest.raises(
        MedallionError, match=r"^dim_customer: 2 event\(s\) with NULL customer_id; drop or fix"
    ):
        apply_scd2(SPEC, None, table)


def test_wrong_event_types_are_rejected() -> None:
    table = events(up("a", "x", t(1)))
    as_text = table.set_column(4, "effective_at", table["effective_at"].cast(pa.string()))
    with pytest.raises(SCD2Error, match="effective_at is string; cast it"):
        apply_scd2(SPEC, None, as_text)


def test_missing_history_columns_are_named(loaded: pa.Table) -> None:
    with pytest.raises(SCD2Error, match="history lack columns row_hash"):
        fold(loaded.drop_columns(["row_hash"]), up("a", "x", t(1)))


@pytest.mark.parametrize(
    ("natural_key", "tracked", "type1"),
    [((), ("a",), ()), (("k",), (), ()), (("k",), ("a",), ("a",)), (("k",), ("valid_to",), ())],
)
def test_bad_specs_are_rejected(
    natural_key: tuple[str, ...], tracked: tuple[str, ...], type1: tuple[str, ...]
) -> None:
    with pytest.raises(SCD2Error, match="dim_x"):
        SCD2Spec("dim_x", natural_key, tracked, type1)


def test_sk_column_name() -> None:
    assert SPEC.sk_column == "customer_sk"
    assert SCD2Spec("product", ("p",), ("c",)).sk_column == "product_sk"


def test_composite_and_integer_natural_keys() -> None:
    spec = SCD2Spec("dim_item", ("order_id", "item_no"), ("status",))
    schema = pa.schema(
        [
            ("order_id", pa.string()),
            ("item_no", pa.int32()),
            ("status", pa.string()),
            ("effective_at", pa.timestamp("us")),
            ("is_delete", pa.bool_()),
        ]
    )

    def batch(*rows: tuple[str, int, str | None, datetime, bool]) -> pa.Table:
        return pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema)

    first = apply_scd2(
        spec, None, batch(("o", 1, "new", t(1), False), ("o", 2, "new", t(1), False))
    )
    after = apply_scd2(
        spec, first, batch(("o", 1, "paid", t(2), False), ("o", 2, None, t(3), True))
    )
    cols = ["order_id", "item_no", "status", "valid_from", "valid_to", "is_current", "is_deleted"]
    assert set(zip(*(after[c].to_pylist() for c in cols), strict=True)) == {
        ("o", 1, "new", LOW, t(2), False, False),
        ("o", 1, "paid", t(2), HIGH, True, False),
        ("o", 2, "new", LOW, t(3), False, True),
    }
    assert after.schema.field("item_no").type == pa.int32()
