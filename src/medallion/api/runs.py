"""Runs of the pipeline: the task graph, a run, the checks alone, the demo."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medallion.alerts import Alerter, AlertListener, alert_run_summary
from medallion.api.exports import export
from medallion.api.inspect import quarantine_summary, report
from medallion.audit import AuditStore
from medallion.catalog import SOURCE_TABLES
from medallion.checks import check_only_tasks, with_checks
from medallion.engine import reach_engine
from medallion.errors import ConfigError, MedallionError
from medallion.pipeline import build_tasks
from medallion.runner import RunContext, RunListener, RunReport, Task, new_run_id, run_tasks
from medallion.settings import Settings
from medallion.storage import Lake

if TYPE_CHECKING:
    from medallion.stream.consume import ConsumeResult

__all__ = ["DemoResult", "build_tasks", "check", "demo", "pipeline_tasks", "run", "run_summary"]

log = logging.getLogger(__name__)


def pipeline_tasks(
    settings: Settings, layers: list[str] | None = None, tables: list[str] | None = None
) -> list[Task]:
    """The task graph of a run: the layer tasks and, when ``settings.checks``, a check task
    after each table that has checks (what ``medallion run`` and the Airflow DAG run)."""
    tasks = build_tasks(layers, tables)
    if not tasks:
        raise ConfigError("nothing to run: no task matches the chosen layers and tables")
    return with_checks(tasks, settings) if settings.checks else tasks


def run(
    settings: Settings,
    layers: list[str] | None = None,
    tables: list[str] | None = None,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    listeners: list[RunListener] | None = None,
    export_to: str | None = None,
) -> RunReport:
    """Run the chosen layers' tasks for the chosen tables, in dependency order; then, when
    the run succeeded and ``export_to`` (or the setting) names a warehouse, export Gold to it
    (an export failure raises :class:`ExportError` after the run is recorded)."""
    tasks = pipeline_tasks(settings, layers, tables)
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, full_refresh=full_refresh)
    alerter = Alerter.from_settings(settings)
    Lake.from_settings(settings).probe()  # unreachable: fail before any task
    if settings.engine != "duckdb":
        reach_engine(settings)  # likewise
    with AuditStore(settings.audit_location) as audit:  # unreachable: fail before any task
        abandoned = audit.abandon_dead_attempts()
        if abandoned:
            log.warning("%d task attempt(s) of killed runs marked ABANDONED", abandoned)
        hooks: list[RunListener] = [audit, AlertListener(alerter), *(listeners or [])]
        report = run_tasks(tasks, ctx, hooks, expected=audit.last_durations())
        results = audit.dq_results(ctx.run_id)
    failed = [r["check_name"] for r in results if r["status"] == "fail"]
    warned = [r["check_name"] for r in results if r["status"] == "warn"]
    page = _write_report(settings, ctx.run_id) if settings.report_on_run else None
    alert_run_summary(alerter, ctx, report, failed, warned, report_url=page)
    destination = export_to or settings.export_to
    if destination and report.ok and not report.stopped_by:
        export(settings, destination, run_id=ctx.run_id)
    return report


def _write_report(settings: Settings, run_id: str) -> str | None:
    """The run's HTML report; a report that cannot be written never fails the run."""
    try:
        return str(report(settings, run_id))
    except (MedallionError, OSError) as exc:
        log.warning("could not write the report of run %s: %s", run_id, exc)
        return None


def check(
    settings: Settings, listeners: list[RunListener] | None = None, *, full: bool = False
) -> tuple[RunReport, list[dict[str, Any]]]:
    """Run every data-quality check alone; returns the run and its results. Each check
    builds on its recorded state (what moved since); ``full`` evaluates every check on every
    row and records the state afresh."""
    lake = Lake.from_settings(settings)
    if all(lake.version("bronze", t.name) is None for t in SOURCE_TABLES):
        raise ConfigError(
            f"nothing to check: the lake at {settings.lake_location} holds no table; "
            "run `medallion run` first, or check --home"
        )
    ctx = RunContext(
        run_id=new_run_id(), settings=settings, job="medallion_check", full_checks=full
    )
    with AuditStore(settings.audit_location) as audit:
        audit.abandon_dead_attempts()
        tasks, hooks = check_only_tasks(settings), [audit, *(listeners or [])]
        report = run_tasks(tasks, ctx, hooks, expected=audit.last_durations())
        return report, audit.dq_results(ctx.run_id)


