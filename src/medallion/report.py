"""The run report: one static, self-contained HTML page per run (and ``latest.html``).

Everything is inline (CSS, SVG charts drawn here, no script, font or image from elsewhere) so
the page works offline, as an e-mail attachment or a CI artifact. Every piece of text that
comes from data (task errors, quarantine reasons, check samples, categories) goes through
``html.escape``; settings are never printed, only locations with URL passwords redacted.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from medallion.audit import AuditStore
from medallion.errors import AuditError, MedallionError
from medallion.runner import NOT_STARTED
from medallion.settings import Settings, redact_url

__all__ = ["build_report"]

NO_RUN = "no run in the audit log yet; run `medallion run` first"
LAYERS = ("bronze", "silver", "gold")
STATUS_COLOURS = {
    "SUCCESS": "#2e7d32",
    "FAILED": "#c62828",
    "SKIPPED": "#9e9e9e",
    "RUNNING": "#f9a825",
    "ABANDONED": "#6a1b9a",
}
LAYER_COLOURS = {"bronze": "#f3e1cf", "silver": "#e8eaed", "gold": "#f7edc4"}
CHECK_CLASSES = {"pass": "ok", "warn": "warn", "fail": "bad"}
BAR_COLOUR = "#3f6fb5"
ACCENT_COLOUR = "#d9822b"
DASH = "\u2014"

Row = dict[str, Any]
Section = tuple[str, str, str]  # id, title, HTML body


# -- entry point ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LakeViews:
    """What the report shows from the lake, handed in by the API (the report reads no lake):
    the quarantine summary and the named business queries."""

    quarantine: Callable[[], list[dict[str, Any]]]
    query: Callable[[str], pa.Table]


def build_report(settings: Settings, views: LakeViews, run_id: str | None = None) -> Path:
    """Write ``reports/<run_id>.html`` and a copy as ``reports/latest.html``; return the first.

    ``run_id`` defaults to the latest run in the audit log.
    """
    data = load_run(settings, run_id)
    page = render_page(settings, views, data)
    out = settings.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / report_name(data.run_id)
    _write_atomic(path, page)
    _write_atomic(out / "latest.html", page)
    return path


def report_name(run_id: str) -> str:
    """The report's file name; a run id given by a scheduler may hold any character."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip(".") + ".html"


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a browser refreshing the page never reads half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """One run as the audit store recorded it."""

    run_id: str
    attempts: list[Row]  # one row per task attempt, oldest first
    previous: str | None  # the run before this one, if any
    checks: list[Row]

    @property
    def final(self) -> dict[str, Row]:
        """The last attempt of every task, by task name."""
        last: dict[str, Row] = {}
        for row in self.attempts:
            seen = last.get(row["task"])
            if seen is None or (row["attempt"], row["id"]) >= (seen["attempt"], seen["id"]):
                last[row["task"]] = row
        return last


def load_run(settings: Settings, run_id: str | None = None) -> RunData:
    """The run's attempts and check results (default: the latest run), and its predecessor."""
    with AuditStore(settings.audit_location) as store:
        order = _run_ids(store)
        if not order:
            raise MedallionError(NO_RUN)
        chosen = run_id or order[-1]
        if chosen not in order:
            raise MedallionError(f"run {chosen!r} is not in the audit log; see `medallion audit`")
        at = order.index(chosen)
        previous = order[at - 1] if at else None
        return RunData(chosen, store.run_logs(run_id=chosen), previous, store.dq_results(chosen))


def _run_ids(store: AuditStore) -> list[str]:
    """Every run id in the order the runs started."""
    rl = store.t["run_logs"]
    stmt = sa.select(rl.c.run_id).group_by(rl.c.run_id).order_by(sa.func.min(rl.c.id))
    try:
        with store.engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit log: {' '.join(str(exc).split())[:300]}") from None


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


# -- SVG helpers ------------------------------------------------------------------------------
def svg(width: float, height: float, body: str, label: str) -> str:
    """An inline SVG that scales down with the page (no xmlns needed inside HTML)."""
    return (
        f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>{body}</svg>'
    )


