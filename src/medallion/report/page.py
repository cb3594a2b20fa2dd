"""The page: the sections' data rendered through the Jinja templates in ``templates/``.

Autoescaping is on, so every value from data (task errors, quarantine reasons, check samples,
categories, run ids) is escaped by the templates; only the SVG charts arrive as ``Markup``.
Undefined names fail loudly rather than render as blanks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined

from medallion.report.exports import export_section
from medallion.report.figures import business_section
from medallion.report.formats import fmt_time
from medallion.report.model import badge
from medallion.report.run import LakeViews, RunData
from medallion.report.sections import (
    checks_section,
    drift_section,
    errors_section,
    quarantine_section,
    rowflow_section,
    summary_section,
    timeline_section,
    totals,
)
from medallion.report.streaming import stream_section
from medallion.settings import Settings


def _compiled_templates() -> FileSystemBytecodeCache | None:
    """Jinja's store of compiled templates, a private folder of the temp directory (each
    entry checked against its template's text): compiling them costs every report 30 ms.
    None where no such folder can be made."""
    try:
        return FileSystemBytecodeCache()
    except RuntimeError:  # Jinja's own error when no safe folder can be made
        return None


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("medallion.report", "templates"),
        bytecode_cache=_compiled_templates(),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(settings: Settings, views: LakeViews, data: RunData) -> str:
    sections = [
        summary_section(settings, data),
        timeline_section(data),
        rowflow_section(data),
        quarantine_section(views, data),
        checks_section(data),
        drift_section(data),
        business_section(views),
        stream_section(views, data),
        export_section(data),
        errors_section(data),
    ]
    return (
        environment()
        .get_template("page.html.j2")
        .render(
            run_id=data.run_id,
            status=badge(totals(data).status),
            sections=sections,
            generated=fmt_time(datetime.now(UTC).replace(tzinfo=None)),
        )
    )
