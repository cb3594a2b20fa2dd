"""The Python API; the CLI and the DAG files are thin adapters over these functions."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.alerts import Alerter, AlertListener, alert_run_summary
from medallion.audit import AuditStore
from medallion.catalog import SOURCE_TABLES, source_table
from medallion.checks import check_only_tasks, with_checks
from medallion.engine import default_engine, query_read_only
from medallion.errors import ConfigError, MedallionError, SourceError, StreamError
from medallion.pipeline import build_tasks
from medallion.profiles import (
    Profile,
    Value,
    env_lines,
    get_profile,
    profile_variables,
    resolve,
    write_toml,
)
from medallion.resources import change_memory, generate_memory, require_memory
from medallion.runner import (
    EXPORT_JOB,
    STREAM_JOB,
    RunContext,
    RunListener,
    RunReport,
    Status,
    StopSignals,
    Task,
    TaskOutcome,
    TaskResult,
    new_run_id,
    run_tasks,
)
from medallion.settings import Settings, redact_url
from medallion.silver.contracts import silver_table
from medallion.silver.layer import silver_table_names
from medallion.source.changes import ChangeManifest, ChangeSpec, apply_changes
from medallion.source.db import open_source
from medallion.source.generator import GeneratorConfig, generate, write_to_source
from medallion.source.kaggle_csv import LoadResult, load_csv_dir, write_kaggle_csv
from medallion.storage import Lake

if TYPE_CHECKING:  # the stream modules load only when a stream command runs (confluent_kafka)
    from medallion.export.core import TableExport
    from medallion.stream.consume import ConsumeResult
    from medallion.stream.kafka import Broker
    from medallion.stream.produce import PublishResult

__all__ = [
    "ChangeSpec",
    "audit_log",
    "build_tasks",
    "change_source",
    "check",
    "demo",
    "export",
    "generate_source",
    "init_source",
    "load_csv",
    "pipeline_tasks",
    "quarantine_summary",
    "query",
    "report",
    "run",
    "run_summary",
    "settings_profile",
    "source_stats",
    "sql",
    "start_stream_broker",
    "stream_produce",
    "stream_quarantine_summary",
    "stream_schema",
    "write_settings_profile",
]

log = logging.getLogger(__name__)


def init_source(settings: Settings) -> list[str]:
    """Create the nine source tables (if missing); returns their source names."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return [t.source_name for t in SOURCE_TABLES]