def text(
    x: float, y: float, content: str, anchor: str = "start", cls: str = "", *, rot: int = 0
) -> str:
    transform = f' transform="rotate({rot} {x:.1f} {y:.1f})"' if rot else ""
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}{transform}>'
        f"{esc(content)}</text>"
    )


def rect(
    x: float, y: float, w: float, h: float, fill: str, *, tip: str = "", extra: str = ""
) -> str:
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
        f'fill="{fill}"{extra}>{title}</rect>'
    )


def line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="{cls}"/>'


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

    def render(self, rows: Sequence[Row]) -> str:
        labels = [str(r[self.label]) for r in rows]
        values = [0.0 if r[self.value] is None else float(r[self.value]) for r in rows]
        draw = {"line": line_chart, "vbar": vbar_chart, "hbar": hbar_chart}[self.kind]
        return draw(labels, values, self)


def _y_axis(
    ticks: list[float], left: float, right: float, y_of: Callable[[float], float], spec: Chart
) -> str:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(line(left, y, right, y, "grid"))
        label = _trim(f"{tick * 100:.1f}") + "%" if spec.percent else compact(tick)
        parts.append(text(left - 6, y + 4, label, "end", "tick"))
    return "".join(parts)


def vbar_chart(labels: Sequence[str], values: Sequence[float], spec: Chart) -> str:
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
    return svg(width, height, "".join(parts), f"{spec.axis} by {spec.label}")


def hbar_chart(labels: Sequence[str], values: Sequence[float], spec: Chart) -> str:
    row_h, top, bottom, right = 22.0, 8.0, 42.0, 70.0
    left = min(max((_text_width(s) for s in labels), default=40) + 14, 220)
    width = 560.0
    height = top + row_h * max(len(values), 1) + bottom
    plot_w = width - left - right
    ticks = nice_ticks(max(values, default=0))
    x_of = Scale(left, plot_w, ticks[-1])
    plot_bottom = top + row_h * len(values)
    parts = []
    for tick in ticks:
        x = x_of(tick)
        parts.append(line(x, top, x, plot_bottom, "grid"))
        label = _trim(f"{tick * 100:.1f}") + "%" if spec.percent else compact(tick)
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
        parts.append(text(left - 6, y + row_h / 2 + 4, _clip(label, 30), "end", "tick"))
        parts.append(text(x_of(max(value, 0.0)) + 4, y + row_h / 2 + 4, shown, "start", "val"))
    parts.append(line(left, top, left, plot_bottom, "axis"))
    parts.append(text(left + plot_w / 2, height - 6, spec.axis, "middle", "axis-title"))
    return svg(width, height, "".join(parts), f"{spec.axis} by {spec.label}")


def line_chart(labels: Sequence[str], values: Sequence[float], spec: Chart) -> str:
    width, height, left, right, top, bottom = 560.0, 300.0, 62.0, 20.0, 26.0, 70.0
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(values)
    ticks = nice_ticks(max(values, default=0))
    y_of = Scale(top, plot_h, ticks[-1], flip=True)
    x_of = Scale(left, plot_w, n - 1) if n > 1 else Scale(left + plot_w / 2, 0, 1)
    parts = [_y_axis(ticks, left, width - right, y_of, spec)]
    points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
    parts.append(
        f'<polyline points="{points}" fill="none" stroke="{spec.colour}" stroke-width="2"/>'
    )
    every = max(1, math.ceil(n / 12))
    marked = {values.index(max(values)), n - 1} if values else set()
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x, y = x_of(i), y_of(value)
        tip = f"{label}: {value_label(value, spec.percent)}"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{spec.colour}">'
            f"<title>{esc(tip)}</title></circle>"
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
    return svg(width, height, "".join(parts), f"{spec.axis} by {spec.label}")


def _clip(label: str, size: int) -> str:
    return label if len(label) <= size else label[: size - 1] + "\u2026"


