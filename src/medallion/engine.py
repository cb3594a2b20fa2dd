"""The SQL engine interface; DuckDB in-process is the default and the only duckdb user.

Transformations hand Arrow tables in by name and get Arrow back, so a Spark Connect engine
can stand behind the same interface later.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Protocol

import duckdb
import pyarrow as pa

from medallion.errors import MedallionError


class EngineError(MedallionError):
    """A transformation query failed."""


class Engine(Protocol):
    def query(self, sql: str, tables: Mapping[str, pa.Table] | None = None) -> pa.Table: ...


class DuckDBEngine:
    """One in-memory DuckDB connection per call: thread-safe, nothing shared between tasks.

    Known DuckDB 2.0 trap: a ``LIMIT`` over a ``UNION ALL`` of window-function CTEs on
    registered Arrow tables never returns; callers sample results in Arrow instead.
    """

    def __init__(self, threads: int = 2, memory_limit: str = "4GB") -> None:
        self._config: dict[str, str | int] = {"threads": threads, "memory_limit": memory_limit}

    def query(self, sql: str, tables: Mapping[str, pa.Table] | None = None) -> pa.Table:
        """Run ``sql`` with each Arrow table of ``tables`` visible under its name."""
        con = duckdb.connect(config=dict(self._config))
        try:
            for name, table in (tables or {}).items():
                con.register(name, table)
            return con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise EngineError(f"query failed: {' '.join(str(exc).split())[:400]}") from exc
        finally:
            con.close()


@cache
def default_engine() -> Engine:
    return DuckDBEngine()
