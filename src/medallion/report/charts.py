"""Inline SVG: axes, bar and line charts, and the run timeline.

Built from numbers and labels with ``Markup.format``, which escapes every argument that is not
itself ``Markup``; the pieces are joined as ``Markup``, so the templates insert the charts as
they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from markupsafe import Markup

from medallion.report.formats import clip, compact, fmt_num, trim, value_label
from medallion.report.style import BAR_COLOUR, LAYER_COLOURS, LAYERS, STATUS_COLOURS, Row


# -- SVG helpers ------------------------------------------------------------------------------
def join(parts: Iterable[Markup]) -> Markup:
    """Concatenate SVG pieces (a plain string among them would be escaped, not inserted)."""
    return Markup("").join(parts)


def svg(width: float, height: float, body: Markup, label: str) -> Markup:
    """An inline SVG that scales down with the page (no xmlns needed inside HTML)."""
    return Markup(
        '<svg class="chart" viewBox="0 0 {w:.0f} {h:.0f}" width="{w:.0f}" role="img" '
        'aria-label="{label}"><title>{label}</title>{body}</svg>'
    ).format(w=width, h=height, label=label, body=body)


def text(
    x: float, y: float, content: str, anchor: str = "start", cls: str = "", *, rot: int = 0
) -> Markup:
    transform = (
        Markup(' transform="rotate({} {:.1f} {:.1f})"').format(rot, x, y) if rot else Markup()
    )
    klass = Markup(' class="{}"').format(cls) if cls else Markup()
    return Markup('<text x="{:.1f}" y="{:.1f}" text-anchor="{}"{}{}>{}</text>').format(
        x, y, anchor, klass, transform, content
    )


def rect(
    x: float, y: float, w: float, h: float, fill: str, *, tip: str = "", extra: Markup | None = None
) -> Markup:
    """A bar; ``extra``: more attributes; ``tip``: its tooltip."""
    title = Markup("<title>{}</title>").format(tip) if tip else Markup()
    return Markup(
        '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"{}>{}</rect>'
    ).format(x, y, max(w, 0), max(h, 0), fill, extra or Markup(), title)


def line(x1: float, y1: float, x2: float, y2: float, cls: str) -> Markup:
    return Markup('<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" class="{}"/>').format(
        x1, y1, x2, y2, cls
    )


@dataclass(frozen=True)
class Scale:
    """Maps 0..top onto ``length`` pixels from ``origin`` (``flip``: 0 at the far end, for y)."""

    origin: float
    length: float
    top: float
    flip: bool = False

    def __call__(self, value: float) -> float:
        share = value / self.top if self.top else 0.0
        return self.origin + self.length * (1 - share if self.flip else share)


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if top <= 0 or not math.isfinite(top):
        top = 1.0
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _text_width(label: str, px: float = 6.6) -> float:
    return len(label) * px


# -- charts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    """How to draw one measure of a named query's result."""

    kind: Literal["line", "vbar", "hbar"]
    label: str  # the category column
    value: str  # the measure column
    axis: str  # the measure's axis title
    percent: bool = False
    colour: str = BAR_COLOUR

    def render(self, rows: Sequence[Row]) -> Markup:
        labels = [str(r[self.label]) for r in rows]
        values = [0.0 if r[self.value] is None else float(r[self.value]) for r in rows]
        draw = {"line": line_chart, "vbar": vbar_chart, "hbar": hbar_chart}[self.kind]
        return draw(labels, values, self)


def _y_axis(
    ticks: list[float], left: float, right: float, y_of: Callable[[float], float], spec: Chart
) -> Markup:
    parts: list[Markup] = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(line(left, y, right, y, "grid"))
        label = trim(f"{tick * 100:.1f}") + "%" if spec.percent else compact(tick)
        parts.append(text(left - 6, y + 4, label, "end", "tick"))
    return join(parts)