# -- run timeline -----------------------------------------------------------------------------
def _layer_order(layers: Iterable[str]) -> list[str]:
    present = set(layers)
    return [x for x in LAYERS if x in present] + sorted(present - set(LAYERS))


def timeline_svg(attempts: Sequence[Row]) -> str:
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
    bands: list[str] = []
    bars: list[str] = []
    y = top
    for layer in _layer_order(r["layer"] for r in attempts):
        tasks = sorted(
            (t for t, rs in by_task.items() if rs[0]["layer"] == layer),
            key=lambda t: min(r["started_at"] for r in by_task[t]),
        )
        band_h = head_h + row_h * len(tasks)
        fill = LAYER_COLOURS.get(layer, "#eef")
        bands.append(rect(0, y, width, band_h, fill, extra=' opacity="0.55"'))
        bands.append(text(6, y + 15, layer.upper(), "start", "layer"))
        y += head_h
        for task in tasks:
            bars.append(_timeline_row(task, by_task[task], y, t0, x_of))
            y += row_h
    parts = bands
    for tick in ticks:
        parts.append(line(x_of(tick), top, x_of(tick), y, "grid"))
        parts.append(text(x_of(tick), y + 14, f"{_trim(f'{tick:.2f}')} s", "middle", "tick"))
    parts += bars
    title = "seconds since the run started"
    parts.append(text(label_w + plot_w / 2, y + 32, title, "middle", "axis-title"))
    return svg(width, y + 40, "".join(parts), "run timeline")


def _offsets(row: Row, t0: datetime) -> tuple[float, float]:
    """Seconds from the run's start to an attempt's start and end (no end yet: its start)."""
    start = (row["started_at"] - t0).total_seconds()
    end = ((row["ended_at"] or row["started_at"]) - t0).total_seconds()
    return start, max(end, start)


def _timeline_row(task: str, attempts: list[Row], y: float, t0: datetime, x_of: Scale) -> str:
    row_h = 18.0
    parts = [text(12, y + row_h - 5, _clip(task, 48), "start", "task")]
    end_x = 0.0
    for row in sorted(attempts, key=lambda r: (r["attempt"], r["id"])):
        start, end = _offsets(row, t0)
        tip = (
            f"{task} attempt {row['attempt']}: {row['status']} in {end - start:.2f} s, "
            f"rows read {fmt_num(row['rows_read'])}, written {fmt_num(row['rows_written'])}"
        )
        colour = STATUS_COLOURS.get(row["status"], "#607d8b")
        extra = ' stroke="#333" stroke-dasharray="3 2"' if row["attempt"] > 1 else ""
        bar_w = max(x_of(end) - x_of(start), 3.0)
        parts.append(rect(x_of(start), y + 3, bar_w, row_h - 6, colour, tip=tip, extra=extra))
        end_x = max(end_x, x_of(start) + bar_w)
    attempts_n = max(r["attempt"] for r in attempts)
    if attempts_n > 1:
        label = f"\u21bb {attempts_n} attempts"
        parts.append(text(end_x + 5, y + row_h - 5, label, "start", "retry"))
    return "".join(parts)


def legend() -> str:
    items = "".join(
        f'<span><i style="background:{colour}"></i>{esc(status.lower())}</span>'
        for status, colour in STATUS_COLOURS.items()
    )
    return (
        f'<div class="legend">{items}<span><i class="dashed"></i>retry (attempt &gt; 1)'
        "</span></div>"
    )


