"""The sections of the page, each (id, title, HTML), and the business figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medallion.errors import MedallionError
from medallion.report.charts import Chart, _clip, legend, timeline_svg
from medallion.report.html import Markup, badge, esc, fmt_seconds, fmt_time, html_table, note
from medallion.report.run import LakeViews, RunData, report_name
from medallion.report.style import ACCENT_COLOUR, CHECK_CLASSES, DASH, STATUS_COLOURS, Row, Section
from medallion.runner import NOT_STARTED
from medallion.settings import Settings, redact_url


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


def _stopped(row: Row) -> bool:
    """A task a signal kept from starting (the runner's reason says so)."""
    return str(row.get("error") or "").startswith(NOT_STARTED)


def totals(data: RunData) -> Totals:
    final = list(data.final.values())
    counts = {s: sum(r["status"] == s for r in final) for s in STATUS_COLOURS}
    if counts["ABANDONED"]:  # its process was killed: say so rather than RUNNING forever
        status = "ABANDONED"
    elif any(_stopped(r) for r in final):
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
    stopped = [r for r in data.final.values() if _stopped(r)]
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
