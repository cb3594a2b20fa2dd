"""HTML pieces: escaping, number and time formats, tables, badges, notes."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from medallion.report.style import CHECK_CLASSES, DASH, STATUS_COLOURS


# -- formatting -------------------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(value: Any, column: str = "") -> str:
    """Thousands separators; shares as percentages; None as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return str(value)
    if column.endswith(("_share", "_rate")):
        return f"{float(value) * 100:,.1f} %"
    if isinstance(value, int | Decimal) or not math.isfinite(value):
        return f"{value:,}"
    return _trim(f"{value:,.3f}")


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else DASH


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return (
        f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
    )


def compact(value: float) -> str:
    """Short axis labels: 1.2M, 53k, 0.25."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return _trim(f"{value / 1e6:.1f}") + "M"
    if magnitude >= 1e4:
        return _trim(f"{value / 1e3:.0f}") + "k"
    if magnitude >= 1e3:
        return _trim(f"{value / 1e3:.1f}") + "k"
    return _trim(f"{value:.2f}")


def value_label(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}" if abs(value) >= 100 else _trim(f"{value:,.2f}")


@dataclass(frozen=True)
class Markup:
    """A table cell that is already HTML (built from escaped parts)."""

    html: str


def html_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    """A table of cells: text is escaped, numbers formatted and right-aligned, Markup kept."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(_cell(c, v) for c, v in zip(columns, row, strict=True)) + "</tr>"
        for row in rows
    )
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="tw">{table}</div>'


def _cell(column: str, value: Any) -> str:
    if isinstance(value, Markup):
        return f"<td>{value.html}</td>"
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return f'<td class="num">{esc(fmt_num(value, column))}</td>'
    return f"<td>{esc(DASH if value is None else value)}</td>"


def badge(status: str) -> Markup:
    cls = CHECK_CLASSES.get(status.lower(), "")
    if status in STATUS_COLOURS:
        cls = {"SUCCESS": "ok", "FAILED": "bad", "SKIPPED": "muted", "RUNNING": "warn",
               "ABANDONED": "bad"}[status]  # fmt: skip
    return Markup(f'<span class="badge {cls}">{esc(status)}</span>')


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'
