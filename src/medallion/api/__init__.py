"""The Python API; the CLI and the DAG files are thin adapters over these functions.

``from medallion import api`` is cheap: each function's module (and the libraries it needs:
DuckDB, deltalake, the source drivers, Kafka...) is imported on first use, so a command pays
only for what it calls. The submodules group the functions as the CLI groups its commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medallion.api.config import ProfileSettings, settings_profile, write_settings_profile
    from medallion.api.exports import EXPORT_JOB, ExportReport, export
    from medallion.api.inspect import (
        SQL_LIMITS,
        audit_log,
        lake_tables,
        quarantine_summary,
        query,
        report,
        sql,
        stream_quarantine_summary,
    )
    from medallion.api.maintenance import MaintainReport, maintain
    from medallion.api.runs import (
        DemoResult,
        build_tasks,
        check,
        demo,
        pipeline_tasks,
        run,
        run_summary,
    )
    from medallion.api.source import (
        ChangeSpec,
        GenerateSummary,
        change_source,
        generate_source,
        init_source,
        load_csv,
        source_stats,
    )
    from medallion.api.stream import (
        start_stream_broker,
        stream_consume,
        stream_produce,
        stream_schema,
    )

_MODULES = {
    "config": ["ProfileSettings", "settings_profile", "write_settings_profile"],
    "exports": ["EXPORT_JOB", "ExportReport", "export"],
    "inspect": [
        "SQL_LIMITS",
        "audit_log",
        "lake_tables",
        "quarantine_summary",
        "query",
        "report",
        "sql",
        "stream_quarantine_summary",
    ],
    "maintenance": ["MaintainReport", "maintain"],
    "runs": ["DemoResult", "build_tasks", "check", "demo", "pipeline_tasks", "run", "run_summary"],
    "source": [
        "ChangeSpec",
        "GenerateSummary",
        "change_source",
        "generate_source",
        "init_source",
        "load_csv",
        "source_stats",
    ],
    "stream": ["start_stream_broker", "stream_consume", "stream_produce", "stream_schema"],
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "EXPORT_JOB",
    "SQL_LIMITS",
    "ChangeSpec",
    "DemoResult",
    "ExportReport",
    "GenerateSummary",
    "MaintainReport",
    "ProfileSettings",
    "audit_log",
    "build_tasks",
    "change_source",
    "check",
    "demo",
    "export",
    "generate_source",
    "init_source",
    "lake_tables",
    "load_csv",
    "maintain",
    "pipeline_tasks",
    "quarantine_summary",
    "query",
    "report",
    "run",
    "run_summary",
    "settings_profile",
    "source_stats",
    "sql",
    "start_stream_broker",
    "stream_consume",
    "stream_produce",
    "stream_quarantine_summary",
    "stream_schema",
    "write_settings_profile",
]


def __getattr__(name: str) -> Any:
    """Import the module of ``name`` on first use (PEP 562). No submodule is named like a
    function here: importing ``medallion.api.x`` sets the package's attribute ``x``."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(f"{__name__}.{module}")
    globals().update({n: getattr(loaded, n) for n in _MODULES[module]})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
