"""The Python API; the CLI and the DAG files are thin adapters over these functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medallion.audit import AuditStore
from medallion.catalog import SOURCE_TABLES, source_table
from medallion.errors import ConfigError
from medallion.pipeline import build_tasks
from medallion.runner import RunContext, RunListener, RunReport, new_run_id, run_tasks
from medallion.settings import Settings
from medallion.source.changes import ChangeManifest, ChangeSpec, apply_changes
from medallion.source.db import open_source
from medallion.source.generator import GeneratorConfig, generate, write_to_source
from medallion.source.kaggle_csv import LoadResult, load_csv_dir, write_kaggle_csv

__all__ = [
    "ChangeSpec",
    "audit_log",
    "build_tasks",
    "change_source",
    "generate_source",
    "init_source",
    "load_csv",
    "run",
    "source_stats",
]

log = logging.getLogger(__name__)


def init_source(settings: Settings) -> list[str]:
    """Create the nine source tables (if missing); returns their source names."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return [t.source_name for t in SOURCE_TABLES]


def load_csv(
    settings: Settings, directory: Path, tables: list[str] | None = None
) -> list[LoadResult]:
    """Load (upsert) the Kaggle CSV files found in ``directory`` into the source."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        return load_csv_dir(db, directory, loaded_at=_now(), tables=tables)


@dataclass(frozen=True)
class GenerateSummary:
    rows: dict[str, int]
    dirty_rows: int
    csv_dir: Path | None


def generate_source(
    settings: Settings,
    scale: float,
    seed: int = 42,
    dirty_rate: float = 0.0,
    csv_dir: Path | None = None,
) -> GenerateSummary:
    """Generate Olist-shaped data into the source database (and optionally Kaggle CSVs)."""
    data = generate(GeneratorConfig(scale=scale, seed=seed, dirty_rate=dirty_rate))
    if csv_dir is not None:
        csv_dir.mkdir(parents=True, exist_ok=True)
        for name, table in data.tables.items():
            write_kaggle_csv(table, source_table(name), csv_dir)
        return GenerateSummary(
            {k: v.num_rows for k, v in data.tables.items()}, data.dirty.num_rows, csv_dir
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        rows = write_to_source(db, data)
    return GenerateSummary(rows, data.dirty.num_rows, None)


def change_source(settings: Settings, spec: ChangeSpec) -> tuple[ChangeManifest, Path]:
    """Apply one change batch and write its manifest under ``home/changes``."""
    with open_source(settings.source_location) as db:
        db.require_tables(SOURCE_TABLES)
        manifest = apply_changes(db, spec)
    stamp = manifest.batch_time.strftime("%Y%m%dT%H%M%S")
    path = settings.home / "changes" / f"change-{stamp}-seed{spec.seed}.json"
    manifest.write(path)
    return manifest, path


def source_stats(settings: Settings) -> list[dict[str, Any]]:
    with open_source(settings.source_location) as db:
        db.require_tables(SOURCE_TABLES)
        return db.stats(SOURCE_TABLES)


def run(
    settings: Settings,
    layers: list[str] | None = None,
    tables: list[str] | None = None,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    listeners: list[RunListener] | None = None,
) -> RunReport:
    """Run the chosen layers' tasks for the chosen tables, in dependency order."""
    tasks = build_tasks(layers, tables)
    if not tasks:
        raise ConfigError("nothing to run: no task matches the chosen layers and tables")
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, full_refresh=full_refresh)
    audit = AuditStore(settings.audit_location).open()  # unreachable: fail before any task
    try:
        return run_tasks(tasks, ctx, [audit, *(listeners or [])])
    finally:
        audit.close()


def audit_log(
    settings: Settings, last: int | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Audit rows (one per task attempt), oldest first."""
    audit = AuditStore(settings.audit_location).open()
    try:
        return audit.run_logs(last=last, run_id=run_id)
    finally:
        audit.close()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
