"""`medallion spark`: a local Spark Connect server (Sail, the spark extra) and a probe of the
one the settings name."""

from __future__ import annotations

from typing import Annotated

import typer

from medallion.cli.common import HomeOpt, cli_errors, settings_for
from medallion.console import error_line, out_console

spark_app = typer.Typer(
    help="The Spark engine (engine = 'spark'): a local Spark Connect server and a probe of the "
    "configured one (the spark extra).",
    no_args_is_help=True,
)


@spark_app.command("server")
@cli_errors
def spark_server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to listen on.")] = 15002,
    mode: Annotated[
        str,
        typer.Option(help="local (one process, threads) or local-cluster (a driver and workers)."),
    ] = "local",
    workers: Annotated[int, typer.Option(help="Workers of local-cluster mode.")] = 2,
) -> None:
    """Run LakeSail's Sail, a Spark Connect server without a JVM, on 127.0.0.1 in the
    foreground until Ctrl-C or SIGTERM."""
    from medallion.runner import StopSignals
    from medallion.spark_server import MODES, start_spark_server

    if mode not in MODES:  # Typer takes no Literal choices
        error_line(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        raise typer.Exit(2)
    with StopSignals() as signals:
        server = start_spark_server(port, mode, workers)
        try:
            shape = f"{mode}, {workers} workers" if mode == "local-cluster" else mode
            out_console.print(f"Spark Connect server (Sail, {shape}) on {server.remote}")
            out_console.print(f"use: MEDALLION_ENGINE=spark MEDALLION_SPARK_REMOTE={server.remote}")
            while signals.by is None and server.process.poll() is None:
                signals.stopped.wait(0.2)
        finally:
            server.stop()
    if signals.by is None:
        error_line(f"the Spark server exited by itself (code {server.process.returncode})")
        raise typer.Exit(1)
    out_console.print("Spark server stopped")


@spark_app.command("check")
@cli_errors
def spark_check(home: HomeOpt = None) -> None:
    """Connect to the settings' Spark Connect server (spark_remote) and print its version."""
    from medallion.spark_engine import connect

    settings = settings_for(home)
    spark = connect(settings.spark_connect_url)
    try:
        version = spark.version
    finally:
        spark.stop()
    out_console.print(f"Spark {version} at {settings.spark_remote}", markup=False)