# -- sections ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Totals:
    status: str
    counts: dict[str, int]
    started: datetime | None
    ended: datetime | None
    retried: int

    @property
    def seconds(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return (self.ended - self.started).total_seconds()


def totals(data: RunData) -> Totals:
    final = list(data.final.values())
    counts = {s: sum(r["status"] == s for r in final) for s in STATUS_COLOURS}
    if counts["ABANDONED"]:  # its process was killed: say so rather than RUNNING forever
        status = "ABANDONED"
    elif any(str(r.get("error") or "").startswith(NOT_STARTED) for r in final):
        status = "STOPPED"
    elif counts["FAILED"] or counts["SKIPPED"]:
        status = "FAILED"
    elif counts["RUNNING"]:
        status = "RUNNING"
    else:
        status = "SUCCESS"
    started = min((r["started_at"] for r in data.attempts), default=None)
    ended = max((r["ended_at"] or r["started_at"] for r in data.attempts), default=None)
    retried = sum(r["attempt"] > 1 for r in final)
    return Totals(status, counts, started, ended, retried)


def summary_section(settings: Settings, data: RunData) -> Section:
    t = totals(data)
    first = data.attempts[0] if data.attempts else {}
    if data.previous is None:
        previous = "none (first run)"
    elif (settings.reports_dir / report_name(data.previous)).exists():
        previous = f'<a href="{esc(report_name(data.previous))}">{esc(data.previous)}</a>'
    else:
        previous = f"{esc(data.previous)} (no report built)"
    verbs = {"SUCCESS": "succeeded", "FAILED": "failed", "SKIPPED": "skipped"}
    counts = ", ".join(f"{t.counts[s]:,} {verb}" for s, verb in verbs.items())
    if t.counts["RUNNING"]:
        counts += f", {t.counts['RUNNING']:,} running"
    facts = [
        (
            "status",
            f'{badge(t.status).html} <span class="counts">tasks: {esc(counts)}'
            f"{f', {t.retried} retried' if t.retried else ''}</span>",
        ),
        ("job", esc(first.get("job", DASH))),
        ("started", esc(fmt_time(t.started))),
        ("ended", esc(fmt_time(t.ended))),
        ("wall time", esc(fmt_seconds(t.seconds))),
        ("previous run", previous),
        ("source", esc(redact_url(settings.source_location))),
        ("lake", esc(redact_url(settings.lake_location))),
    ]
    body = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return "summary", "Summary", f'<dl class="facts">{body}</dl>'


def timeline_section(data: RunData) -> Section:
    if not data.attempts:
        return "timeline", "Run timeline", note("No task ran.")
    body = f'<div class="scroll">{timeline_svg(data.attempts)}</div>{legend()}'
    return "timeline", "Run timeline", body


def _rows_of(row: Row | None) -> tuple[Any, Any, Any]:
    if row is None:
        return None, None, None
    return row["rows_read"], row["rows_written"], row["rows_quarantined"]


def rowflow_section(data: RunData) -> Section:
    final = data.final
    by_layer = {(r["layer"], r["table_name"]): r for r in final.values()}
    sources = list(
        dict.fromkeys(r["table_name"] for r in final.values() if r["layer"] in ("bronze", "silver"))
    )
    flow = []
    for table in sources:
        bronze, silver = by_layer.get(("bronze", table)), by_layer.get(("silver", table))
        b_read, b_written, _ = _rows_of(bronze)
        s_read, s_written, s_quarantined = _rows_of(silver)
        statuses = [r["status"] for r in (bronze, silver) if r is not None]
        worst = next((s for s in ("FAILED", "SKIPPED", "RUNNING") if s in statuses), "SUCCESS")
        flow.append((table, b_read, b_written, s_read, s_written, s_quarantined, badge(worst)))
    columns = (
        "table",
        "bronze read",
        "bronze written",
        "silver read",
        "silver written",
        "silver quarantined",
        "status",
    )
    gold = [
        (
            r["table_name"],
            r["rows_read"],
            r["rows_written"],
            _unknown_members(r),
            _inputs(r),
            badge(r["status"]),
        )
        for r in final.values()
        if r["layer"] == "gold"
    ]
    parts = [
        "<h3>Bronze \u2192 Silver</h3>",
        html_table(columns, flow) if flow else note("No Bronze or Silver task in this run."),
        "<h3>Gold</h3>",
        html_table(
            (
                "table",
                "rows read",
                "rows written",
                "unknown members",
                "inputs (version read)",
                "status",
            ),
            gold,
        )
        if gold
        else note("No Gold task in this run."),
        note(
            "Counts are this run's (the last attempt of each task); incremental runs read "
            "and write only what changed."
        ),
    ]
    return "rows", "Row flow", "".join(parts)


def _metrics(row: Row) -> dict[str, Any]:
    """A task's metrics JSON as a dict (empty when missing or unreadable)."""
    try:
        metrics = json.loads(row["metrics"] or "{}")
    except (TypeError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _unknown_members(row: Row) -> str:
    """Fact rows that point at an unknown dimension member, per key (from the task metrics)."""
    counts = _metrics(row).get("unknown_members")
    if not isinstance(counts, dict) or not counts:
        return DASH
    return ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items()) if isinstance(n, int))


