"""The source database: create, load, generate, change, count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.errors import ConfigError
from medallion.resources import change_memory, generate_memory, require_memory
from medallion.settings import Settings
from medallion.source.changes import ChangeManifest, ChangeSpec, apply_changes
from medallion.source.db import open_source
from medallion.source.generator import GeneratorConfig, generate, write_to_source
from medallion.source.kaggle_csv import LoadResult, load_csv_dir, write_kaggle_csv

__all__ = [
    "ChangeSpec",
    "GenerateSummary",
    "change_source",
    "generate_source",
    "init_source",
    "load_csv",
    "source_stats",
]


def init_source(settings: Settings) -> list[str]:
    """Create the nine source tables (if missing); returns their source names."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    return [t.source_name for t in SOURCE_TABLES]


def load_csv(
    settings: Settings, directory: Path, tables: list[str] | None = None
) -> list[LoadResult]:
    """Load (upsert) the Kaggle CSV files found in ``directory`` into the source.

    The nine tables are created first (empty where no file was given), so that a run after
    loading only some files extracts what is there instead of failing on the missing ones.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
        return load_csv_dir(db, directory, loaded_at=utc_now(), tables=tables)


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
    if not 0 < scale < float("inf"):
        raise ConfigError(f"scale must be a number > 0, got {scale}")
    require_memory(f"scale {scale:g}", generate_memory(scale))
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
    require_memory(f"a change batch of {spec.rows:,} rows", change_memory(spec.rows))
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


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
