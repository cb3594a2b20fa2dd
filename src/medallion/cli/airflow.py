"""`medallion airflow`: a local Airflow running the DAGs of dags/ (the airflow extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medallion.cli.common import HomeOpt, cli_errors, settings_for
from medallion.console import error_line, out_console

airflow_app = typer.Typer(
    help="A local Airflow running the DAGs of dags/ (the airflow extra).", no_args_is_help=True
)


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
            "--airflow-home", help="Airflow's folder (env AIRFLOW_HOME, else <home>/airflow)."
        ),
    ] = None,
) -> None:
    """Run Airflow standalone on 127.0.0.1 (UI, scheduler, DAG processor, triggerer) with the
    medallion DAGs, until Ctrl-C or SIGTERM; prints the URL and where the admin password is."""
    from medallion.orchestration.standalone import admin_password, start_standalone
    from medallion.runner import StopSignals

    with StopSignals() as signals:
        airflow = start_standalone(settings_for(home), dags_folder, airflow_home, port)
        try:
            out_console.print(f"starting Airflow in {airflow.airflow_home} (Ctrl-C stops it)")
            if not airflow.wait_healthy():
                error_line(f"Airflow did not answer on {airflow.url}; see its output above")
                raise typer.Exit(1)
            shown = "" if admin_password(airflow.password_file) else " (once generated)"
            out_console.print(f"Airflow UI: {airflow.url}  user: admin")
            out_console.print(f"admin password: in {airflow.password_file}{shown}")
            while signals.by is None and airflow.process.poll() is None:
                signals.stopped.wait(0.5)
        finally:
            airflow.stop()
    if signals.by is None:
        error_line(f"Airflow exited by itself (code {airflow.process.returncode})")
        raise typer.Exit(1)
    out_console.print("Airflow stopped")
