"""`medallion source`: create, load, generate and change the source database."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from medallion import api
from medallion.cli.common import HomeOpt, SourceOpt, cli_errors, settings_for
from medallion.console import out_console, rows_table

source_app = typer.Typer(
    help="Create, load, generate and change the source database.", no_args_is_help=True
)


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
