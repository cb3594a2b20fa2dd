"""`medallion maintain`: compaction, z-order, vacuum and checkpoints of the lake's tables."""

from __future__ import annotations

from typing import Annotated

import typer

from medallion import api
from medallion.cli.common import HomeOpt, cli_errors, settings_for
from medallion.console import out_console, rows_table


@cli_errors
def maintain_command(
    layer: Annotated[
        list[str] | None, typer.Option("--layer", help="Only this layer's tables (repeatable).")
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this table (repeatable).")
    ] = None,
    z_order: Annotated[
        bool | None,
        typer.Option(
            "--z-order/--no-z-order",
            help="Order the compacted files by the table's key [default: maintain_z_order].",
            show_default=False,
        ),
    ] = None,
    retention_hours: Annotated[
        int | None,
        typer.Option(
            "--retention-hours",
            help="Vacuum the files unused this long [default: maintain_retention_hours, 168].",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow a retention below 1 hour.")] = False,
    home: HomeOpt = None,
) -> None:
    """Compact the small files of every Delta table (z-ordered by its key), vacuum the files
    no recent version uses, and checkpoint the log; the next run still writes nothing new."""
    result = api.maintain(
        settings_for(home),
        layer,
        table,
        z_order=z_order,
        retention_hours=retention_hours,
        force=force,
    )
    rows = [
        {
            "table": str(t.ref),
            "files": f"{t.files_before} -> {t.files_after}",
            "MB": f"{t.bytes_before / 1e6:.2f} -> {t.bytes_after / 1e6:.2f}",
            "version": f"{t.version_before} -> {t.version_after}",
            "z-order": ", ".join(t.z_order),
            "vacuumed": t.vacuumed,
            "seconds": f"{t.seconds:.2f}",
        }
        for t in result.tables
    ]
    out_console.print(rows_table(f"maintain (vacuum retention {result.retention_hours} h)", rows))
    before = sum(t.files_before for t in result.tables)
    after = sum(t.files_after for t in result.tables)
    out_console.print(
        f"{len(result.tables)} table(s) maintained, {before} -> {after} files, in "
        f"{result.seconds:.1f}s (run {result.run_id})"
    )