def _inputs(row: Row) -> str:
    """The upstream tables (and their Delta versions) a Gold task recorded in its metrics."""
    inputs = _metrics(row).get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        return DASH
    return ", ".join(
        f"{name} v{version}" if isinstance(version, int) and version >= 0 else f"{name} (none)"
        for name, version in sorted(inputs.items())
    )


def quarantine_section(views: LakeViews, data: RunData) -> Section:
    this_run = sum(r["rows_quarantined"] or 0 for r in data.final.values())
    try:
        rows = views.quarantine()
    except MedallionError as exc:
        return "quarantine", "Quarantine", note(f"not available: {redact_url(str(exc))}")
    intro = note(f"This run quarantined {this_run:,} rows. The quarantine tables now hold:")
    if not rows:
        return "quarantine", "Quarantine", intro + note("The quarantine is empty.")
    cells = [(r["table"], r["rule"], r["rows"], r["reason"]) for r in rows]
    table = html_table(("table", "rule", "rows", "example reason"), cells)
    return "quarantine", "Quarantine", intro + table


STATUS_ORDER = {"fail": 0, "warn": 1, "pass": 2}


def check_tally(checks: Sequence[Row]) -> str:
    counts = {s: sum(str(c["status"]).lower() == s for c in checks) for s in CHECK_CLASSES}
    badges = " ".join(
        f'<span class="badge {CHECK_CLASSES[s]}">{n:,} {s}</span>' for s, n in counts.items()
    )
    return f'<p class="counts">{badges}</p>'


def checks_table(checks: Sequence[Row]) -> str:
    """Check results, failures first; optional columns only when some check recorded them."""
    optional = {"failing_rows": "failing rows", "observed": "observed", "details": "details"}
    shown = [k for k in (*optional, "sample") if any(c.get(k) is not None for c in checks)]
    columns = ["check", "table", "layer", "severity", "status"]
    columns += [optional.get(k, k) for k in shown]
    ordered = sorted(checks, key=lambda c: STATUS_ORDER.get(str(c["status"]).lower(), -1))
    cells = [
        (
            _check_name(c),
            c["table_name"],
            c["layer"],
            c["severity"],
            badge(str(c["status"])),
            *(_code(c[k]) if k == "sample" else c.get(k) for k in shown),
        )
        for c in ordered
    ]
    return html_table(columns, cells, "checks")


def _check_name(check: Row) -> str:
    """The check's name without the ``layer.table.`` prefix the table columns already show."""
    prefix = f"{check['layer']}.{check['table_name']}."
    name = str(check["check_name"])
    return name.removeprefix(prefix) or name


def _code(value: Any) -> Markup | None:
    return Markup(f"<code>{esc(_clip(str(value), 240))}</code>") if value else None


def is_drift(check: Row) -> bool:
    return "drift" in str(check["check_name"]).lower()


def checks_section(data: RunData) -> Section:
    """Failed and warned checks in full; the passed ones folded away."""
    checks = [c for c in data.checks if not is_drift(c)]
    if not checks:
        return "checks", "Data-quality checks", note("No check results recorded for this run.")
    problems = [c for c in checks if str(c["status"]).lower() != "pass"]
    passed = [c for c in checks if str(c["status"]).lower() == "pass"]
    parts = [check_tally(checks)]
    parts.append(checks_table(problems) if problems else note("Every check passed."))
    if passed:
        parts.append(
            f"<details><summary>{len(passed):,} passed checks</summary>"
            f"{checks_table(passed)}</details>"
        )
    return "checks", "Data-quality checks", "".join(parts)


