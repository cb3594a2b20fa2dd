"""SCD2 invariants over random event sequences, batch splits and delivery orders.

Three regimes, because history stores versions, not events (see ``medallion.gold.scd2``):
- any events in any order: the structural invariants hold and re-applying a batch is a no-op;
- any events delivered in time order: the result equals one fold of all events;
- events no version can absorb (distinct states, each delete with its preceding upsert) in any
  order: the result equals one fold of all events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from medallion.gold.scd2 import HIGH, LOW, SCD2Spec, apply_scd2

SPEC = SCD2Spec("dim_thing", ("k",), ("v",), type1=("w",))
SCHEMA = pa.schema(
    [
        ("k", pa.string()),
        ("v", pa.string()),
        ("w", pa.float64()),
        ("effective_at", pa.timestamp("us")),
        ("is_delete", pa.bool_()),
    ]
)
T0 = datetime(2018, 1, 1)
Event = dict[str, Any]
EXAMPLES = settings(max_examples=60, deadline=None)


def upsert(key: str, day: int, v: str | None, w: float) -> Event:
    return {"k": key, "v": v, "w": w, "effective_at": T0 + timedelta(days=day), "is_delete": False}


def delete(key: str, day: int) -> Event:
    return {
        "k": key,
        "v": None,
        "w": None,
        "effective_at": T0 + timedelta(days=day),
        "is_delete": True,
    }


any_event = st.one_of(
    st.builds(
        upsert,
        st.sampled_from("ab"),
        st.integers(0, 8),
        st.sampled_from(["x", "y", None]),
        st.sampled_from([1.0, 2.0]),
    ),
    st.builds(delete, st.sampled_from("ab"), st.integers(0, 8)),
)
any_events = st.lists(any_event, min_size=1, max_size=14)


def fold(history: pa.Table | None, batch: list[Event]) -> pa.Table:
    return apply_scd2(SPEC, history, pa.Table.from_pylist(batch, schema=SCHEMA))


def fold_all(batches: list[list[Event]]) -> pa.Table | None:
    history = None
    for batch in batches:
        history = fold(history, batch)
    return history


def rows(table: pa.Table | None) -> list[tuple[Any, ...]]:
    if table is None:
        return []
    columns = (table[c].to_pylist() for c in table.column_names)
    return sorted(zip(*columns, strict=True), key=repr)


def cut(data: st.DataObject, items: list[Any]) -> list[list[Any]]:
    """``items``, in their order, cut into up to four non-empty batches."""
    cuts = data.draw(st.sets(st.integers(1, max(len(items) - 1, 1)), max_size=3))
    bounds = [0, *sorted(c for c in cuts if c < len(items)), len(items)]
    return [items[a:b] for a, b in pairwise(bounds)]


def split(data: st.DataObject, items: list[Any]) -> list[list[Any]]:
    """``items`` in a random order, cut into up to four batches."""
    return cut(data, data.draw(st.permutations(items)))


def check_invariants(table: pa.Table) -> None:
    """Contiguous, non-overlapping versions per key; at most one current; no twin versions."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        by_key[row["k"]].append(row)
    sks = table["thing_sk"].to_pylist()
    assert len(set(sks)) == len(sks) and 0 not in sks
    for versions in by_key.values():
        versions.sort(key=lambda r: (r["valid_from"], r["valid_to"]))
        assert versions[0]["valid_from"] == LOW
        for prev, nxt in pairwise(versions):
            assert not prev["is_current"]
            if prev["is_deleted"]:  # a gap only right after a delete
                assert nxt["valid_from"] > prev["valid_to"]
            else:
                assert nxt["valid_from"] == prev["valid_to"]
                assert nxt["row_hash"] != prev["row_hash"]
        for row in versions:
            assert row["valid_from"] <= row["valid_to"]
            assert row["is_current"] == (row["valid_to"] == HIGH)
            assert not (row["is_current"] and row["is_deleted"])
        assert versions[-1]["is_current"] or versions[-1]["is_deleted"]


def check_current_state(table: pa.Table | None, events: list[Event]) -> None:
    """The current version holds the latest upsert; none when the latest event is a delete."""
    current = {r["k"]: r["v"] for r in (table.to_pylist() if table else []) if r["is_current"]}
    for key in {e["k"] for e in events}:
        own = [e for e in events if e["k"] == key]
        last = max(e["effective_at"] for e in own)
        latest = [e for e in own if e["effective_at"] == last]
        if any(e["is_delete"] for e in latest):
            assert key not in current
        else:
            assert current[key] in {e["v"] for e in latest}  # a tie at one instant: either


@EXAMPLES
@given(any_events, st.data())
def test_invariants_hold_and_a_repeated_batch_is_a_no_op(
    events: list[Event], data: st.DataObject
) -> None:
    history = None
    for batch in split(data, events):
        history = fold(history, batch)
        check_invariants(history)
        assert rows(fold(history, batch)) == rows(history)


@EXAMPLES
@given(any_events, st.data())
def test_time_ordered_delivery_equals_one_fold(events: list[Event], data: st.DataObject) -> None:
    instants = sorted({e["effective_at"] for e in events})
    batches = [  # each batch covers consecutive instants, its rows in any order
        data.draw(st.permutations([e for e in events if e["effective_at"] in chunk]))
        for chunk in cut(data, instants)
    ]
    once = fold(None, events)
    assert rows(fold_all(batches)) == rows(once)
    check_current_state(once, events)


@st.composite
def unambiguous_units(draw: st.DrawFn) -> list[list[Event]]:
    """Per key: distinct times and states; each delete travels with the upsert before it."""
    units: list[list[Event]] = []
    for key in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)):
        days = sorted(draw(st.sets(st.integers(0, 40), min_size=1, max_size=6)))
        for n, day in enumerate(days):
            last = units[-1][-1] if units else None
            if last and last["k"] == key and not last["is_delete"] and draw(st.booleans()):
                units[-1].append(delete(key, day))
            else:
                units.append([upsert(key, day, f"{key}{n}", draw(st.sampled_from([1.0, 2.0])))])
    return units


@EXAMPLES
@given(unambiguous_units(), st.data())
def test_any_split_and_order_equals_one_fold(units: list[list[Event]], data: st.DataObject) -> None:
    events = [e for unit in units for e in unit]
    batches = [[e for unit in chunk for e in unit] for chunk in split(data, units)]
    batches = [data.draw(st.permutations(b)) for b in batches]
    once = fold(None, events)
    stepwise = fold_all(batches)
    assert stepwise is not None
    assert rows(stepwise) == rows(once)
    check_invariants(once)
    check_current_state(once, events)
