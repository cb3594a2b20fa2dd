"""The page: the sections' data rendered through the Jinja templates in ``templates/``.

Autoescaping is on, so every value from data (task errors, quarantine reasons, check samples,
categories, run ids) is escaped by the templates; only the SVG charts arrive as ``Markup``.
Undefined names fail loudly rather than render as blanks.
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2
from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined
from jinja2.bccache import Bucket

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

# how the templates are compiled: a compiled template is kept for these and this Jinja only
_OPTIONS: dict[str, Any] = {
    "autoescape": True,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
}


class _CompiledTemplates(FileSystemBytecodeCache):
    """Jinja's store of compiled templates in a private folder of the temp directory, each
    entry checked against its template's text (compiling them costs every report 30 ms).
    A store that fails (no room, no safe folder) costs the compile, never the report."""

    def load_bytecode(self, bucket: Bucket) -> None:
        with suppress(OSError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: Bucket) -> None:
        with suppress(OSError):
            super().dump_bytecode(bucket)


def _compiled_templates() -> FileSystemBytecodeCache | None:
    made_for = f"{jinja2.__version__} {sorted(_OPTIONS.items())}".encode()
    pattern = f"__medallion_{hashlib.sha256(made_for).hexdigest()[:16]}_%s.cache"
    try:
        return _CompiledTemplates(pattern=pattern)
    except (RuntimeError, OSError):  # no safe folder to keep them in
        return None


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("medallion.report", "templates"),
        bytecode_cache=_compiled_templates(),
        undefined=StrictUndefined,
        **_OPTIONS,
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