def drift_section(data: RunData) -> Section:
    drift = [c for c in data.checks if is_drift(c)]
    if not drift:
        return "drift", "Drift", note("No drift check results recorded for this run.")
    return "drift", "Drift", check_tally(drift) + checks_table(drift)


@dataclass(frozen=True)
class Figure:
    query: str
    title: str
    charts: tuple[Chart, ...]


FIGURES = (
    Figure(
        "monthly_revenue",
        "Monthly revenue and orders",
        (
            Chart("line", "month", "revenue", "revenue (BRL)"),
            Chart("vbar", "month", "orders", "orders"),
        ),
    ),
    Figure(
        "top_categories",
        "Top categories by revenue",
        (Chart("hbar", "category", "revenue", "revenue (BRL)"),),
    ),
    Figure(
        "rfm_segments",
        "Customers per RFM segment",
        (Chart("hbar", "segment", "customers", "customers"),),
    ),
    Figure(
        "delivery_by_state",
        "Delivery performance by customer state",
        (
            Chart("vbar", "state", "avg_delivery_days", "average delivery days"),
            Chart(
                "vbar", "state", "late_share", "late deliveries", percent=True, colour=ACCENT_COLOUR
            ),
        ),
    ),
    Figure(
        "seller_reliability",
        "Seller reliability bands (late-delivery rate)",
        (
            Chart("vbar", "late_rate_band", "sellers", "sellers"),
            Chart(
                "vbar",
                "late_rate_band",
                "avg_review_score",
                "average review score",
                colour=ACCENT_COLOUR,
            ),
        ),
    ),
    Figure(
        "day_type_effects",
        "Weekdays, weekends and holidays",
        (
            Chart("vbar", "day_type", "orders_per_day", "orders per day"),
            Chart(
                "vbar", "day_type", "revenue_per_day", "revenue per day (BRL)", colour=ACCENT_COLOUR
            ),
        ),
    ),
)


def figure_html(views: LakeViews, figure: Figure) -> str:
    head = f'<h3 id="q-{esc(figure.query)}">{esc(figure.title)}</h3>'
    try:
        result = views.query(figure.query)
    except MedallionError as exc:
        reason = redact_url(str(exc))
        return f'<div class="card">{head}<p class="na">not available</p>{note(reason)}</div>'
    rows = result.to_pylist()
    if not rows:
        return f'<div class="card">{head}<p class="na">no data yet</p></div>'
    charts = "".join(f'<div class="plot">{c.render(rows)}</div>' for c in figure.charts)
    columns = list(result.column_names)
    data = html_table(columns, [[r[c] for c in columns] for r in rows])
    return (
        f'<div class="card">{head}<div class="plots">{charts}</div>'
        f"<details><summary>data ({len(rows):,} rows)</summary>{data}</details></div>"
    )


def business_section(views: LakeViews) -> Section:
    body = "".join(figure_html(views, f) for f in FIGURES)
    return "business", "Business metrics (Gold)", body


def errors_section(data: RunData) -> Section:
    """Failed and abandoned attempts, and why tasks never started when a signal stopped the
    run (one line for them all)."""
    failed = [r for r in data.attempts if r["status"] in ("FAILED", "ABANDONED")]
    stopped = [r for r in data.final.values() if str(r.get("error") or "").startswith(NOT_STARTED)]
    if stopped:
        failed.append(
            {
                **stopped[0],
                "task": f"{len(stopped):,} task(s)",
                "attempt": 0,
                "error": stopped[0]["error"],
            }
        )
    if not failed:
        return "errors", "Errors", note("No task failed.")
    items = "".join(
        f'<div class="error"><h4>{esc(r["task"])} <span class="muted">attempt '
        f"{r['attempt']} \u00b7 {esc(fmt_time(r['ended_at']))}</span></h4>"
        f"<pre>{esc(r['error'] or 'no error text recorded')}</pre></div>"
        for r in failed
    )
    return "errors", f"Errors ({len(failed):,})", items