def vbar_chart(labels: Sequence[str], values: Sequence[float], spec: Chart) -> Markup:
    n = max(len(values), 1)
    width, left, right = 560.0, 62.0, 14.0
    widest = max((_text_width(s) for s in labels), default=0.0)
    rotate = n * widest > (width - left - right) * 0.9
    top = 46.0 if n > 12 else 26.0
    bottom = 36.0 + (min(widest, 110) * 0.72 if rotate else 16)
    height = 300.0 + (bottom - 40)
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(max(values, default=0))
    y_of = Scale(top, plot_h, ticks[-1], flip=True)
    parts = [_y_axis(ticks, left, width - right, y_of, spec)]
    band = plot_w / n
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x, y = left + i * band, y_of(max(value, 0.0))
        tip = f"{label}: {value_label(value, spec.percent)}"
        parts.append(rect(x + band * 0.15, y, band * 0.7, top + plot_h - y, spec.colour, tip=tip))
        cx = x + band / 2
        shown = value_label(value, spec.percent)
        if n > 12:
            parts.append(text(cx + 3, y - 4, shown, "start", "val", rot=-90))
        else:
            parts.append(text(cx, y - 4, shown, "middle", "val"))
        if rotate:
            parts.append(text(cx + 3, top + plot_h + 12, label, "end", "tick", rot=-45))
        else:
            parts.append(text(cx, top + plot_h + 16, label, "middle", "tick"))
    parts.append(line(left, top + plot_h, width - right, top + plot_h, "axis"))
    parts.append(text(14, top + plot_h / 2, spec.axis, "middle", "axis-title", rot=-90))
    parts.append(
        text(left + plot_w / 2, height - 6, spec.label.replace("_", " "), "middle", "axis-title")
    )
    return svg(width, height, join(parts), f"{spec.axis} by {spec.label}")


def hbar_chart(labels: Sequence[str], values: Sequence[float], spec: Chart) -> Markup:
    row_h, top, bottom, right = 22.0, 8.0, 42.0, 70.0
    left = min(max((_text_width(s) for s in labels), default=40) + 14, 220)
    width = 560.0
    height = top + row_h * max(len(values), 1) + bottom
    plot_w = width - left - right
    ticks = nice_ticks(max(values, default=0))
    x_of = Scale(left, plot_w, ticks[-1])
    plot_bottom = top + row_h * len(values)
    parts: list[Markup] = []
    for tick in ticks:
        x = x_of(tick)
        parts.append(line(x, top, x, plot_bottom, "grid"))
        label = trim(f"{tick * 100:.1f}") + "%" if spec.percent else compact(tick)
        parts.append(text(x, plot_bottom + 14, label, "middle", "tick"))
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row_h
        shown = value_label(value, spec.percent)
        parts.append(
            rect(
                left,
                y + 3,
                x_of(max(value, 0.0)) - left,
                row_h - 6,
                spec.colour,
                tip=f"{label}: {shown}",
            )
        )
        parts.append(text(left - 6, y + row_h / 2 + 4, clip(label, 30), "end", "tick"))
        parts.append(text(x_of(max(value, 0.0)) + 4, y + row_h / 2 + 4, shown, "start", "val"))
    parts.append(line(left, top, left, plot_bottom, "axis"))
    parts.append(text(left + plot_w / 2, height - 6, spec.axis, "middle", "axis-title"))
    return svg(width, height, join(parts), f"{spec.axis} by {spec.label}")


def line_chart(labels: Sequence[str], values: Sequence[float], spec: Chart) -> Markup:
    width, height, left, right, top, bottom = 560.0, 300.0, 62.0, 20.0, 26.0, 70.0
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(values)
    ticks = nice_ticks(max(values, default=0))
    y_of = Scale(top, plot_h, ticks[-1], flip=True)
    x_of = Scale(left, plot_w, n - 1) if n > 1 else Scale(left + plot_w / 2, 0, 1)
    parts = [_y_axis(ticks, left, width - right, y_of, spec)]
    points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
    parts.append(
        Markup('<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>').format(
            points, spec.colour
        )
    )
    every = max(1, math.ceil(n / 12))
    marked = {values.index(max(values)), n - 1} if values else set()
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x, y = x_of(i), y_of(value)
        tip = f"{label}: {value_label(value, spec.percent)}"
        parts.append(
            Markup(
                '<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"><title>{}</title></circle>'
            ).format(x, y, spec.colour, tip)
        )
        if n <= 12 or i in marked:
            parts.append(text(x, y - 8, value_label(value, spec.percent), "middle", "val"))
        if (n - 1 - i) % every == 0:  # always label the latest point
            parts.append(text(x + 3, top + plot_h + 12, label, "end", "tick", rot=-45))
    parts.append(line(left, top + plot_h, width - right, top + plot_h, "axis"))
    parts.append(text(14, top + plot_h / 2, spec.axis, "middle", "axis-title", rot=-90))
    parts.append(
        text(left + plot_w / 2, height - 6, spec.label.replace("_", " "), "middle", "axis-title")
    )
    return svg(width, height, join(parts), f"{spec.axis} by {spec.label}")


