"""The bounded maps: by identity (what the engines learn of a lazy dataset) and by value."""

from __future__ import annotations

import threading

import pytest

from medallion.remembered import Bounded, Remembered


class Thing:
    pass


def test_facts_are_found_by_the_object_itself_not_an_equal_one() -> None:
    known: Remembered[object, str] = Remembered(kept=4)
    a, b = Thing(), Thing()
    known.add(a, "a")
    assert (known.of(a), known.of(b), known.of("a")) == ("a", None, None)


def test_the_oldest_entry_is_forgotten_first_and_a_lookup_by_key_keeps_one() -> None:
    known: Remembered[Thing, int] = Remembered(kept=2)
    things = [Thing() for _ in range(3)]
    known.add(things[0], 0, key="k0")
    known.add(things[1], 1)
    assert known.by_key("k0") == (things[0], 0)  # now the most recent
    known.add(things[2], 2)  # forgets things[1], the oldest
    assert [known.of(t) for t in things] == [0, None, 2]
    known.add(Thing(), 3)  # forgets things[0], and its key with it
    assert known.of(things[0]) is None and known.by_key("k0") is None


def test_a_key_made_again_finds_the_new_object_after_the_old_one_is_forgotten() -> None:
    known: Remembered[Thing, str] = Remembered(kept=2)
    old, new = Thing(), Thing()
    known.add(old, "old", key="snapshot")
    known.add(new, "new", key="snapshot")  # two tasks made the same snapshot at once
    known.add(Thing(), "other")  # forgets ``old``
    assert known.by_key("snapshot") == (new, "new")


def test_bounded_keeps_the_newest_values_and_hands_the_oldest_to_forget() -> None:
    forgotten: list[str] = []
    values: Bounded[tuple[str, int], str] = Bounded(kept=2, forget=forgotten.append)
    values.put(("a", 1), "first")
    values.put(("b", 1), "second")
    values.put(("a", 1), "first again")  # replaced: not forgotten, and now the newest
    assert values.get(("a", 1)) == "first again" and forgotten == []
    values.put(("c", 1), "third")
    assert forgotten == ["second"]
    assert values.get(("b", 1)) is None
    assert [values.get(k) for k in (("a", 1), ("c", 1))] == ["first again", "third"]


def test_a_value_is_computed_once_while_others_wait_and_a_failure_keeps_nothing() -> None:
    values: Bounded[str, int | None] = Bounded(kept=4)
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> int:
        calls.append("slow")
        started.set()
        release.wait(5)
        return 7

    first = threading.Thread(target=lambda: values.computed("k", slow))
    first.start()
    started.wait(5)
    got: list[int | None] = []
    second = threading.Thread(target=lambda: got.append(values.computed("k", lambda: 8)))
    second.start()  # asks while the first computes: waits for its answer
    release.set()
    first.join(5)
    second.join(5)
    assert got == [7] and calls == ["slow"]
    assert values.computed("none", lambda: None) is None  # None is a value, kept
    assert values.computed("none", lambda: 9) is None

    def failing() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError):
        values.computed("f", failing)
    assert values.computed("f", lambda: 3) == 3  # nothing kept from the failure
