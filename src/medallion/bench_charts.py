"""The benchmark's charts as standalone SVG files, drawn with the report's SVG helpers
(``report/charts.py``): median per stage with a min-max whisker, and task seconds per layer
stacked for each pipeline run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from medallion.report.charts import Scale, join, line, nice_ticks, rect, text
from medallion.report.formats import trim
from medallion.report.style import BAR_COLOUR

STYLE = (
    "text{font:12px sans-serif;fill:#222}.tick{fill:#555;font-size:11px}"
    ".val{font-size:11px}.title{font-size:14px;font-weight:bold}"
    ".axis{stroke:#333}.grid{stroke:#ddd}.whisker{stroke:#222;stroke-width:1.5}"
)
LAYER_FILLS = {"bronze": "#b0703c", "silver": "#8d99a6", "gold": "#d4a017", "check": "#3f6fb5"}
OTHER_FILLS = ("#6a994e", "#9c6644", "#7b2cbf", "#e76f51")
WIDTH, LEFT, RIGHT, TOP, BOTTOM = 640.0, 64.0, 150.0, 40.0, 56.0
HEIGHT = 340.0


def document(body: Markup, title: str) -> str:
    """A standalone SVG file (with its namespace and style) around ``body``."""
    return str(
        Markup(
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:.0f} {h:.0f}" '
            'width="{w:.0f}" height="{h:.0f}" role="img" aria-label="{t}"><title>{t}</title>'
            '<style>{style}</style><rect width="100%" height="100%" fill="#fff"/>{body}</svg>\n'
        ).format(w=WIDTH, h=HEIGHT, t=title, style=Markup(STYLE), body=body)
    )


def _frame(title: str, axis: str, labels: Sequence[str], top: float) -> tuple[list[Markup], Scale]:
    """Title, y grid with ticks up to ``top``, x axis with the labels; returns the y scale."""
    plot_h = HEIGHT - TOP - BOTTOM
    ticks = nice_ticks(top)
    y_of = Scale(TOP, plot_h, ticks[-1], flip=True)
    parts = [text(LEFT, 22, title, "start", "title")]
    for tick in ticks:
        y = y_of(tick)
        parts.append(line(LEFT, y, WIDTH - RIGHT, y, "grid"))
        parts.append(text(LEFT - 6, y + 4, trim(f"{tick:.2f}"), "end", "tick"))
    band = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for i, label in enumerate(labels):
        parts.append(text(LEFT + (i + 0.5) * band, HEIGHT - BOTTOM + 16, label, "middle", "tick"))
    parts.append(line(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, HEIGHT - BOTTOM, "axis"))
    parts.append(text(16, TOP + plot_h / 2, axis, "middle", "tick", rot=-90))
    return parts, y_of


def spread_chart(title: str, axis: str, stages: Sequence[Mapping[str, Any]], measure: str) -> str:
    """One bar per stage at the median of ``measure``, a whisker from its min to its max."""
    labels = [s["name"] for s in stages]
    values = [s[measure] for s in stages]
    parts, y_of = _frame(title, axis, labels, max((v["max"] for v in values), default=0.0))
    band = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    base = HEIGHT - BOTTOM
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x, cx = LEFT + i * band + band * 0.2, LEFT + (i + 0.5) * band
        tip = f"{label}: median {v['median']:g}, min {v['min']:g}, max {v['max']:g}"
        top = y_of(v["median"])
        parts.append(rect(x, top, band * 0.6, base - top, BAR_COLOUR, tip=tip))
        parts.append(line(cx, y_of(v["min"]), cx, y_of(v["max"]), "whisker"))
        for end in (v["min"], v["max"]):
            parts.append(line(cx - 6, y_of(end), cx + 6, y_of(end), "whisker"))
        parts.append(text(cx + 8, y_of(v["median"]) - 4, f"{v['median']:g}", "start", "val"))
    parts.append(text(WIDTH - RIGHT + 10, TOP + 10, "bar: median", "start", "tick"))
    parts.append(text(WIDTH - RIGHT + 10, TOP + 26, "whisker: min-max", "start", "tick"))
    return document(join(parts), title)


def layer_fill(layer: str, index: int) -> str:
    return LAYER_FILLS.get(layer, OTHER_FILLS[index % len(OTHER_FILLS)])


def layers_chart(title: str, stages: Sequence[Mapping[str, Any]]) -> str:
    """For each stage with layers (the pipeline runs), median task seconds stacked by layer."""
    runs = [s for s in stages if s.get("layers")]
    layers = sorted({k for s in runs for k in s["layers"]}, key=_layer_rank)
    totals = [sum(s["layers"].values()) for s in runs]
    parts, y_of = _frame(title, "task seconds", [s["name"] for s in runs], max(totals, default=0))
    band = (WIDTH - LEFT - RIGHT) / max(len(runs), 1)
    for i, stage in enumerate(runs):
        x, height_so_far = LEFT + i * band + band * 0.2, 0.0
        for j, layer in enumerate(layers):
            value = stage["layers"].get(layer, 0.0)
            top = y_of(height_so_far + value)
            parts.append(rect(x, top, band * 0.6, y_of(height_so_far) - top, layer_fill(layer, j)))
            height_so_far += value
        parts.append(text(x + band * 0.3, y_of(totals[i]) - 4, f"{totals[i]:g}", "middle", "val"))
    for j, layer in enumerate(layers):
        y = TOP + 18 * j
        parts.append(rect(WIDTH - RIGHT + 10, y, 12, 12, layer_fill(layer, j)))
        parts.append(text(WIDTH - RIGHT + 28, y + 10, layer, "start", "tick"))
    return document(join(parts), title)


def _layer_rank(layer: str) -> tuple[int, str]:
    order = list(LAYER_FILLS)
    return (order.index(layer) if layer in order else len(order), layer)


def write_charts(result: Mapping[str, Any], out: Path) -> list[Path]:
    """Three SVG files beside ``out`` (``NAME-seconds.svg``, ``-memory.svg``, ``-layers.svg``)."""
    stages, runs = result["stages"], result.get("runs", 1)
    what = f"scale {result['scale']:g}, {runs} run{'s' if runs != 1 else ''}"
    charts = {
        "seconds": spread_chart(f"Wall seconds per stage ({what})", "seconds", stages, "seconds"),
        "memory": spread_chart(f"Peak RSS per stage ({what})", "MiB", stages, "peak_rss_mib"),
        "layers": layers_chart(f"Task seconds per layer, median ({what})", stages),
    }
    paths = []
    for kind, svg in charts.items():
        path = out.with_name(f"{out.stem}-{kind}.svg")
        path.write_text(svg)
        paths.append(path)
    return paths
