"""The sections of the page as plain data (``model.Section``), one view per section."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from medallion.errors import MedallionError
from medallion.report.charts import timeline_svg
from medallion.report.formats import clip, fmt_seconds, fmt_time
from medallion.report.model import Badge, Code, Section, Table, badge, table
from medallion.report.run import LakeViews, RunData, report_name, task_metrics
from medallion.report.style import CHECK_CLASSES, DASH, STATUS_COLOURS, Row
from medallion.runner import NOT_STARTED
from medallion.settings import Settings, redact_url


# -- summary ----------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Fact:
    label: str
    text: str
    href: str | None = None  # the text links here


@dataclass(frozen=True)
class Summary:
    status: Badge
    counts: str  # "3 succeeded, 0 failed, ..."
    facts: tuple[Fact, ...]


def summary_section(settings: Settings, data: RunData) -> Section:
    t = totals(data)
    first = data.attempts[0] if data.attempts else {}
    if data.previous is None:
        previous = Fact("previous run", "none (first run)")
    elif (settings.reports_dir / report_name(data.previous)).exists():
        previous = Fact("previous run", data.previous, href=report_name(data.previous))
    else:
        previous = Fact("previous run", f"{data.previous} (no report kept)")
    verbs = {"SUCCESS": "succeeded", "FAILED": "failed", "SKIPPED": "skipped"}
    counts = ", ".join(f"{t.counts[s]:,} {verb}" for s, verb in verbs.items())
    if t.counts["RUNNING"]:
        counts += f", {t.counts['RUNNING']:,} running"
    if t.retried:
        counts += f", {t.retried} retried"
    facts = (
        Fact("job", str(first.get("job", DASH))),
        *_airflow_run(settings, data),
        Fact("started", fmt_time(t.started)),
        Fact("ended", fmt_time(t.ended)),
        Fact("wall time", fmt_seconds(t.seconds)),
        previous,
        Fact("source", redact_url(settings.source_location)),
        Fact("lake", redact_url(settings.lake_location)),
    )
    return Section("summary", "Summary", Summary(badge(t.status), counts, facts))


def _airflow_run(settings: Settings, data: RunData) -> tuple[Fact, ...]:
    """The Airflow DAG run that ran this run (from the audit rows' origin), linked to the
    Airflow UI when ``airflow_base_url`` is set; nothing for a `medallion run`."""
    for row in data.attempts:
        try:
            origin = json.loads(row.get("metrics") or "{}").get("origin") or {}
        except (ValueError, AttributeError):
            continue
        dag_id, run_id = origin.get("airflow_dag_id"), origin.get("airflow_run_id")
        if dag_id and run_id:
            return (Fact("Airflow run", f"{dag_id} / {run_id}", airflow_run_url(settings, origin)),)
    return ()


def airflow_run_url(settings: Settings, origin: dict[str, str]) -> str | None:
    """``<airflow_base_url>/dags/<dag_id>/runs/<run_id>``, or None without a base URL."""
    base = settings.airflow_base_url.rstrip("/")
    if not base:
        return None
    dag_id, run_id = (quote(origin[k], safe="") for k in ("airflow_dag_id", "airflow_run_id"))
    return f"{base}/dags/{dag_id}/runs/{run_id}"


# -- timeline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timeline:
    chart: Markup | None  # None: no task ran
    legend: tuple[tuple[str, str], ...]  # (status, colour)


def timeline_section(data: RunData) -> Section:
    chart = timeline_svg(data.attempts) if data.attempts else None
    legend = tuple((status.lower(), colour) for status, colour in STATUS_COLOURS.items())
    return Section("timeline", "Run timeline", Timeline(chart, legend))


# -- row flow ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowFlow:
    flow: Table | None  # Bronze -> Silver, per source table
    gold: Table | None


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
    for name in sources:
        bronze, silver = by_layer.get(("bronze", name)), by_layer.get(("silver", name))
        b_read, b_written, _ = _rows_of(bronze)
        s_read, s_written, s_quarantined = _rows_of(silver)
        statuses = [r["status"] for r in (bronze, silver) if r is not None]
        worst = next((s for s in ("FAILED", "SKIPPED", "RUNNING") if s in statuses), "SUCCESS")
        flow.append((name, b_read, b_written, s_read, s_written, s_quarantined, badge(worst)))
    flow_columns = ("table", "bronze read", "bronze written", "silver read", "silver written",
                    "silver quarantined", "status")  # fmt: skip
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
    gold_columns = ("table", "rows read", "rows written", "unknown members",
                    "inputs (version read)", "status")  # fmt: skip
    view = RowFlow(
        table(flow_columns, flow) if flow else None,
        table(gold_columns, gold) if gold else None,
    )
    return Section("rows", "Row flow", view)


def _unknown_members(row: Row) -> str:
    """Fact rows that point at an unknown dimension member, per key (from the task metrics)."""
    counts = task_metrics(row).get("unknown_members")
    if not isinstance(counts, dict) or not counts:
        return DASH
    return ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items()) if isinstance(n, int))


def _inputs(row: Row) -> str:
    """The upstream tables (and their Delta versions) a Gold task recorded in its metrics."""
    inputs = task_metrics(row).get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        return DASH
    return ", ".join(
        f"{name} v{version}" if isinstance(version, int) and version >= 0 else f"{name} (none)"
        for name, version in sorted(inputs.items())
    )


# -- quarantine -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quarantine:
    this_run: str  # rows this run quarantined, formatted
    error: str | None  # why the quarantine could not be read
    table: Table | None  # None: the quarantine is empty


def quarantine_section(views: LakeViews, data: RunData) -> Section:
    this_run = f"{sum(r['rows_quarantined'] or 0 for r in data.final.values()):,}"
    try:
        rows = views.quarantine()
    except MedallionError as exc:
        view = Quarantine(this_run, redact_url(str(exc)), None)
        return Section("quarantine", "Quarantine", view)
    cells = [(r["table"], r["rule"], r["rows"], r["reason"]) for r in rows]
    columns = ("table", "rule", "rows", "example reason")
    view = Quarantine(this_run, None, table(columns, cells) if cells else None)
    return Section("quarantine", "Quarantine", view)


# -- checks and drift -------------------------------------------------------------------------
STATUS_ORDER = {"fail": 0, "warn": 1, "pass": 2}


@dataclass(frozen=True)
class Checks:
    """No results recorded: an empty ``tally``."""

    tally: tuple[Badge, ...]  # one badge per check status: "3 pass"
    problems: Table | None  # failed and warned checks; None: every check passed
    passed: Table | None  # folded away; None: none passed
    passed_count: str


@dataclass(frozen=True)
class Drift:
    tally: tuple[Badge, ...]  # empty: no drift results recorded
    table: Table | None


def check_tally(checks: Sequence[Row]) -> tuple[Badge, ...]:
    counts = {s: sum(str(c["status"]).lower() == s for c in checks) for s in CHECK_CLASSES}
    return tuple(Badge(f"{n:,} {s}", CHECK_CLASSES[s]) for s, n in counts.items())


def checks_table(checks: Sequence[Row]) -> Table:
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
    return table(columns, cells, "checks")


def _check_name(check: Row) -> str:
    """The check's name without the ``layer.table.`` prefix the table columns already show."""
    prefix = f"{check['layer']}.{check['table_name']}."
    name = str(check["check_name"])
    return name.removeprefix(prefix) or name


def _code(value: Any) -> Code | None:
    return Code(clip(str(value), 240)) if value else None


def is_drift(check: Row) -> bool:
    return "drift" in str(check["check_name"]).lower()


def checks_section(data: RunData) -> Section:
    """Failed and warned checks in full; the passed ones folded away."""
    checks = [c for c in data.checks if not is_drift(c)]
    problems = [c for c in checks if str(c["status"]).lower() != "pass"]
    passed = [c for c in checks if str(c["status"]).lower() == "pass"]
    view = Checks(
        check_tally(checks) if checks else (),
        checks_table(problems) if problems else None,
        checks_table(passed) if passed else None,
        f"{len(passed):,}",
    )
    return Section("checks", "Data-quality checks", view)


def drift_section(data: RunData) -> Section:
    drift = [c for c in data.checks if is_drift(c)]
    view = Drift(check_tally(drift), checks_table(drift)) if drift else Drift((), None)
    return Section("drift", "Drift", view)


# -- errors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    task: str
    attempt: int
    ended: str
    error: str


def errors_section(data: RunData) -> Section:
    """Failed and abandoned attempts, and why tasks never started when a signal stopped the
    run (one line for them all)."""
    failed = [r for r in data.attempts if r["status"] in ("FAILED", "ABANDONED")]
    stopped = [r for r in data.final.values() if _stopped(r)]
    if stopped:
        failed.append({**stopped[0], "task": f"{len(stopped):,} task(s)", "attempt": 0})
    items = tuple(
        Failure(
            str(r["task"]),
            r["attempt"],
            fmt_time(r["ended_at"]),
            str(r["error"] or "no error text recorded"),
        )
        for r in failed
    )
    return Section("errors", f"Errors ({len(failed):,})" if failed else "Errors", items)