def audit_log(
    settings: Settings, last: int | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Audit rows (one per task attempt), oldest first."""
    with AuditStore(settings.audit_location) as audit:
        return audit.run_logs(last=last, run_id=run_id)


@dataclass
class DemoResult:
    home: Path
    source_rows: dict[str, int]
    full: RunReport
    change_manifest: Path | None
    incremental: RunReport | None
    seconds: dict[str, float]
    stream: ConsumeResult | None = None


def demo(
    settings: Settings,
    scale: float = 1.0,
    olist_dir: Path | None = None,
    *,
    seed: int = 42,
    listeners: list[RunListener] | None = None,
    stream: bool = False,
) -> DemoResult:
    """Everything end to end on the settings' stores: data, full run, change batch, rerun;
    with ``stream``, review events through the bundled broker too (before the rerun, so Gold
    unifies them with the batch reviews)."""
    # the generator and the change batches: only the demo needs them (60 ms of every start)
    from medallion.api.source import (
        ChangeSpec,
        change_source,
        generate_source,
        init_source,
        load_csv,
    )

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    init_source(settings)
    if olist_dir is not None:
        rows = {r.table: r.rows_in_file for r in load_csv(settings, olist_dir)}
    else:
        rows = generate_source(settings, scale, seed).rows
    seconds["source"] = time.perf_counter() - clock
    clock = time.perf_counter()
    full = run(settings, listeners=listeners)
    seconds["full_run"] = time.perf_counter() - clock
    if not full.ok or not rows.get("orders"):
        return DemoResult(settings.home, rows, full, None, None, seconds)
    n = max(1, rows["orders"] // 100)
    spec = ChangeSpec(
        seed=seed,
        new_orders=n,
        status_updates=n,
        customer_moves=max(1, n // 10),
        product_updates=max(1, n // 20),
        seller_moves=max(1, n // 50),
        soft_deletes=max(1, n // 50),
        hard_deletes=max(1, n // 50),
        late_updates=max(1, n // 50),
    )
    _, manifest_path = change_source(settings, spec)
    streamed = None
    if stream:
        clock = time.perf_counter()
        streamed = _demo_stream(settings, events=max(100, rows["orders"] // 10), seed=seed)
        seconds["stream"] = time.perf_counter() - clock
    clock = time.perf_counter()
    incremental = run(settings, listeners=listeners)
    seconds["incremental_run"] = time.perf_counter() - clock
    return DemoResult(settings.home, rows, full, manifest_path, incremental, seconds, streamed)


def _demo_stream(settings: Settings, events: int, seed: int) -> ConsumeResult:
    """Publish ``events`` reviews (2 % defects) to a bundled broker on a free port and
    consume them into the lake; the broker stops afterwards."""
    from medallion.api.stream import stream_consume, stream_produce
    from medallion.stream.kafka import running_broker

    with running_broker() as broker:
        on_broker = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
        stream_produce(on_broker, count=events, seed=seed, dirty_rate=0.02)
        return stream_consume(on_broker, idle_timeout_s=2)


def run_summary(settings: Settings, report: RunReport) -> dict[str, Any]:
    """Rows written and task time per layer, check outcomes, quarantine and report path."""
    with AuditStore(settings.audit_location) as audit:
        checks = audit.dq_results(report.run_id)
    layers: dict[str, dict[str, float]] = {}
    for o in report.outcomes:
        layer = layers.setdefault(
            o.task.layer, {"tasks": 0, "rows_written": 0, "task_seconds": 0.0}
        )
        layer["tasks"] += 1
        layer["rows_written"] += o.result.rows_written if o.result else 0
        layer["task_seconds"] += o.seconds
    statuses = [c["status"] for c in checks]
    page = settings.reports_dir / f"{report.run_id}.html"
    return {
        "layers": layers,
        "checks": {k: statuses.count(k) for k in ("pass", "warn", "fail")},
        "quarantined": sum(r["rows"] for r in quarantine_summary(settings)),
        "report": str(page) if page.exists() else None,
    }
