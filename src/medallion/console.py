"""Everything the user sees: logging setup, a run's progress, tables and one-line errors.

Library code logs through ``logging``; only entry points call :func:`configure_logging`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:  # the CLI starts without the runner's imports (pyarrow, pydantic)
    from medallion.runner import RunContext, RunReport, Task, TaskOutcome

# Off a terminal Rich assumes 80 columns; tables of runs are wider than that.
_WIDTH = None if sys.stdout.isatty() else 160
err_console = Console(stderr=True)
out_console = Console(width=_WIDTH)
log = logging.getLogger("medallion")

_STATUS_STYLE = {  # by runner.Status (a StrEnum)
    "SUCCESS": "green",
    "FAILED": "red",
    "SKIPPED": "yellow",
    "RUNNING": "cyan",
}


def is_interactive() -> bool:
    return sys.stderr.isatty()


def configure_logging(debug: bool = False) -> None:
    """Rich log lines on a terminal, plain timestamped lines otherwise."""
    level = logging.DEBUG if debug else logging.INFO
    handler: logging.Handler
    if is_interactive():
        handler = RichHandler(console=err_console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("medallion")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def error_line(message: str) -> None:
    from medallion.settings import redact_url

    err_console.print(
        f"[bold red]error:[/] {escape(redact_url(message))}",
        highlight=False,
        markup=True,
        soft_wrap=True,
    )


class ProgressListener:
    """Shows a progress bar on a terminal, and one log line per finished task otherwise."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        if is_interactive() and tasks:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self._bar = self._progress.add_task("run", total=len(tasks))

    def __enter__(self) -> ProgressListener:
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.stop()

    def task_started(self, ctx: RunContext, task: Task, attempt: int) -> None:
        if self._progress:
            with self._lock:
                self._progress.update(self._bar, description=task.name)

    def task_finished(self, ctx: RunContext, outcome: TaskOutcome) -> None:
        final = outcome.is_final
        rows = outcome.result.rows_written if outcome.result else 0
        detail = f" ({outcome.error})" if outcome.error else ""
        log.info(
            "%s %s in %.2fs, %d rows written%s",
            outcome.task.name,
            outcome.status.value,
            outcome.seconds,
            rows,
            detail,
        )
        if self._progress and final:
            with self._lock:
                self._progress.advance(self._bar)


def run_table(report: RunReport) -> Table:
    table = Table(title=f"run {report.run_id}")
    for col in ("task", "status", "try", "secs", "read", "written", "quar.", "note"):
        numeric = col in {"try", "secs", "read", "written", "quar."}
        table.add_column(col, justify="right" if numeric else "left", no_wrap=col != "note")
    for o in report.outcomes:
        r = o.result
        table.add_row(
            o.task.name,
            f"[{_STATUS_STYLE[o.status]}]{o.status.value}[/]",
            str(o.attempts),
            f"{o.seconds:.2f}",
            str(r.rows_read if r else ""),
            str(r.rows_written if r else ""),
            str(r.rows_quarantined if r else ""),
            o.error or "",
        )
    return table


def rows_table(title: str, rows: Iterable[Mapping[str, Any]]) -> Table:
    """A Rich table of homogeneous dict rows."""
    rows = list(rows)
    table = Table(title=title)
    for col in rows[0] if rows else []:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    return table