def load_csv(
    settings: Settings, directory: Path, tables: list[str] | None = None
) -> list[LoadResult]:
    """Load (upsert) the Kaggle CSV files found in ``directory`` into the source.

    The nine tables are created first (empty where no file was given), so that a run after
    loading only some files extracts what is there instead of failing on the missing ones.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
        return load_csv_dir(db, directory, loaded_at=_now(), tables=tables)


@dataclass(frozen=True)
class GenerateSummary:
    rows: dict[str, int]
    dirty_rows: int
    csv_dir: Path | None


@dataclass(frozen=True)
class ProfileSettings:
    """A settings profile resolved: its settings, where its variables came from, and the
    ``${NAME}`` placeholders left in it (secrets not asked for, variables not defined)."""

    profile: Profile
    settings: dict[str, Value]
    env_file: Path | None
    placeholders: list[str]

    def env_lines(self) -> list[str]:
        return env_lines(self.settings)


def settings_profile(
    name: str, env_file: Path | None = None, *, show_secrets: bool = False
) -> ProfileSettings:
    """The settings of profile ``name`` (``stack``: the compose stack from this host), with
    the variables of its ``.env`` file (or ``env_file``) and of the environment filled in;
    secrets stay ``${NAME}`` unless ``show_secrets``."""
    profile = get_profile(name)
    variables, read = profile_variables(profile, env_file)
    resolved = resolve(profile, variables, show_secrets=show_secrets)
    left = [v for v in profile.variables() if f"${{{v}}}" in str(resolved)]
    return ProfileSettings(profile, resolved, read, left)


def write_settings_profile(
    settings: Settings, name: str, env_file: Path | None = None
) -> tuple[Path, ProfileSettings]:
    """Write profile ``name``, secrets included, into ``<home>/medallion.toml`` (mode 600),
    keeping the other settings there."""
    resolved = settings_profile(name, env_file, show_secrets=True)
    return write_toml(settings.home, resolved.settings), resolved


def generate_source(
    settings: Settings,
    scale: float,
    seed: int = 42,
    dirty_rate: float = 0.0,
    csv_dir: Path | None = None,
) -> GenerateSummary:
    """Generate Olist-shaped data into the source database (and optionally Kaggle CSVs)."""
    if not 0 < scale < float("inf"):
        raise ConfigError(f"scale must be a number > 0, got {scale}")
    require_memory(f"scale {scale:g}", generate_memory(scale))
    data = generate(GeneratorConfig(scale=scale, seed=seed, dirty_rate=dirty_rate))
    if csv_dir is not None:
        csv_dir.mkdir(parents=True, exist_ok=True)
        for name, table in data.tables.items():
            write_kaggle_csv(table, source_table(name), csv_dir)
        return GenerateSummary(
            {k: v.num_rows for k, v in data.tables.items()}, data.dirty.num_rows, csv_dir
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        rows = write_to_source(db, data)
    return GenerateSummary(rows, data.dirty.num_rows, None)


def change_source(settings: Settings, spec: ChangeSpec) -> tuple[ChangeManifest, Path]:
    """Apply one change batch and write its manifest under ``home/changes``."""
    require_memory(f"a change batch of {spec.rows:,} rows", change_memory(spec.rows))
    with open_source(settings.source_location) as db:
        db.require_tables(SOURCE_TABLES)
        manifest = apply_changes(db, spec)
    stamp = manifest.batch_time.strftime("%Y%m%dT%H%M%S")
    path = settings.home / "changes" / f"change-{stamp}-seed{spec.seed}.json"
    manifest.write(path)
    return manifest, path


def source_stats(settings: Settings) -> list[dict[str, Any]]:
    with open_source(settings.source_location) as db:
        db.require_tables(SOURCE_TABLES)
        return db.stats(SOURCE_TABLES)


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
    with AuditStore(settings.audit_location) as audit:  # unreachable: fail before any task
        abandoned = audit.abandon_dead_attempts()
        if abandoned:
            log.warning("%d task attempt(s) of killed runs marked ABANDONED", abandoned)
        report = run_tasks(tasks, ctx, [audit, AlertListener(alerter), *(listeners or [])])
        results = audit.dq_results(ctx.run_id)
    failed = [r["check_name"] for r in results if r["status"] == "fail"]
    warned = [r["check_name"] for r in results if r["status"] == "warn"]
    page = _write_report(settings, ctx.run_id) if settings.report_on_run else None
    alert_run_summary(alerter, ctx, report, failed, warned, report_url=page)
    destination = export_to or settings.export_to
    if destination and report.ok and not report.stopped_by:
        export(settings, destination, run_id=ctx.run_id)
    return report


@dataclass
class ExportReport:
    destination: str
    run_id: str
    tables: list[TableExport]
    seconds: float

    @property
    def exported(self) -> list[TableExport]:
        return [t for t in self.tables if t.status == "exported"]


def export(
    settings: Settings,
    to: str | None = None,
    tables: list[str] | None = None,
    *,
    full: bool = False,
    run_id: str | None = None,
) -> ExportReport:
    """Export the Gold tables whose Delta version moved since the last export to ``to``
    (default: the ``export_to`` setting); ``full`` re-exports every table. Each exported
    table is one audit row (job ``medallion_export``: rows, bytes, seconds)."""
    from medallion.export.core import export_table, gold_table_names
    from medallion.export.destinations import destination

    url = to or settings.export_to
    if not url:
        raise ConfigError("no export destination: pass --to URL or set export_to")
    names = gold_table_names(tables)
    lake = Lake.from_settings(settings)
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, job=EXPORT_JOB)
    start = time.perf_counter()
    results: list[TableExport] = []
    with (
        destination(url, settings, lake.uri) as dest,
        AuditStore(settings.audit_location) as audit,
    ):
        for name in names:
            task = Task(f"export.{name}", "export", name, lambda _ctx: TaskResult())
            audit.task_started(ctx, task, 1)
            began = time.time()
            try:
                done = export_table(dest, lake, name, full=full)
            except MedallionError as exc:
                audit.task_finished(
                    ctx, TaskOutcome(task, Status.FAILED, 1, str(exc), None, began, time.time())
                )
                raise
            metrics = {
                "destination": dest.label,
                "status": done.status,
                "bytes": done.bytes,
                "seconds": round(done.seconds, 3),
            }
            result = TaskResult(rows_written=done.rows, metrics=metrics, delta_version=done.version)
            audit.task_finished(
                ctx, TaskOutcome(task, Status.SUCCESS, 1, None, result, began, time.time())
            )
            results.append(done)
        label = dest.label
    return ExportReport(label, ctx.run_id, results, time.perf_counter() - start)


def _write_report(settings: Settings, run_id: str) -> str | None:
    """The run's HTML report; a report that cannot be written never fails the run."""
    try:
        return str(report(settings, run_id))
    except (MedallionError, OSError) as exc:
        log.warning("could not write the report of run %s: %s", run_id, exc)
        return None