# -- run timeline -----------------------------------------------------------------------------
def _layer_order(layers: Iterable[str]) -> list[str]:
    present = set(layers)
    return [x for x in LAYERS if x in present] + sorted(present - set(LAYERS))


def timeline_svg(attempts: Sequence[Row]) -> Markup:
    """A Gantt chart: one row per task, one bar per attempt, grouped by layer."""
    t0 = min(r["started_at"] for r in attempts)
    span = max(_offsets(r, t0)[1] for r in attempts)
    label_w, plot_w, row_h, head_h, top = 300.0, 760.0, 18.0, 22.0, 6.0
    width = label_w + plot_w + 80
    ticks = nice_ticks(max(span, 1e-3), 8)
    x_of = Scale(label_w, plot_w, ticks[-1])
    by_task: dict[str, list[Row]] = {}
    for row in attempts:
        by_task.setdefault(row["task"], []).append(row)
    bands: list[Markup] = []
    bars: list[Markup] = []
    y = top
    for layer in _layer_order(r["layer"] for r in attempts):
        tasks = sorted(
            (t for t, rs in by_task.items() if rs[0]["layer"] == layer),
            key=lambda t: min(r["started_at"] for r in by_task[t]),
        )
        band_h = head_h + row_h * len(tasks)
        fill = LAYER_COLOURS.get(layer, "#eef")
        bands.append(rect(0, y, width, band_h, fill, extra=Markup(' opacity="0.55"')))
        bands.append(text(6, y + 15, layer.upper(), "start", "layer"))
        y += head_h
        for task in tasks:
            bars.append(_timeline_row(task, by_task[task], y, t0, x_of))
            y += row_h
    parts = bands
    for tick in ticks:
        parts.append(line(x_of(tick), top, x_of(tick), y, "grid"))
        parts.append(text(x_of(tick), y + 14, f"{trim(f'{tick:.2f}')} s", "middle", "tick"))
    parts += bars
    title = "seconds since the run started"
    parts.append(text(label_w + plot_w / 2, y + 32, title, "middle", "axis-title"))
    return svg(width, y + 40, join(parts), "run timeline")


def _offsets(row: Row, t0: datetime) -> tuple[float, float]:
    """Seconds from the run's start to an attempt's start and end (no end yet: its start)."""
    start = (row["started_at"] - t0).total_seconds()
    end = ((row["ended_at"] or row["started_at"]) - t0).total_seconds()
    return start, max(end, start)


def _timeline_row(task: str, attempts: list[Row], y: float, t0: datetime, x_of: Scale) -> Markup:
    row_h = 18.0
    parts = [text(12, y + row_h - 5, clip(task, 48), "start", "task")]
    end_x = 0.0
    for row in sorted(attempts, key=lambda r: (r["attempt"], r["id"])):
        start, end = _offsets(row, t0)
        tip = (
            f"{task} attempt {row['attempt']}: {row['status']} in {end - start:.2f} s, "
            f"rows read {fmt_num(row['rows_read'])}, written {fmt_num(row['rows_written'])}"
        )
        colour = STATUS_COLOURS.get(row["status"], "#607d8b")
        extra = Markup(' stroke="#333" stroke-dasharray="3 2"') if row["attempt"] > 1 else None
        bar_w = max(x_of(end) - x_of(start), 3.0)
        parts.append(rect(x_of(start), y + 3, bar_w, row_h - 6, colour, tip=tip, extra=extra))
        end_x = max(end_x, x_of(start) + bar_w)
    attempts_n = max(r["attempt"] for r in attempts)
    if attempts_n > 1:
        label = f"\u21bb {attempts_n} attempts"
        parts.append(text(end_x + 5, y + row_h - 5, label, "start", "retry"))
    return join(parts)
