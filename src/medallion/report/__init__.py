"""The run report: one static, self-contained HTML page per run (and ``latest.html``).

Everything is inline (CSS, SVG charts drawn here, no script, font or image from elsewhere) so
the page works offline, as an e-mail attachment or a CI artifact. The modules turn the run
into plain data (``sections``, ``figures``, ``charts`` for the SVG) and Jinja templates with
autoescaping (``templates/``, rendered by ``page``) do the markup, so every piece of text that
comes from data is escaped; settings are never printed, only locations with URL passwords
redacted.
"""

from __future__ import annotations

import os
import uuid
from contextlib import suppress
from pathlib import Path

from medallion.report.figures import FIGURES
from medallion.report.page import render_page
from medallion.report.run import LakeViews, load_run, report_name
from medallion.settings import Settings

__all__ = ["FIGURES", "LakeViews", "build_report", "report_name"]


# -- entry point ------------------------------------------------------------------------------
def build_report(settings: Settings, views: LakeViews, run_id: str | None = None) -> Path:
    """Write ``reports/<run_id>.html`` and a copy as ``reports/latest.html``; return the first.

    ``run_id`` defaults to the latest run in the audit log.
    """
    data = load_run(settings, run_id)
    page = render_page(settings, views, data)
    out = settings.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / report_name(data.run_id)
    _write_atomic(path, page)
    _write_atomic(out / LATEST, page)
    _prune(out, settings.reports_kept, path)
    return path


LATEST = "latest.html"


def _prune(out: Path, kept: int, written: Path) -> None:
    """Keep the ``kept`` newest run pages (0: all), the one just written among them: a
    scheduler running every few minutes writes a page each time. Best effort: a page
    another process removed first, or one that cannot be removed, is left to the next run."""
    if kept == 0:
        return
    pages = []
    with os.scandir(out) as entries:
        for entry in entries:
            if entry.name.endswith(".html") and entry.name not in (LATEST, written.name):
                with suppress(OSError):
                    pages.append((entry.stat().st_mtime_ns, entry.name))
    for _, name in sorted(pages, reverse=True)[kept - 1 :]:
        with suppress(OSError):
            (out / name).unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a browser refreshing the page never reads half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
