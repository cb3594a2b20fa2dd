"""What checks read, and nothing else: each lake table opened once per check task (its version
and its rows come from one snapshot), the source's tables, change feeds and key-filtered reads.

A lake table is handed to the engine as a lazy scan (:meth:`DeltaHandle.relation`): DuckDB
scans the columns a query needs, a Spark server reads the table from the lake itself, so no
table-sized data goes through this process. What does come here is change-sized (a feed, the
rows of the keys a change touched) or the source's rows, which only this process can read.
Every row read is counted, so a check task can say how much data it looked at."""

from __future__ import annotations

import pyarrow as pa

from medallion.catalog import TableRef, empty_bronze, source_table
from medallion.checks.kinds import Check, Need
from medallion.engine import Engine, Relation, read_matching, rows_in
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
        self._scans: dict[tuple[str, str], Relation | None] = {}
        self._held: dict[tuple[str, str, tuple[str, ...] | None], Relation] = {}
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
    def relation(
        self, layer: str, table: str, columns: tuple[str, ...] | None = None
    ) -> Relation | None:
        """(At least ``columns`` of) a lake table of this task's snapshot, as the engine holds
        it for the task's queries (:meth:`Engine.hold`: read here once by DuckDB, read from
        the lake by a Spark server); its rows counted once per task. None when the table was
        never written. An empty column list holds one column (enough to count rows)."""
        scan = self._scan(layer, table)
        if scan is None:
            return None
        if columns == ():
            columns = (scan.schema.names[0],)
        whole = self._held.get((layer, table, None))
        key = (layer, table, columns)
        if key not in self._held:
            self._held[key] = self.engine.hold(whole if whole is not None else scan, columns)
        return self._held[key]

    def _scan(self, layer: str, table: str) -> Relation | None:
        if (layer, table) not in self._scans:
            handle = self.handle(layer, table)
            scan = handle.relation()
            if scan is not None:
                rows = handle.row_count()
                self.rows_read += rows if rows is not None else rows_in(scan)
            self._scans[layer, table] = scan
        return self._scans[layer, table]

    def need(self, need: Need) -> Relation:
        """What a check needs from another table: a lake table as a lazy scan (one never
        written reads as empty rows of its declared shape), a source table read here."""
        if need.layer == SOURCE:
            columns = list(need.columns) if need.columns else None
            with open_source(self.settings.source_location) as db:
                data = db.read_table(source_table(need.table), columns)
            self.rows_read += data.num_rows
            return data
        held = self.relation(need.layer, need.table, need.columns)
        return held if held is not None else self.empty(need)

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
        """The rows a lake table gained and lost since version ``after``; None when the log
        cannot tell (see :meth:`DeltaHandle.feed`), and since it was created (``after``
        None): the whole table is no change, it is read where the engine runs."""
        key = (layer, table, after)
        if key not in self._feeds:
            handle = self.handle(layer, table)
            fed = handle.exists and layer != SOURCE and after is not None
            changes = handle.feed(after) if fed else None
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
        data = read_matching(self.engine, self.handle(layer, table), column, values, columns)
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
                    scan = self.handle(ref.layer, ref.name).relation()
                    rows = 0 if scan is None else rows_in(scan)
            else:
                rows = self.upstream_rows(ref.layer, ref.name)
            if rows is None:
                return None
            total += rows
        return total
