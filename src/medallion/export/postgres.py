"""PostgreSQL destination through SQLAlchemy and psycopg 3 (COPY for the rows).

A table is copied into ``<schema>._medallion_stage_<table>``; the swap is one transaction
that drops the target, renames the staging table and records the version, so a reader sees
the old table or the new one, never half of either.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from medallion.audit import sqlalchemy_url
from medallion.errors import ExportError, one_line
from medallion.export.core import EXPORTS_TABLE, STAGE_PREFIX
from medallion.settings import Settings, redact_url

_TYPES: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_int8, "smallint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double precision"),
    (pa.types.is_timestamp, "timestamptz"),  # Gold's naive timestamps are UTC
    (pa.types.is_date, "date"),
    (pa.types.is_string, "text"),
    (pa.types.is_large_string, "text"),
)


def postgres_type(t: pa.DataType) -> str:
    """The PostgreSQL type of an Arrow type; money (decimal) stays exact as numeric(p, s)."""
    if isinstance(t, pa.Decimal128Type | pa.Decimal256Type):
        return f"numeric({t.precision}, {t.scale})"
    for matches, name in _TYPES:
        if matches(t):
            return name
    raise ExportError(f"no PostgreSQL type for Arrow type {t}")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresDestination:
    def __init__(self, url: str, settings: Settings, lake_uri: str) -> None:
        self.label = redact_url(url)
        self.lake_uri = lake_uri
        self.schema = settings.export_postgres_schema
        timeout = max(1, int(settings.export_timeout_s))
        try:
            self.engine = sa.create_engine(
                sqlalchemy_url(url),
                connect_args={"connect_timeout": timeout, "options": "-c TimeZone=UTC"},
            )
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ExportError(f"invalid PostgreSQL destination {self.label}: {exc}") from None
        s = _q(self.schema)
        self._run(
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"CREATE TABLE IF NOT EXISTS {s}.{_q(EXPORTS_TABLE)} (lake_uri text NOT NULL, "
            "table_name text NOT NULL, version bigint NOT NULL, rows_exported bigint, "
            "exported_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (lake_uri, table_name))",
        )

    def _run(self, *statements: str, params: dict[str, Any] | None = None) -> list[Any]:
        try:
            with self.engine.begin() as conn:
                rows: list[Any] = []
                for sql in statements:
                    result = conn.execute(sa.text(sql), params or {})
                    rows = list(result) if result.returns_rows else []
                return rows
        except SQLAlchemyError as exc:
            raise ExportError(
                f"{self.label} failed: {one_line(getattr(exc, 'orig', None) or exc)}"
            ) from None

    def exported_version(self, table: str) -> int | None:
        rows = self._run(
            f"SELECT version FROM {_q(self.schema)}.{_q(EXPORTS_TABLE)} "
            "WHERE lake_uri = :lake AND table_name = :t",
            params={"lake": self.lake_uri, "t": table},
        )
        return int(rows[0][0]) if rows else None

    def stage(self, table: str, data: pa.Table) -> None:
        stage = f"{_q(self.schema)}.{_q(STAGE_PREFIX + table)}"
        columns = ", ".join(f"{_q(f.name)} {postgres_type(f.type)}" for f in data.schema)
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {stage}"))
                conn.execute(sa.text(f"CREATE TABLE {stage} ({columns})"))
                raw: Any = conn.connection.driver_connection
                with raw.cursor().copy(  # naive timestamps read as UTC (the session's zone)
                    f"COPY {stage} FROM STDIN WITH (FORMAT csv, HEADER true)"
                ) as copy:
                    copy.write(buffer.getvalue())
        except SQLAlchemyError as exc:
            raise ExportError(
                f"{self.label} failed: {one_line(getattr(exc, 'orig', None) or exc)}"
            ) from None
        except Exception as exc:  # psycopg errors raised by COPY outside SQLAlchemy
            raise ExportError(f"{self.label} failed to load {table}: {one_line(exc)}") from None

    def swap(self, table: str, version: int, rows: int) -> None:
        s = _q(self.schema)
        self._run(
            f"DROP TABLE IF EXISTS {s}.{_q(table)}",
            f"ALTER TABLE {s}.{_q(STAGE_PREFIX + table)} RENAME TO {_q(table)}",
            f"INSERT INTO {s}.{_q(EXPORTS_TABLE)} (lake_uri, table_name, version, rows_exported, "
            "exported_at) VALUES (:lake, :t, :v, :n, now()) ON CONFLICT (lake_uri, table_name) "
            "DO UPDATE SET version = excluded.version, rows_exported = excluded.rows_exported, "
            "exported_at = excluded.exported_at",
            params={"lake": self.lake_uri, "t": table, "v": version, "n": rows},
        )

    def close(self) -> None:
        self.engine.dispose()
