"""What this process knows of objects it made: a bounded map by identity, thread-safe; and
:class:`Bounded`, a bounded map by value.

The engines are handed lazy datasets and must learn what each reads (a lake snapshot, some
appended files, a kept result) from the object alone: the facts are remembered by the
object's identity when it is made. An entry holds the object itself, so its ``id`` is not
reused by another while it is remembered; the oldest entries are forgotten first. An entry
may also be found by a key (a snapshot asked for again), which is forgotten with it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Thing = TypeVar("Thing")
Facts = TypeVar("Facts")
Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class Remembered(Generic[Thing, Facts]):
    """Facts about up to ``kept`` objects, the most recently made or found last."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._entries: OrderedDict[int, tuple[Thing, Facts, Hashable | None]] = OrderedDict()
        self._by_key: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def add(self, thing: Thing, facts: Facts, key: Hashable | None = None) -> None:
        """Remember ``facts`` of ``thing`` (and find it by ``key`` from now on, if given)."""
        with self._lock:
            self._entries[id(thing)] = (thing, facts, key)
            if key is not None:
                self._by_key[key] = id(thing)
            while len(self._entries) > self._kept:
                ident, (_, _, old) = self._entries.popitem(last=False)
                if old is not None and self._by_key.get(old) == ident:
                    del self._by_key[old]

    def of(self, thing: object) -> Facts | None:
        """The facts of ``thing``; None when it was never remembered, or forgotten."""
        with self._lock:
            entry = self._entries.get(id(thing))
        return entry[1] if entry is not None and entry[0] is thing else None

    def by_key(self, key: Hashable) -> tuple[Thing, Facts] | None:
        """The object remembered under ``key`` and its facts (now the most recent)."""
        with self._lock:
            ident = self._by_key.get(key)
            if ident is None:
                return None
            self._entries.move_to_end(ident)
            thing, facts, _ = self._entries[ident]
            return thing, facts


class Bounded(Generic[Key, Value]):
    """Values by key, up to ``kept`` of them (the oldest put forgotten first, handed to
    ``forget``), thread-safe: what a process learnt once and asks for again."""

    def __init__(self, kept: int, forget: Callable[[Value], object] | None = None) -> None:
        self._kept = kept
        self._forget = forget
        self._values: dict[Key, Value] = {}
        self._lock = threading.Lock()
        self._busy: dict[Key, threading.Lock] = {}  # keys being computed (:meth:`computed`)

    def get(self, key: Key) -> Value | None:
        with self._lock:
            return self._values.get(key)

    def computed(self, key: Key, compute: Callable[[], Value]) -> Value:
        """The value kept under ``key``, else ``compute()``, kept there: computed once while
        other threads asking for the same key wait for it (a value may be None; a call that
        raised keeps nothing, and the next one computes)."""
        with self._lock:
            if key in self._values:
                return self._values[key]
            busy = self._busy.setdefault(key, threading.Lock())
        with busy:
            try:
                with self._lock:
                    if key in self._values:
                        return self._values[key]
                value = compute()
                self.put(key, value)
                return value
            finally:
                with self._lock:
                    self._busy.pop(key, None)

    def put(self, key: Key, value: Value) -> None:
        """Keep ``value`` under ``key`` (a value it replaces is not handed to ``forget``)."""
        with self._lock:
            self._values.pop(key, None)
            self._values[key] = value
            while len(self._values) > self._kept:
                forgotten = self._values.pop(next(iter(self._values)))
                if self._forget is not None:
                    self._forget(forgotten)
