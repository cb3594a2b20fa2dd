"""The `medallion` command line: parses flags, calls :mod:`medallion.api`, formats results.

One module per command group; this one builds the Typer app and registers the commands in the
order ``medallion --help`` lists them.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from medallion import __version__
from medallion.cli import (
    airflow,
    bench,
    config,
    export,
    inspect,
    maintain,
    run,
    source,
    spark,
    stream,
)
from medallion.cli.common import STATE
from medallion.console import configure_logging, error_line, out_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="medallion",
    help="Olist e-commerce lakehouse: source -> Bronze -> Silver -> Gold on Delta Lake.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
COMMANDS: dict[str, Callable[..., None]] = {  # in the order of `medallion --help`
    "run": run.run_command,
    "export": export.export_command,
    "maintain": maintain.maintain_command,
    "check": inspect.check_command,
    "audit": inspect.audit_command,
    "quarantine": inspect.quarantine_command,
    "report": inspect.report_command,
    "demo": run.demo_command,
    "doctor": bench.doctor_command,
    "bench": bench.bench_command,
    "query": inspect.query_command,
    "sql": inspect.sql_command,
    "shell": inspect.shell_command,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)
app.add_typer(source.source_app, name="source")
app.add_typer(config.config_app, name="config")
app.add_typer(stream.stream_app, name="stream")
app.add_typer(airflow.airflow_app, name="airflow")
app.add_typer(spark.spark_app, name="spark")


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Olist e-commerce lakehouse: source -> Bronze -> Silver -> Gold on Delta Lake."""
    if version:
        out_console.print(__version__)
        raise typer.Exit(0)
    STATE["debug"] = debug
    configure_logging(debug)


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
