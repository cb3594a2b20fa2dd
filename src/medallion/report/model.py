"""The plain data the templates render: badges, tables of display-ready cells, sections.

Nothing here is HTML: values become display text, and the templates (autoescaped) do the
markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from medallion.report.formats import fmt_num
from medallion.report.style import CHECK_CLASSES, DASH, STATUS_CLASSES


@dataclass(frozen=True)
class Badge:
    text: str
    cls: str  # ok, bad, warn, muted or "" (grey)


def badge(status: str) -> Badge:
    """A run or task status (SUCCESS, FAILED...) or a check status (pass, warn, fail)."""
    return Badge(status, STATUS_CLASSES.get(status, CHECK_CLASSES.get(status.lower(), "")))


@dataclass(frozen=True)
class Code:
    """A cell shown as code (a check's sample rows)."""

    text: str


@dataclass(frozen=True)
class Cell:
    text: str
    kind: Literal["text", "num", "badge", "code"] = "text"
    cls: str = ""  # a badge's class


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    cls: str = ""


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> Table:
    """A table of values: numbers formatted (right-aligned), None as a dash, badges and code
    kept as such, anything else as its text."""
    cells = tuple(tuple(_cell(c, v) for c, v in zip(columns, row, strict=True)) for row in rows)
    return Table(tuple(columns), cells, cls)


def _cell(column: str, value: Any) -> Cell:
    if isinstance(value, Badge):
        return Cell(value.text, "badge", value.cls)
    if isinstance(value, Code):
        return Cell(value.text, "code")
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return Cell(fmt_num(value, column), "num")
    return Cell(DASH if value is None else str(value))


@dataclass(frozen=True)
class Section:
    """One section of the page; ``templates/sections/<id>.html.j2`` renders its ``view``."""

    id: str
    title: str
    view: object

    @property
    def template(self) -> str:
        return f"sections/{self.id}.html.j2"
