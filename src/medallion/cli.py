"""The `medallion` command line: parses flags, calls :mod:`medallion.api`, formats results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import typer

from medallion import __version__, api
from medallion.console import (
    ProgressListener,
    configure_logging,
    err_console,
    error_line,
    out_console,
    rows_table,
    run_table,
)
from medallion.errors import MedallionError
from medallion.runner import RunReport, Status
from medallion.settings import Settings, load_settings

app = typer.Typer(
    name="medallion",
    help="Olist e-commerce lakehouse: source -> Bronze -> Silver -> Gold on Delta Lake.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
source_app = typer.Typer(
    help="Create, load, generate and change the source database.", no_args_is_help=True
)
config_app = typer.Typer(
    help="Show the resolved settings, or a profile of settings for a deployment.",
    no_args_is_help=True,
)
stream_app = typer.Typer(
    help="Review events on Kafka: a local broker, the producer, the event schema, and the "
    "exactly-once consumer into the lake (the kafka extra).",
    no_args_is_help=True,
)
app.add_typer(source_app, name="source")
app.add_typer(config_app, name="config")
airflow_app = typer.Typer(
    help="A local Airflow running the DAGs of dags/ (the airflow extra).", no_args_is_help=True
)
app.add_typer(stream_app, name="stream")
app.add_typer(airflow_app, name="airflow")

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Folder of the embedded defaults [env MEDALLION_HOME].", show_default=False
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source-url", help="SQLite path or postgresql:// URL [env MEDALLION_SOURCE_URL]."
    ),
]
_STATE: dict[str, bool] = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn a MedallionError into one red line and exit code 1 (traceback with --debug)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MedallionError as exc:
            if _STATE["debug"]:
                raise
            error_line(str(exc))
            raise typer.Exit(1) from None
        except OSError as exc:  # a folder that cannot be created or written, a full disk
            if _STATE["debug"]:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            error_line(f"{exc.strerror or exc}{where}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings_for(home: Path | None, **flags: Any) -> Settings:
    return load_settings(home=home, **flags)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Olist e-commerce lakehouse: source -> Bronze -> Silver -> Gold on Delta Lake."""
    if version:
        out_console.print(__version__)
        raise typer.Exit(0)
    _STATE["debug"] = debug
    configure_logging(debug)


@config_app.command("show")
@cli_errors
def config_show(home: HomeOpt = None) -> None:
    """Print the resolved settings as JSON, secrets redacted."""
    out_console.print_json(json.dumps(settings_for(home).redacted()))


