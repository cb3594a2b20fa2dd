"""`medallion export`: Gold to a warehouse."""

from __future__ import annotations

from typing import Annotated

import typer

from medallion import api
from medallion.cli.common import HomeOpt, cli_errors, settings_for
from medallion.console import out_console, rows_table


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
