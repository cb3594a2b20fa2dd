"""The one export path: for each Gold table whose Delta version moved since the last export to
this destination, stage the table, then swap it in atomically and record the version.

The version record lives in the destination itself (``_medallion_exports``: lake URI, table,
Delta version), so two lakes or two warehouses never confuse each other. A failure between
staging and swap leaves the previous table readable; the next export redoes that table.

Types map exactly (see README, Export): DECIMAL stays exact (NUMERIC), timestamps are UTC
instants (BigQuery TIMESTAMP, PostgreSQL timestamptz, DuckDB TIMESTAMPTZ), dates stay DATE,
booleans BOOL, integers keep their width (int64 as INT64/bigint).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from medallion.errors import CatalogError
from medallion.faults import crash_point
from medallion.storage import Lake

log = logging.getLogger(__name__)

EXPORTS_TABLE = "_medallion_exports"
STAGE_PREFIX = "_medallion_stage_"


class Destination(Protocol):
    """A warehouse the export writes to; each method is one step of the export path."""

    label: str  # the destination, secrets redacted

    def exported_version(self, table: str) -> int | None:
        """The Delta version of ``table`` last exported here from this lake, or None."""

    def stage(self, table: str, data: pa.Table) -> None:
        """Load ``data`` into the staging table of ``table`` (the target is untouched)."""

    def swap(self, table: str, version: int, rows: int) -> None:
        """Replace ``table`` with its staging table in one step, then record ``version``."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class TableExport:
    """What happened to one Gold table: ``exported``, ``unchanged`` or ``missing``."""

    table: str
    status: str
    version: int | None
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0


def before_swap(table: str) -> None:
    """The point between staging and swap (tests arm it to prove a failure here is safe)."""
    crash_point("export.before_swap")


def utc_timestamps(data: pa.Table) -> pa.Table:
    """Gold's timestamps are naive UTC; make them explicit UTC instants."""
    columns = []
    for field, column in zip(data.schema, data.columns, strict=True):
        naive = pa.types.is_timestamp(field.type) and field.type.tz is None
        columns.append(column.cast(pa.timestamp("us", tz="UTC")) if naive else column)
    return pa.Table.from_arrays(columns, names=data.column_names)


def export_table(dest: Destination, lake: Lake, table: str, *, full: bool) -> TableExport:
    """Export one Gold table if its data version moved (or ``full``); a compaction moves none.
    The current snapshot holds that version's rows (its own files may be vacuumed)."""
    handle = lake.table("gold", table)
    version = handle.data_version
    if version is None:
        return TableExport(table, "missing", None)
    if not full and dest.exported_version(table) == version:
        return TableExport(table, "unchanged", version)
    start = time.perf_counter()
    data = handle.read()
    if data is None:  # pragma: no cover - the version exists
        return TableExport(table, "missing", None)
    dest.stage(table, data)
    before_swap(table)
    dest.swap(table, version, data.num_rows)
    seconds = time.perf_counter() - start
    log.info(
        "exported %s v%d (%d rows) to %s in %.2fs",
        table,
        version,
        data.num_rows,
        dest.label,
        seconds,
    )
    return TableExport(table, "exported", version, data.num_rows, data.nbytes, seconds)


def gold_table_names(tables: list[str] | None) -> list[str]:
    from medallion.gold.model import GOLD_TABLES

    names = [t.name for t in GOLD_TABLES]
    unknown = sorted(set(tables or ()) - set(names))
    if unknown:
        raise CatalogError(f"unknown Gold table(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    return [n for n in names if not tables or n in tables]