# -- page -------------------------------------------------------------------------------------
def render_page(settings: Settings, views: LakeViews, data: RunData) -> str:
    sections = [
        summary_section(settings, data),
        timeline_section(data),
        rowflow_section(data),
        quarantine_section(views, data),
        checks_section(data),
        drift_section(data),
        business_section(views),
        errors_section(data),
    ]
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>'
        for sid, title, content in sections
    )
    status = totals(data).status
    generated = fmt_time(datetime.now(UTC).replace(tzinfo=None))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>medallion run {esc(data.run_id)} \u2014 {esc(status)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>medallion run <code>{esc(data.run_id)}</code> {badge(status).html}</h1>"
        f"<nav>{nav}</nav></header><main>{body}</main>"
        f"<footer>generated {esc(generated)} by medallion</footer></body></html>\n"
    )


CSS = """
:root{--fg:#1f2933;--muted:#66707a;--line:#dde1e6;--bg:#f6f7f9;--card:#fff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#17324d;color:#fff;padding:14px 28px 0;position:sticky;top:0;z-index:2}
header h1{margin:0 0 8px;font-size:20px;font-weight:600}
header code{font-size:18px;background:none;color:#fff}
nav{display:flex;flex-wrap:wrap;gap:2px}
nav a{color:#cfe0f1;text-decoration:none;padding:6px 10px;border-radius:6px 6px 0 0}
nav a:hover{background:#24486b;color:#fff}
main{max-width:1240px;margin:0 auto;padding:8px 28px 28px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:10px 20px 16px;margin:18px 0;scroll-margin-top:90px}
h2{font-size:17px;margin:6px 0 10px;border-bottom:1px solid var(--line);padding-bottom:6px}
h3{font-size:15px;margin:14px 0 6px}
h4{margin:8px 0 4px;font-size:14px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.checks td:last-child{max-width:440px;overflow-wrap:anywhere}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;
background:#f0f2f5;padding:1px 4px;border-radius:3px}
pre{background:#2b2b2b;color:#f3f3f3;padding:10px 12px;border-radius:6px;overflow:auto;
white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:320px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:4px 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;background:#607d8b;vertical-align:middle}
.badge.ok{background:#2e7d32}.badge.bad{background:#c62828}.badge.warn{background:#e0a800;
color:#222}.badge.muted{background:#6b7378}
.counts{color:var(--muted);margin-left:6px}
.note{color:var(--muted);margin:6px 0}
.na{color:#b26a00;font-weight:600}
.muted{color:var(--muted);font-weight:400;font-size:12px}
.card{padding:4px 0 8px}
.card + .card{border-top:1px solid var(--line)}
.plots{display:flex;flex-wrap:wrap;gap:16px}
.plot{flex:1 1 520px;max-width:580px}
.scroll,.tw{overflow-x:auto}
svg.chart{max-width:100%;height:auto;display:block}
svg.chart text{font-family:system-ui,"DejaVu Sans",sans-serif;font-size:11px;fill:#333}
svg.chart text.val{font-size:10px;fill:#1f2933;paint-order:stroke;stroke:#fff;stroke-width:3px;
stroke-linejoin:round}
svg.chart text.axis-title{font-size:11px;fill:var(--muted)}
svg.chart text.layer{font-weight:700;font-size:11px;fill:#5b4a2f;letter-spacing:.06em}
svg.chart text.retry{fill:#b26a00;font-weight:600;font-size:10px}
svg.chart line.grid{stroke:#e6e8eb;stroke-width:1}
svg.chart line.axis{stroke:#8a939c;stroke-width:1}
.legend{display:flex;gap:16px;font-size:12px;color:var(--muted);margin-top:6px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.legend i.dashed{border:1px dashed #333;background:#fff}
details summary{cursor:pointer;color:#24486b;margin:4px 0}
.error{border-left:4px solid #c62828;padding-left:10px;margin:10px 0}
footer{text-align:center;color:var(--muted);font-size:12px;padding:0 0 24px}
"""
