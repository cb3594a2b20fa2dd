"""The `medallion` command line: parses flags, calls :mod:`medallion.api`, formats results.

One module per command group; this one builds the Typer app and registers the commands in the
order ``medallion --help`` lists them.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, NoReturn

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


def _print_version(asked: bool) -> None:
    """``--version``: eager, so it needs no command after it."""
    if asked:
        out_console.print(__version__)
        raise typer.Exit(0)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Olist e-commerce lakehouse: source -> Bronze -> Silver -> Gold on Delta Lake."""
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
        code: object = 0
    except KeyboardInterrupt:
        error_line("interrupted")
        code = 130
    except SystemExit as exc:
        code = exc.code
    _leave(code)


def _leave(code: object) -> NoReturn:
    """Exit as Python would (threads joined, exit handlers run, output flushed) without
    tearing down every module the command imported: that alone costs about 0.3 s (pandas,
    pyarrow, SQLAlchemy), more than a run with nothing to do spends on its tasks. Every
    command has closed what it opened by now."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # logging's flush among them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
