"""Display text of values: numbers, shares, times, durations, axis labels."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from medallion.report.style import DASH


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
    return trim(f"{value:,.3f}")


def trim(text: str) -> str:
    """``1.500`` as ``1.5``, ``2.0`` as ``2``."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def clip(label: str, size: int) -> str:
    return label if len(label) <= size else label[: size - 1] + "\u2026"


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
        return trim(f"{value / 1e6:.1f}") + "M"
    if magnitude >= 1e4:
        return trim(f"{value / 1e3:.0f}") + "k"
    if magnitude >= 1e3:
        return trim(f"{value / 1e3:.1f}") + "k"
    return trim(f"{value:.2f}")


def value_label(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}" if abs(value) >= 100 else trim(f"{value:,.2f}")