def check(
    settings: Settings, listeners: list[RunListener] | None = None
) -> tuple[RunReport, list[dict[str, Any]]]:
    """Run every data-quality check alone; returns the run and its results."""
    lake = Lake.from_settings(settings)
    if all(lake.version("bronze", t.name) is None for t in SOURCE_TABLES):
        raise ConfigError(
            f"nothing to check: the lake at {settings.lake_location} holds no table; "
            "run `medallion run` first, or check --home"
        )
    ctx = RunContext(run_id=new_run_id(), settings=settings, job="medallion_check")
    with AuditStore(settings.audit_location) as audit:
        audit.abandon_dead_attempts()
        report = run_tasks(check_only_tasks(settings), ctx, [audit, *(listeners or [])])
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


def quarantine_summary(settings: Settings, tables: list[str] | None = None) -> list[dict[str, Any]]:
    """Quarantined rows per table and rule, with one example reason."""
    lake = Lake.from_settings(settings)
    names = (
        [silver_table(source_table(t).name).name for t in tables]
        if tables
        else silver_table_names()
    )
    out: list[dict[str, Any]] = []
    for name in names:
        rows = lake.read("quarantine", name, ["_rule", "_reason"])
        if rows is None or rows.num_rows == 0:
            continue
        summary = default_engine().query(
            "SELECT _rule AS rule, count(*) AS rows, min(_reason) AS reason FROM q "
            "GROUP BY _rule ORDER BY rows DESC, rule",
            {"q": rows},
        )
        out += [{"table": name, **row} for row in summary.to_pylist()]
    return out


def stream_quarantine_summary(settings: Settings) -> list[dict[str, Any]]:
    """Quarantined review events per consume run and reason, and how many of them Silver has
    merged since (held for an order that arrived later)."""
    lake = Lake.from_settings(settings)
    columns = ["topic", "partition", "offset", "reason", "_quarantine_run_id"]
    held = lake.read("quarantine", "review_events", columns)
    if held is None or held.num_rows == 0:
        return []
    merged = lake.read("silver", "review_events", ["_topic", "_partition", "_offset"])
    if merged is None:
        merged = pa.table({"_topic": pa.array([], pa.string()),
                           "_partition": pa.array([], pa.int32()),
                           "_offset": pa.array([], pa.int64())})  # fmt: skip
    summary = default_engine().query(
        'SELECT q._quarantine_run_id AS run_id, q.reason, count(*) AS "rows", '
        "count(s._offset) AS released FROM q LEFT JOIN (SELECT DISTINCT * FROM s) s "
        'ON s._topic = q.topic AND s._partition = q."partition" AND s._offset = q."offset" '
        "GROUP BY ALL ORDER BY run_id, reason",
        {"q": held, "s": merged},
    )
    return list(summary.to_pylist())


def lake_tables() -> dict[str, str]:
    """Every table `medallion sql` can see: name -> layer (Gold and Silver)."""
    from medallion.gold.model import GOLD_TABLES

    tables = {t.name: "gold" for t in GOLD_TABLES}
    tables |= dict.fromkeys([*silver_table_names(), "review_events"], "silver")
    return tables


SQL_LIMITS = (
    "read-only: one SELECT at a time over the Gold and Silver tables; no files, no network, "
    "no DDL, DML, COPY, ATTACH, SET or extensions"
)