@config_app.command("profile")
@cli_errors
def config_profile(
    name: Annotated[str, typer.Argument(help="The profile: stack (deploy/compose.yaml).")],
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Print the secrets instead of ${NAME}.")
    ] = False,
    write: Annotated[
        bool,
        typer.Option(
            "--write", help="Write the settings, secrets included, into <home>/medallion.toml."
        ),
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="The stack's variables (default deploy/.env; the environment overrides it).",
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Print the MEDALLION_* lines that point every part at a deployment (or --write them).

    stack: the Docker Compose stack of deploy/compose.yaml from this host (PostgreSQL source
    and audit store, the lake on MinIO, Kafka). A value ${NAME} is NAME in deploy/.env, as
    compose reads it; secrets stay ${NAME} unless --show-secrets. Use the lines with
    `set -a; eval "$(medallion config profile stack --show-secrets)"; set +a`.
    """
    if write:
        path, written = api.write_settings_profile(settings_for(home), name, env_file)
        out_console.print(
            f"wrote {', '.join(written.settings)} to {path} (mode 600, secrets from "
            f"{written.env_file or 'the environment'}; other settings kept, comments not)",
            highlight=False,
            markup=False,
        )
        shadowed = [f"MEDALLION_{n.upper()}" for n in written.settings]
        shadowed = [n for n in shadowed if n in os.environ]
        if shadowed:
            err_console.print(
                f"warning: the environment overrides medallion.toml: unset {' '.join(shadowed)}",
                style="yellow",
                highlight=False,
                markup=False,
            )
        return
    result = api.settings_profile(name, env_file, show_secrets=show_secrets)
    typer.echo(f"# medallion settings for {result.profile.summary}")
    if result.placeholders:
        source = result.env_file or f"{result.profile.env_file} (not found)"
        typer.echo(
            f"# ${{NAME}} is NAME in {source}: {', '.join(result.placeholders)}; "
            "--show-secrets fills them in, --write saves them to medallion.toml"
        )
    for line in result.env_lines():
        typer.echo(line)


@source_app.command("init")
@cli_errors
def source_init(home: HomeOpt = None, source_url: SourceOpt = None) -> None:
    """Create the nine Olist tables (with updated_at, deleted_at, keys, indexes)."""
    names = api.init_source(settings_for(home, source_url=source_url))
    out_console.print(f"source ready: {len(names)} tables")


@source_app.command("load-csv")
@cli_errors
def source_load_csv(
    directory: Annotated[
        Path, typer.Argument(help="Folder with the Kaggle CSV files (.csv or .csv.gz).")
    ],
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Load only this table (repeatable).")
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Load the Kaggle Olist CSV files as published (a reload does not duplicate rows)."""
    results = api.load_csv(settings_for(home, source_url=source_url), directory, table)
    out_console.print(rows_table("loaded", [asdict(r) for r in results]))


@source_app.command("generate")
@cli_errors
def source_generate(
    scale: Annotated[float, typer.Option(help="Scale factor: 1 = the Kaggle size.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 42,
    dirty_rate: Annotated[float, typer.Option(help="Share of dirty rows to mix in (0-0.5).")] = 0.0,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write Kaggle-format CSVs here instead.")
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Generate Olist-shaped data into the source database (or Kaggle CSV files)."""
    summary = api.generate_source(
        settings_for(home, source_url=source_url), scale, seed, dirty_rate, csv
    )
    rows = [{"table": k, "rows": v} for k, v in summary.rows.items()]
    out_console.print(rows_table(f"generated (dirty rows: {summary.dirty_rows})", rows))


@source_app.command("change")
@cli_errors
def source_change(
    seed: Annotated[int, typer.Option(help="Random seed of the batch.")] = 1,
    new_orders: Annotated[int, typer.Option(help="New orders with items and payments.")] = 0,
    status_updates: Annotated[
        int, typer.Option(help="Orders moving approved -> shipped -> delivered.")
    ] = 0,
    customer_moves: Annotated[int, typer.Option(help="Customers moving to a new address.")] = 0,
    product_updates: Annotated[
        int, typer.Option(help="Products re-categorised or re-measured.")
    ] = 0,
    seller_moves: Annotated[int, typer.Option(help="Sellers relocating.")] = 0,
    soft_deletes: Annotated[int, typer.Option(help="Orders soft-deleted (deleted_at set).")] = 0,
    hard_deletes: Annotated[int, typer.Option(help="Orders hard-deleted with their children.")] = 0,
    late_updates: Annotated[
        int, typer.Option(help="Updates committed with an old updated_at.")
    ] = 0,
    dirty: Annotated[int, typer.Option(help="Dirty rows inserted.")] = 0,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Apply one batch of realistic changes and write its JSON manifest under --home."""
    spec = api.ChangeSpec(
        seed=seed,
        new_orders=new_orders,
        status_updates=status_updates,
        customer_moves=customer_moves,
        product_updates=product_updates,
        seller_moves=seller_moves,
        soft_deletes=soft_deletes,
        hard_deletes=hard_deletes,
        late_updates=late_updates,
        dirty=dirty,
    )
    manifest, path = api.change_source(settings_for(home, source_url=source_url), spec)
    out_console.print(
        rows_table("changes", [{"change": k, "rows": v} for k, v in manifest.counts.items()])
    )
    out_console.print(f"manifest: {path}")


@source_app.command("stats")
@cli_errors
def source_stats(home: HomeOpt = None, source_url: SourceOpt = None) -> None:
    """Row counts and the newest updated_at per source table."""
    out_console.print(
        rows_table("source", api.source_stats(settings_for(home, source_url=source_url)))
    )


@app.command("run")
@cli_errors
def run_command(
    layer: Annotated[
        list[str] | None, typer.Option("--layer", help="Run only this layer (repeatable).")
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Run only this table (repeatable).")
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Re-extract and rebuild everything.")
    ] = False,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Use this run id (e.g. from a scheduler).")
    ] = None,
    parallelism: Annotated[int | None, typer.Option(help="Tasks run at once.")] = None,
    export: Annotated[
        str | None,
        typer.Option(
            "--export", help="After Gold, export it to this warehouse URL.", metavar="URL"
        ),
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Run the pipeline's tasks (Bronze, then later layers) in dependency order; SIGTERM or
    SIGINT lets running tasks finish and exits 130."""
    settings = settings_for(home, source_url=source_url, parallelism=parallelism)
    tasks = api.build_tasks(layer, table)
    with ProgressListener(tasks) as progress:
        report = api.run(
            settings,
            layer,
            table,
            full_refresh=full_refresh,
            run_id=run_id,
            listeners=[progress],
            export_to=export,
        )
    out_console.print(run_table(report))
    if report.stopped_by:
        done = sum(o.status is not Status.SKIPPED for o in report.outcomes)
        error_line(
            f"stopped by {report.stopped_by}: {done} task(s) finished, "
            f"{len(report.outcomes) - done} not started; run again to continue"
        )
        raise typer.Exit(130)
    if not report.ok:
        error_line(failure_summary(report))
        raise typer.Exit(1)


def demo_rows(label: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the demo table: one per layer, then the checks."""
    rows = []
    for layer, v in summary["layers"].items():
        if layer == "check":
            continue
        rows.append(
            {
                "run": label,
                "layer": layer,
                "tasks": v["tasks"],
                "rows written": v["rows_written"],
                "task seconds": f"{v['task_seconds']:.1f}",
            }
        )
    checks, check_tasks = summary["checks"], summary["layers"].get("check", {})
    verdicts = f"{checks['pass']} pass / {checks['warn']} warn / {checks['fail']} fail"
    rows.append(
        {
            "run": label,
            "layer": "checks",
            "tasks": check_tasks.get("tasks", 0),
            "rows written": verdicts,
            "task seconds": f"{check_tasks.get('task_seconds', 0.0):.1f}",
        }
    )
    return rows


def failure_summary(report: RunReport) -> str:
    """One line: how many tasks failed or were skipped, and the first failure's reason."""
    failed = report.by_status(Status.FAILED)
    skipped = report.by_status(Status.SKIPPED)
    first = f"; first: {failed[0].task.name}: {failed[0].error}" if failed else ""
    return (
        f"run {report.run_id} did not complete: {len(failed)} task(s) failed, "
        f"{len(skipped)} skipped{first}"
    )


@app.command("export")
@cli_errors
def export_command(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="bigquery://PROJECT/DATASET, postgresql://USER@HOST/DB or duckdb:///PATH "
            "[default: the export_to setting].",
            metavar="URL",
        ),
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Export only this Gold table (repeatable).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-export every table.")] = False,
    home: HomeOpt = None,
) -> None:
    """Export the Gold tables that changed since the last export to a warehouse (each table
    replaced atomically)."""
    result = api.export(settings_for(home), to, table, full=full)
    rows = [
        {
            "table": t.table,
            "status": t.status,
            "version": t.version,
            "rows": t.rows,
            "MB": f"{t.bytes / 1e6:.2f}",
            "seconds": f"{t.seconds:.2f}",
        }
        for t in result.tables
    ]
    out_console.print(rows_table(f"export to {result.destination}", rows))
    out_console.print(
        f"{len(result.exported)} table(s) exported in {result.seconds:.1f}s (run {result.run_id})"
    )


@app.command("check")
@cli_errors
def check_command(home: HomeOpt = None) -> None:
    """Run the data-quality checks of every layer alone and print their results."""
    report, results = api.check(settings_for(home))
    keep = ("check_name", "severity", "status", "failing_rows", "observed", "details")
    out_console.print(
        rows_table(f"checks {report.run_id}", [{k: r[k] for k in keep} for r in results])
    )
    failed = [r["check_name"] for r in results if r["status"] == "fail"]
    if failed or not report.ok:
        error_line(f"{len(failed)} check(s) failed: {', '.join(failed[:10])}")
        raise typer.Exit(1)


@app.command("audit")
@cli_errors
def audit_command(
    last: Annotated[int | None, typer.Option("--last", help="Show only the last N rows.")] = 20,
    run_id: Annotated[str | None, typer.Option("--run", help="Show only this run.")] = None,
    home: HomeOpt = None,
) -> None:
    """The run log: one row per task attempt (status, rows, watermarks, errors)."""
    rows = api.audit_log(settings_for(home), last=last, run_id=run_id)
    keep = (
        "run_id",
        "task",
        "attempt",
        "status",
        "started_at",
        "rows_read",
        "rows_written",
        "watermark_after",
        "delta_version",
        "error",
    )
    out_console.print(rows_table("audit.run_logs", [{k: r[k] for k in keep} for r in rows]))


@app.command("quarantine")
@cli_errors
def quarantine_command(
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this table (repeatable).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Rows rejected by Silver rules, per table and rule, with the reason."""
    rows = api.quarantine_summary(settings_for(home), table)
    if not rows:
        out_console.print("quarantine is empty")
        return
    out_console.print(rows_table("quarantine", rows))


@app.command("report")
@cli_errors
def report_command(
    run_id: Annotated[str | None, typer.Option("--run", help="This run (default: latest).")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open it in the web browser.")] = False,
    home: HomeOpt = None,
) -> None:
    """Write the run's self-contained HTML report (and reports/latest.html); print its path."""
    path = api.report(settings_for(home), run_id)
    out_console.print(str(path), soft_wrap=True)
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@app.command("demo")
@cli_errors
def demo_command(
    scale: Annotated[float, typer.Option(help="Scale factor of the generated data.")] = 1.0,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Home folder to use [default: --home].")
    ] = None,
    olist_dir: Annotated[
        Path | None,
        typer.Option("--olist-dir", help="Load these Kaggle CSVs instead of generating."),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Also stream review events through a bundled Kafka broker (the kafka extra).",
        ),
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Generate (or load) data, run everything, apply a change batch, run again, summarise.

    With --stream, review events also go through a bundled Kafka broker into the lake before
    the second run, so Gold unifies them with the batch reviews.
    """
    settings = settings_for(directory or home)
    with ProgressListener(api.build_tasks()) as progress:
        result = api.demo(settings, scale, olist_dir, listeners=[progress], stream=stream)
    rows, last = [], {}
    for label, report in (("full", result.full), ("incremental", result.incremental)):
        if report is not None:
            last = api.run_summary(settings, report)
            rows += demo_rows(label, last)
    out_console.print(rows_table("demo: rows and time per layer", rows))
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    out_console.print(f"wall time: {timing}")
    out_console.print(f"quarantined rows: {last.get('quarantined')}   report: {last.get('report')}")
    if result.stream is not None:
        out_console.print(
            f"review stream: {result.stream.messages:,} event(s) consumed, "
            f"{result.stream.quarantined:,} quarantined (bronze/silver/quarantine review_events)"
        )
    h = f"--home {result.home}"
    out_console.print(
        f"next: medallion query --list {h} | medallion report --open {h} | "
        f"medallion audit {h} | medallion quarantine {h} | "
        f'medallion sql "SELECT * FROM fact_order LIMIT 5" {h}'
    )
    reports = [result.full, *([result.incremental] if result.incremental else [])]
    for r in reports:
        if not r.ok:
            error_line(failure_summary(r))
            raise typer.Exit(1)


@app.command("doctor")
@cli_errors
def doctor_command(
    home: HomeOpt = None,
    broker: Annotated[
        bool | None,
        typer.Option(
            "--broker/--no-broker",
            help="Probe the Kafka broker [default: when kafka_bootstrap_servers is set].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check each configured part (source, audit store, lake, broker, webhooks): reachable,
    its version, and what to fix. Exit 1 if a part fails."""
    from medallion.doctor import Health, diagnose

    findings = diagnose(settings_for(home), broker=broker)
    for f in findings:  # one line per part, never wrapped
        where = f" {f.where}" if f.where else ""
        detail = f": {f.detail}" if f.detail else ""
        fix = f" -> {f.fix}" if f.fix else ""
        line = f"{f.part:<18} {f.health.value:<15}{where}{detail}{fix}"
        out_console.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)
    failed = [f.part for f in findings if f.health is Health.FAIL]
    if failed:
        error_line(f"{len(failed)} part(s) failing: {', '.join(failed)}")
        raise typer.Exit(1)


@app.command("bench")
@cli_errors
def bench_command(
    scale: Annotated[float, typer.Option(help="Scale factor to benchmark.")] = 1.0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON here, and SVG charts beside it.")
    ] = None,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Repeat the run sequence N times (min/median/max).")
    ] = 3,
    compare: Annotated[
        Path | None,
        typer.Option("--compare", help="A bench JSON to compare with: prints median ratios."),
    ] = None,
    stream: Annotated[
        int | None,
        typer.Option(
            "--stream",
            min=1,
            help="Instead: N review events through a bundled broker into Silver, at batch "
            "sizes 1k and 10k (events/s, commit latency p50/p99; the kafka extra).",
        ),
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Time generate, full run, no-change run, a 1 % change batch and the incremental run."""
    from medallion.bench import bench, bench_stream
    from medallion.bench_summary import compare as compare_results
    from medallion.bench_summary import load_result

    baseline = load_result(compare) if compare is not None else None  # fail before the work
    base = settings_for(home, source_url=source_url)
    work = base.home / "bench" / (f"stream-{stream}" if stream else f"scale-{scale}")
    shutil.rmtree(work, ignore_errors=True)
    if stream:
        result = bench_stream(settings_for(work, source_url=source_url), stream)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
    else:
        result = bench(settings_for(work, source_url=source_url), scale, out, runs)
    out_console.print_json(json.dumps(result))
    if baseline is not None and not stream:
        out_console.print(rows_table(f"against {compare}", compare_results(result, baseline)))


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]


def print_result(data: pa.Table, fmt: Format, title: str = "") -> None:
    if fmt is Format.csv:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(data, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
    elif fmt is Format.json:
        sys.stdout.write(json.dumps(data.to_pylist(), default=str, indent=1) + "\n")
    else:
        out_console.print(rows_table(title, data.to_pylist()))


@app.command("query")
@cli_errors
def query_command(
    name: Annotated[str | None, typer.Argument(help="A named business question.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the named queries.")] = False,
    fmt: FormatOpt = Format.table,
    home: HomeOpt = None,
) -> None:
    """Answer one of the business questions over Gold (see --list)."""
    from medallion.gold.queries import QUERIES, named_query

    if list_ or name is None:
        out_console.print(
            rows_table("queries", [{"name": q.name, "question": q.title} for q in QUERIES])
        )
        return
    print_result(api.query(settings_for(home), name), fmt, named_query(name).title)


@app.command("sql")
@cli_errors
def sql_command(
    statement: Annotated[str, typer.Argument(help="DuckDB SQL over Gold and Silver tables.")],
    fmt: FormatOpt = Format.table,
    home: HomeOpt = None,
) -> None:
    """Run one read-only SELECT (DuckDB) with every Gold and Silver table visible by name."""
    print_result(api.sql(settings_for(home), statement), fmt)


@app.command("shell")
@cli_errors
def shell_command(home: HomeOpt = None) -> None:
    """A read-only SQL prompt over Gold and Silver (end statements with ';', quit with .q)."""
    settings = settings_for(home)
    out_console.print(api.SQL_LIMITS, markup=False)
    out_console.print("tables: " + ", ".join(api.lake_tables()), markup=False)
    buffer: list[str] = []
    while True:
        try:
            line = input("medallion> " if not buffer else "      ...> ")
        except EOFError:
            break
        if line.strip() in {".q", ".quit", "exit"}:
            break
        buffer.append(line)
        if line.rstrip().endswith(";"):
            statement, buffer = "\n".join(buffer).rstrip().rstrip(";"), []
            try:
                print_result(api.sql(settings, statement), Format.table)
            except MedallionError as exc:
                error_line(str(exc))


@stream_app.command("produce")
@cli_errors
def stream_produce(
    count: Annotated[
        int, typer.Option(help="Synthetic events to send (ignored with --replay).")
    ] = 10_000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same events.")
    ] = 42,
    dirty_rate: Annotated[
        float,
        typer.Option(
            help="Share of defects (0-0.5): not JSON, wrong type, score out of range, "
            "unknown order, duplicate."
        ),
    ] = 0.0,
    replay: Annotated[
        bool, typer.Option("--replay", help="Send the source's reviews as events instead.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(help="Send at most this many messages per second.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop sending after this many seconds.")
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Publish review events of the source's orders to the topic (kafka_topic at
    kafka_bootstrap_servers) and wait until the broker has acknowledged every one."""
    settings = settings_for(home, source_url=source_url)
    result = api.stream_produce(
        settings,
        count=count,
        seed=seed,
        dirty_rate=dirty_rate,
        replay=replay,
        rate=rate,
        duration=duration,
    )
    out_console.print(
        f"sent {result.sent:,} messages ({result.bytes:,} bytes) to {settings.kafka_topic} "
        f"in {result.seconds:.2f} s: {result.per_second:,.0f} messages/s",
        markup=False,
        highlight=False,
    )


@stream_app.command("schema")
@cli_errors
def stream_schema() -> None:
    """Print the review event contract as a JSON schema."""
    out_console.print_json(json.dumps(api.stream_schema()))


@stream_app.command("broker")
@cli_errors
def stream_broker(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to listen on.")] = 9092,
    storage: Annotated[
        str, typer.Option(help="Where topics live: memory://tansu/ (lost at exit) or s3://bucket/.")
    ] = "memory://tansu/",
) -> None:
    """Run the bundled Kafka-protocol broker (Tansu) on 127.0.0.1 in the foreground until
    SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        broker = api.start_stream_broker(port, storage)
        try:
            out_console.print(f"Kafka broker listening on {broker.bootstrap} (storage {storage})")
            out_console.print(f"use: MEDALLION_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
            while not stop.is_set() and broker.process.poll() is None:
                stop.wait(0.2)
        finally:
            broker.stop()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    if not stop.is_set():
        error_line(f"the Kafka broker exited by itself (code {broker.process.returncode})")
        raise typer.Exit(1)
    out_console.print("broker stopped")


@airflow_app.command("standalone")
@cli_errors
def airflow_standalone(
    home: HomeOpt = None,
    port: Annotated[int, typer.Option(help="Port of the UI and API on 127.0.0.1.")] = 8080,
    dags_folder: Annotated[
        Path, typer.Option("--dags-folder", help="The DAG files (the repository's dags/).")
    ] = Path("dags"),
    airflow_home: Annotated[
        Path | None,
        typer.Option(
            "--airflow-home", help="Airflow's folder [env AIRFLOW_HOME, else <home>/airflow]."
        ),
    ] = None,
) -> None:
    """Run Airflow standalone on 127.0.0.1 (UI, scheduler, DAG processor, triggerer) with the
    medallion DAGs, until Ctrl-C or SIGTERM; prints the URL and where the admin password is."""
    from medallion.orchestration.standalone import admin_password, start_standalone

    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        airflow = start_standalone(settings_for(home), dags_folder, airflow_home, port)
        try:
            out_console.print(f"starting Airflow in {airflow.airflow_home} (Ctrl-C stops it)")
            if not airflow.wait_healthy():
                error_line(f"Airflow did not answer on {airflow.url}; see its output above")
                raise typer.Exit(1)
            shown = "" if admin_password(airflow.password_file) else " (once generated)"
            out_console.print(f"Airflow UI: {airflow.url}  user: admin")
            out_console.print(f"admin password: in {airflow.password_file}{shown}")
            while not stop.is_set() and airflow.process.poll() is None:
                stop.wait(0.5)
        finally:
            airflow.stop()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    if not stop.is_set():
        error_line(f"Airflow exited by itself (code {airflow.process.returncode})")
        raise typer.Exit(1)
    out_console.print("Airflow stopped")


def _stop_on_term(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM stops like SIGINT (a run installs its own handler
    that lets running tasks finish)."""
    signal.signal(signal.SIGTERM, _stop_on_term)
    try:
        app()
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)


@stream_app.command("consume")
@cli_errors
def stream_consume_command(
    home: HomeOpt = None,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", min=1, help="Stop after this many messages.")
    ] = None,
    max_batches: Annotated[
        int | None, typer.Option("--max-batches", min=1, help="Stop after this many batches.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout", min=0, help="Stop after this many seconds without a message."
        ),
    ] = None,
) -> None:
    """Consume review events into bronze/silver/quarantine review_events, exactly once.

    Runs until a limit is reached, or SIGINT/SIGTERM (the current micro-batch is committed,
    then exit 0). Offsets live in the lake, committed with the rows: a restart resumes exactly
    where the last commit ended.
    """
    result = api.stream_consume(
        settings_for(home),
        max_messages=max_messages,
        max_batches=max_batches,
        idle_timeout_s=idle_timeout,
    )
    seconds = sum(b.seconds for b in result.batches)
    rate = f", {result.messages / seconds:,.0f} events/s while writing" if seconds else ""
    out_console.print(
        f"consumed {result.messages:,} message(s) in {len(result.batches)} batch(es), "
        f"{result.quarantined:,} quarantined{rate}; stopped by {result.stopped_by}"
    )
