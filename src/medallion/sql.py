"""The one quoting rule for SQL identifiers (table and column names). Values never go into SQL
text: they are bound as parameters (``Engine.query(..., params)``, ``SourceDatabase.param``)."""

from __future__ import annotations

from collections.abc import Iterable


def quote(name: str) -> str:
    """``name`` as a double-quoted identifier, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quoted_list(names: Iterable[str], prefix: str = "") -> str:
    """``a, b`` as ``"a", "b"`` (with ``prefix``, e.g. ``t.``, before each)."""
    return ", ".join(f"{prefix}{quote(n)}" for n in names)
