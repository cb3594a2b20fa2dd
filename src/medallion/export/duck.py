"""DuckDB destination: a database file (``duckdb:///path.duckdb``).

A table is written to ``_medallion_stage_<table>``; the swap (drop, rename, version record) is
one DuckDB transaction. Timestamps become TIMESTAMPTZ (UTC instants).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from medallion.errors import ExportError, one_line
from medallion.export.core import EXPORTS_TABLE, STAGE_PREFIX, utc_timestamps


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBDestination:
    def __init__(self, url: str, lake_uri: str) -> None:
        path = urlsplit(url).path
        if url.startswith("duckdb:////"):
            path = "/" + path.lstrip("/")
        elif url.startswith("duckdb:///"):
            path = path.lstrip("/") or ""
        if not path:
            raise ExportError(f"bad DuckDB destination {url!r}: use duckdb:///path.duckdb")
        self.label = f"duckdb:///{path}"
        self.lake_uri = lake_uri
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(path)
            self._exec(
                f"CREATE TABLE IF NOT EXISTS {_q(EXPORTS_TABLE)} (lake_uri VARCHAR NOT NULL, "
                "table_name VARCHAR NOT NULL, version BIGINT NOT NULL, rows_exported BIGINT, "
                "exported_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (lake_uri, table_name))"
            )
        except (duckdb.Error, OSError) as exc:
            raise ExportError(f"cannot open {self.label}: {one_line(exc)}") from None

    def exported_version(self, table: str) -> int | None:
        rows = self._exec(
            f"SELECT version FROM {_q(EXPORTS_TABLE)} WHERE lake_uri = ? AND table_name = ?",
            [self.lake_uri, table],
        )
        return int(str(rows[0][0])) if rows else None

    def _exec(self, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
        """One statement, its result read to the end (DuckDB 2.0 refuses the next one
        while a result is unfinished)."""
        return self.con.execute(sql, params or []).fetchall()

    def stage(self, table: str, data: pa.Table) -> None:
        staged = utc_timestamps(data)
        try:
            self.con.register("_medallion_rows", staged)
            self._exec(
                f"CREATE OR REPLACE TABLE {_q(STAGE_PREFIX + table)} AS "
                "SELECT * FROM _medallion_rows"
            )
        except duckdb.Error as exc:
            raise ExportError(f"{self.label} failed to stage {table}: {one_line(exc)}") from None
        finally:
            self.con.unregister("_medallion_rows")

    def swap(self, table: str, version: int, rows: int) -> None:
        try:
            self._exec("BEGIN TRANSACTION")
            self._exec(f"DROP TABLE IF EXISTS {_q(table)}")
            self._exec(f"ALTER TABLE {_q(STAGE_PREFIX + table)} RENAME TO {_q(table)}")
            self._exec(
                f"INSERT OR REPLACE INTO {_q(EXPORTS_TABLE)} VALUES (?, ?, ?, ?, now())",
                [self.lake_uri, table, version, rows],
            )
            self._exec("COMMIT")
        except duckdb.Error as exc:
            self._exec("ROLLBACK")
            raise ExportError(f"{self.label} failed to swap {table}: {one_line(exc)}") from None

    def close(self) -> None:
        self.con.close()
