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
    _write_atomic(out / "latest.html", page)
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a browser refreshing the page never reads half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
