"""What every command module shares: the common options, the error wrapper, settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from medallion.console import error_line
from medallion.errors import MedallionError

if TYPE_CHECKING:
    from medallion.settings import Settings

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Folder of the embedded defaults (env MEDALLION_HOME).", show_default=False
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source-url", help="SQLite path or postgresql:// URL (env MEDALLION_SOURCE_URL)."
    ),
]
STATE: dict[str, bool] = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn a MedallionError into one red line and exit code 1 (traceback with --debug)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MedallionError as exc:
            if STATE["debug"]:
                raise
            error_line(str(exc))
            raise typer.Exit(1) from None
        except OSError as exc:  # a folder that cannot be created or written, a full disk
            if STATE["debug"]:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            error_line(f"{exc.strerror or exc}{where}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings_for(home: Path | None, **flags: Any) -> Settings:
    from medallion.settings import load_settings

    return load_settings(home=home, **flags)
