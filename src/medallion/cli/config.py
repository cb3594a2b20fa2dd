"""`medallion config`: the resolved settings, and settings profiles for a deployment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from medallion import api
from medallion.cli.common import HomeOpt, cli_errors, settings_for
from medallion.console import err_console, out_console

config_app = typer.Typer(
    help="Show the resolved settings, or a profile of settings for a deployment.",
    no_args_is_help=True,
)


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