def sql(settings: Settings, query: str) -> pa.Table:
    """Run one read-only DuckDB SELECT over the Gold and Silver tables the query names."""
    lake = Lake.from_settings(settings)
    wanted = {
        name: layer
        for name, layer in lake_tables().items()
        if re.search(rf"\b{re.escape(name)}\b", query, re.IGNORECASE)
    }
    tables = {}
    for name, layer in wanted.items():
        data = lake.read(layer, name)
        if data is not None:
            tables[name] = data
    return query_read_only(query, tables)


def query(settings: Settings, name: str) -> pa.Table:
    """Run one of the named business questions (``medallion query --list``)."""
    from medallion.gold.queries import named_query

    return sql(settings, named_query(name).sql)


def report(settings: Settings, run_id: str | None = None) -> Path:
    """Write the HTML report of a run (default: the latest) and ``latest.html``; its path."""
    from medallion.report import LakeViews, build_report

    views = LakeViews(
        lambda: quarantine_summary(settings),
        lambda name: query(settings, name),
        lambda: stream_quarantine_summary(settings),
    )
    return build_report(settings, views, run_id)


# -- the review stream -------------------------------------------------------------------------
def stream_produce(
    settings: Settings,
    *,
    count: int = 10_000,
    seed: int = 42,
    dirty_rate: float = 0.0,
    replay: bool = False,
    rate: float | None = None,
    duration: float | None = None,
) -> PublishResult:
    """Publish review events to the topic: ``count`` synthetic reviews of the source's live
    orders (``dirty_rate`` of them defects), or with ``replay`` the source's live reviews.

    Synthetic events start after the latest purchase in the source, so the same seed on the
    same source gives the same events (a consumer drops a re-sent event by its id); another
    seed gives new ones.
    """
    from medallion.stream.produce import publish, replay_events, synthetic_events

    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    where = redact_url(settings.source_location)
    name = "order_reviews" if replay else "orders"
    with open_source(settings.source_location) as db:
        db.require_tables([source_table(name)])
        if replay:
            rows = db.read_table(source_table(name))
        else:
            columns = ["order_id", "order_purchase_timestamp", "deleted_at"]
            rows = db.read_table(source_table(name), columns)
    rows = rows.filter(pc.is_null(rows["deleted_at"]))
    if rows.num_rows == 0:
        raise SourceError(
            f"the source at {where} has no {'reviews to replay' if replay else 'orders to review'}"
            "; run `medallion source generate` (or load-csv) first"
        )
    if replay:
        messages = replay_events(rows, seed=seed)
    else:
        latest = pc.max(rows["order_purchase_timestamp"]).as_py()
        messages = synthetic_events(
            rows, count=count, seed=seed, dirty_rate=dirty_rate, start=latest or _now()
        )
    return publish(settings, messages, rate=rate, duration=duration)


def stream_schema() -> dict[str, Any]:
    """The review event contract as a JSON schema."""
    from medallion.stream.contract import json_schema

    return json_schema()


def start_stream_broker(port: int = 9092, storage: str = "memory://tansu/") -> Broker:
    """Start the bundled Kafka-protocol broker on 127.0.0.1:``port``; the caller stops it."""
    import socket

    from medallion.stream.kafka import start_broker

    if not 0 < port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, got {port}")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise StreamError(
                f"port {port} on 127.0.0.1 is in use (another broker?); choose one with --port"
            ) from None
    return start_broker(port, storage)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def stream_consume(
    settings: Settings,
    *,
    max_messages: int | None = None,
    max_batches: int | None = None,
    idle_timeout_s: float | None = None,
    run_id: str | None = None,
) -> ConsumeResult:
    """Consume review events into the lake until a limit, or SIGINT/SIGTERM (the current
    micro-batch is committed first). Each micro-batch is a row of the audit log, under
    ``run_id`` (a scheduler's) or a new one."""
    from medallion.stream.consume import Consumer, Limits

    Lake.from_settings(settings).probe()  # unreachable: fail before joining the group
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, job=STREAM_JOB)
    limits = Limits(max_messages, max_batches, idle_timeout_s)
    with AuditStore(settings.audit_location) as audit, StopSignals() as signals:
        audit.abandon_dead_attempts()
        result = Consumer(settings, ctx, audit).run(limits, signals.stopped)
    if signals.by:
        result.stopped_by = signals.by
    return result
