"""`medallion run` and `medallion demo`: the pipeline, and everything end to end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medallion import api
from medallion.cli.common import HomeOpt, SourceOpt, cli_errors, settings_for
from medallion.console import ProgressListener, error_line, out_console, rows_table, run_table

if TYPE_CHECKING:
    from medallion.runner import RunReport


@cli_errors
def run_command(
    layer: Annotated[
        list[str] | None, typer.Option("--layer", help="Run only this layer (repeatable).")
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Run only this table (repeatable).")
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option("--full-refresh", help="Re-extract, rebuild and check everything."),
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
    from medallion.runner import Status

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
    from medallion.runner import Status

    failed = report.by_status(Status.FAILED)
    skipped = report.by_status(Status.SKIPPED)
    first = f"; first: {failed[0].task.name}: {failed[0].error}" if failed else ""
    return (
        f"run {report.run_id} did not complete: {len(failed)} task(s) failed, "
        f"{len(skipped)} skipped{first}"
    )


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
