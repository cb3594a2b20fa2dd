"""The commands that look at the lake and its logs: check, audit, quarantine, report, query,
sql and shell."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from medallion import api
from medallion.cli.common import HomeOpt, cli_errors, settings_for
from medallion.console import error_line, out_console, rows_table
from medallion.errors import MedallionError

if TYPE_CHECKING:
    import pyarrow as pa


@cli_errors
def check_command(
    full: Annotated[
        bool,
        typer.Option("--full", help="Evaluate every check on every row, not on what moved."),
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Run the data-quality checks of every layer alone and print their results; each check
    reads only what moved since its recorded state (with --full: every row)."""
    report, results = api.check(settings_for(home), full=full)
    keep = ("check_name", "severity", "status", "failing_rows", "observed", "details")
    out_console.print(
        rows_table(f"checks {report.run_id}", [{k: r[k] for k in keep} for r in results])
    )
    failed = [r["check_name"] for r in results if r["status"] == "fail"]
    if failed or not report.ok:
        error_line(f"{len(failed)} check(s) failed: {', '.join(failed[:10])}")
        raise typer.Exit(1)


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


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]


def print_result(data: pa.Table, fmt: Format, title: str = "") -> None:
    if fmt is Format.csv:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(data, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
    elif fmt is Format.json:
        sys.stdout.write(json.dumps(data.to_pylist(), default=str, indent=1) + "\n")
    else:
        out_console.print(rows_table(title, data.to_pylist()))


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


@cli_errors
def sql_command(
    statement: Annotated[str, typer.Argument(help="DuckDB SQL over Gold and Silver tables.")],
    fmt: FormatOpt = Format.table,
    home: HomeOpt = None,
) -> None:
    """Run one read-only SELECT (DuckDB) with every Gold and Silver table visible by name."""
    print_result(api.sql(settings_for(home), statement), fmt)


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
