"""What checks read, and nothing else: each lake table opened once per check task (its version
and its rows come from one snapshot), the source's tables, change feeds and key-filtered reads.
Every row read is counted, so a check task can say how much data it looked at."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from medallion.catalog import TableRef, empty_bronze, source_table
from medallion.checks.kinds import Check, Need
from medallion.engine import Engine
from medallion.errors import MedallionError
from medallion.gold.model import gold_table
from medallion.settings import Settings
from medallion.silver.contracts import silver_tables
from medallion.silver.transform import empty_silver_sql
from medallion.source.db import open_source
from medallion.storage import Changes, DeltaHandle, Lake

SOURCE = "source"
Version = int | str | None  # a Delta version, a source table's fingerprint, None: no table


def input_name(layer: str, table: str) -> str:
    return f"{layer}.{table}"


class CheckInputs:
    """The tables one check task reads, each opened once: versions, rows, changes."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.lake = Lake.from_settings(settings)
        self.engine = engine
        self.rows_read = 0  # rows of table data read (whole tables, filtered reads, feeds)
        self._handles: dict[tuple[str, str], DeltaHandle] = {}
        self._versions: dict[tuple[str, str], int | None] = {}
        self._fingerprints: dict[str, str | None] = {}
        self._cache: dict[tuple[str, str, tuple[str, ...] | None], pa.Table | None] = {}
        self._feeds: dict[tuple[str, str, int | None], Changes | None] = {}

    # -- versions ----------------------------------------------------------------------------
    def handle(self, layer: str, table: str) -> DeltaHandle:
        if (layer, table) not in self._handles:
            self._handles[layer, table] = self.lake.table(layer, table)
        return self._handles[layer, table]

    def version(self, layer: str, table: str) -> Version:
        """The last Delta version of a lake table that changed rows (None: not written; a
        compaction after it is no change), or what the source table's rows look like
        (:meth:`SourceDatabase.fingerprint`)."""
        if layer != SOURCE:
            if (layer, table) not in self._versions:
                self._versions[layer, table] = self.handle(layer, table).data_version
            return self._versions[layer, table]
        if table not in self._fingerprints:
            try:
                with open_source(self.settings.source_location) as db:
                    self._fingerprints[table] = db.fingerprint(source_table(table))
            except MedallionError:
                self._fingerprints[table] = None  # unreadable: never the same as before
        return self._fingerprints[table]

    def versions(self, check: Check) -> dict[str, Version]:
        """Each input's version (``layer.table`` -> version), the checked table's first."""
        return {input_name(*ref): self.version(*ref) for ref in check.inputs.values()}

    def identities(self, check: Check) -> dict[str, str | None]:
        """Each lake input's table id: a table created anew since, whatever its version,
        has nothing in common with the one a state recorded."""
        return {
            input_name(layer, table): self.handle(layer, table).identity
            for layer, table in check.inputs.values()
            if layer != SOURCE
        }

    # -- whole tables ------------------------------------------------------------------------
    def read(self, layer: str, table: str, columns: Iterable[str] | None = None) -> pa.Table | None:
        """(Some columns of) a lake table, read once per task; an empty column list reads
        one column (enough to count rows). None when the table was never written."""
        wanted = tuple(columns) if columns is not None else None
        if wanted == ():
            schema = self.handle(layer, table).schema
            wanted = (schema.names[0],) if schema is not None else None
        key = (layer, table, wanted)
        whole = self._cache.get((layer, table, None))
        if key not in self._cache and whole is not None and wanted is not None:
            return whole.select(list(wanted))  # the columns of a whole table already read
        if key not in self._cache:
            data = self.handle(layer, table).read(list(wanted) if wanted else None)
            self.rows_read += 0 if data is None else data.num_rows
            self._cache[key] = data
        return self._cache[key]

    def need(self, need: Need) -> pa.Table:
        """What a check needs from another table; one never written reads as empty rows of
        its declared shape."""
        columns = list(need.columns) if need.columns else None
        if need.layer == SOURCE:
            with open_source(self.settings.source_location) as db:
                data = db.read_table(source_table(need.table), columns)
            self.rows_read += data.num_rows
            return data
        data = self.read(need.layer, need.table, need.columns)
        return data if data is not None else self.empty(need)

    def empty(self, need: Need) -> pa.Table:
        columns = list(need.columns) if need.columns else None
        if need.layer == "silver":
            spec = next(s for s in silver_tables() if s.name == need.table)
            empty = self.engine.query(empty_silver_sql(spec))
            return empty.select(columns) if columns else empty
        if need.layer == "bronze":
            return empty_bronze(need.table).select(columns or [])
        return pa.table({c: pa.array([], pa.string()) for c in columns or []})

    def row_count(self, layer: str, table: str) -> int | None:
        """Rows of a lake table from the Delta log's file statistics (no data read)."""
        return self.handle(layer, table).row_count()

    # -- what changed ------------------------------------------------------------------------
    def feed(self, layer: str, table: str, after: int | None) -> Changes | None:
        """The rows a lake table gained and lost since version ``after`` (None: since it was
        created); None when the log cannot tell (see :meth:`DeltaHandle.feed`)."""
        key = (layer, table, after)
        if key not in self._feeds:
            handle = self.handle(layer, table)
            changes = handle.feed(after) if handle.exists and layer != SOURCE else None
            self.rows_read += 0 if changes is None else changes.num_rows
            self._feeds[key] = changes
        return self._feeds[key]

    def matching(self, check: Check, alias: str, column: str, values: pa.Array) -> pa.Table:
        """The rows of input ``alias`` whose ``column`` is one of ``values``, with the columns
        the check reads of it."""
        layer, table = check.inputs[alias]
        need = next((n for n in check.needs if n.alias == alias), None)
        columns = need.columns if need is not None else check.columns
        if columns is not None and column not in columns:
            columns = (column, *columns)
        data = self.handle(layer, table).read_matching(
            column, values, list(columns) if columns is not None else None
        )
        if data is None:  # a need never written (the checked table exists: see the runner)
            assert need is not None
            return self.empty(need)
        self.rows_read += data.num_rows
        return data

    # -- a table not written yet -------------------------------------------------------------
    def upstream_rows(self, layer: str, table: str) -> int | None:
        """Rows in the nearest existing tables this one is built from (None: unreadable)."""
        if layer == "bronze":
            try:
                with open_source(self.settings.source_location) as db:
                    return db.row_count(source_table(table))
            except MedallionError:
                return None
        if layer == "silver":
            inputs = [
                TableRef("bronze", next(s for s in silver_tables() if s.name == table).bronze)
            ]
        else:  # optional inputs (streamed reviews) may rightly be missing: not counted
            inputs = list(gold_table(table).inputs)
        total = 0
        for ref in inputs:
            if self.handle(ref.layer, ref.name).exists:
                rows = self.row_count(ref.layer, ref.name)
                if rows is None:
                    data = self.read(ref.layer, ref.name, ())
                    rows = 0 if data is None else data.num_rows
            else:
                rows = self.upstream_rows(ref.layer, ref.name)
            if rows is None:
                return None
            total += rows
        return total
