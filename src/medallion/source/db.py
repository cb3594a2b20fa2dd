"""The only module that talks to the source database (SQLite or PostgreSQL, through ADBC).

Rows move as Arrow tables both ways; there is no row-by-row insert. Writes go through a
temporary staging table and one set-based statement, so a reload is an upsert that only
touches rows whose values changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import DELETED_AT, UPDATED_AT, ColumnType, SourceTable
from medallion.errors import SourceBusyError, SourceError
from medallion.settings import redact_url
from medallion.source.key_hash import bucket_list, row_hash, summary_sql
from medallion.sql import quote, quoted_list

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0  # how long a SQLite source waits for another writer

Dialect = Literal["sqlite", "postgresql"]
PG_SCHEMA = "olist"
_PG_URL = re.compile(r"^postgres(ql)?(\+\w+)?://")


def dialect_of(location: str) -> Dialect:
    """``postgresql://...`` is PostgreSQL; a path or ``sqlite:///path`` is SQLite."""
    if _PG_URL.match(location):
        return "postgresql"
    if "://" in location and not location.startswith("sqlite:///"):
        scheme = location.split("://", 1)[0]
        raise SourceError(
            f"unsupported source URL scheme {scheme!r}: use a SQLite path or postgresql://..."
        )
    return "sqlite"


def sqlite_path(location: str) -> Path:
    return Path(location.removeprefix("sqlite:///")).expanduser()


def source_version(rows: int, deleted: int, newest: datetime | None) -> str:
    """A source table's version as the checks keep it: what moves whenever its rows do."""
    return f"{rows} rows, {deleted} deleted, newest {newest}"


class SourceDatabase:
    """An open connection to the source database; use :func:`open_source` to get one."""

    def __init__(self, conn: Any, dialect: Dialect, location: str) -> None:
        self._conn = conn
        self.dialect: Dialect = dialect
        self.location = location
        self.batch_rows = 65_536  # rows per streamed batch (SQLite; PostgreSQL sizes its own)

    # -- naming -----------------------------------------------------------------------------
    def qualified(self, table: SourceTable | str) -> str:
        name = table.source_name if isinstance(table, SourceTable) else table
        return f"{quote(PG_SCHEMA)}.{quote(name)}" if self.dialect == "postgresql" else quote(name)

    def param(self, index: int) -> str:
        """The placeholder of the ``index``-th (1-based) query parameter."""
        return f"${index}" if self.dialect == "postgresql" else "?"

    # -- statements -------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._cursor() as cur:  # the commit inside: a lock it meets is reported too
            cur.execute(sql, tuple(params) or None)
            self._conn.commit()

    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with self._cursor() as cur:
            cur.execute(sql, tuple(params) or None)
            result: pa.Table = cur.fetch_arrow_table()
        return result

    def query_batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pa.RecordBatch]:
        """Stream a query's result in bounded record batches."""
        with self._cursor() as cur:
            if self.dialect == "sqlite":
                rows = str(self.batch_rows)
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": rows})
            cur.execute(sql, tuple(params) or None)
            reader = cur.fetch_record_batch()
            yield from reader

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        result = self.query(sql, params)
        return result.column(0)[0].as_py() if result.num_rows else None

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            yield cur
        except adbc_driver_manager.Error as exc:
            self._conn.rollback()
            if "database is locked" in str(exc):
                raise SourceBusyError(
                    f"the source database {redact_url(self.location)} stayed locked by another "
                    f"writer for {BUSY_TIMEOUT_S:.0f} s; try again when it is free"
                ) from None
            raise SourceError(f"source query failed: {_first_line(exc)}") from exc
        finally:
            cur.close()

    # -- schema -----------------------------------------------------------------------------
    def create_tables(self, tables: Sequence[SourceTable]) -> None:
        """Create the tables (if missing) with keys and an index on ``updated_at``."""
        if self.dialect == "postgresql":
            self.execute(f'CREATE SCHEMA IF NOT EXISTS "{PG_SCHEMA}"')
        for table in tables:
            cols = ", ".join(
                f"{quote(c.name)} {c.type.sql(self.dialect)}{'' if c.nullable else ' NOT NULL'}"
                for c in table.all_columns
            )
            key = quoted_list(table.row_key)
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.qualified(table)} ({cols}, PRIMARY KEY ({key}))"
            )
            index = f'"ix_{table.name}_{UPDATED_AT}"'
            on = self.qualified(table)
            self.execute(f'CREATE INDEX IF NOT EXISTS {index} ON {on} ("{UPDATED_AT}")')

    def existing_tables(self) -> set[str]:
        if self.dialect == "postgresql":
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = $1"
            names = self.query(sql, [PG_SCHEMA])
        else:
            names = self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        return set(names.column(0).to_pylist())

    def table_columns(self, table: SourceTable) -> dict[str, str]:
        """The table's columns as they are now in the database, name -> declared SQL type."""
        if self.dialect == "postgresql":
            sql = (
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position"
            )
            rows = self.query(sql, [PG_SCHEMA, table.source_name])
        else:
            rows = self.query(f"SELECT name, type FROM pragma_table_info('{table.source_name}')")
        return dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))

    def require_tables(self, tables: Sequence[SourceTable]) -> None:
        missing = [t.source_name for t in tables if t.source_name not in self.existing_tables()]
        if missing:
            raise SourceError(
                f"source table(s) missing: {', '.join(missing)}; run `medallion source init`"
            )

    # -- data -------------------------------------------------------------------------------
    def to_source_arrow(self, table: SourceTable, data: pa.Table) -> pa.Table:
        """Shape catalog-typed Arrow for this dialect (SQLite has no DECIMAL)."""
        data = data.select(list(data.schema.names))
        if self.dialect != "sqlite":
            return data
        for i, name in enumerate(data.schema.names):
            if table.column(name).type is ColumnType.MONEY:
                data = data.set_column(i, name, pc.cast(data.column(i), pa.float64()))
        return data

    def _apply_staged(self, table: SourceTable, data: pa.Table, statement: str) -> int:
        """Bulk-load ``data`` into a temporary table ``stage``, run ``statement`` (which reads
        ``"stage"``) and drop the stage: one set-based statement, no per-row SQL."""
        if data.num_rows == 0:
            return 0
        with self._cursor() as cur:
            cur.adbc_ingest("stage", self.to_source_arrow(table, data), "replace", temporary=True)
        try:
            self.execute(statement)
        finally:
            self.execute('DROP TABLE IF EXISTS "stage"')
        return int(data.num_rows)

    def upsert(self, table: SourceTable, data: pa.Table) -> int:
        """Insert new keys and update rows whose values differ; returns rows staged."""
        cols = data.schema.names
        keys = list(table.row_key)
        target = self.qualified(table)
        names = quoted_list(cols)
        compared = [c for c in cols if c not in keys and c != UPDATED_AT]
        sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in cols if c not in keys)
        distinct = "IS DISTINCT FROM" if self.dialect == "postgresql" else "IS NOT"
        changed = " OR ".join(f'{target}."{c}" {distinct} excluded."{c}"' for c in compared)
        conflict = quoted_list(keys)
        sql = (
            f'INSERT INTO {target} ({names}) SELECT {names} FROM "stage" WHERE true '
            f"ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
            + (f" WHERE {changed}" if changed else "")
        )
        return self._apply_staged(table, data, sql)

    def update_rows(self, table: SourceTable, data: pa.Table) -> int:
        """Set the non-key columns of ``data`` on the rows its key columns name."""
        target = self.qualified(table)
        keys = list(table.row_key)
        sets = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in data.schema.names if c not in keys)
        match = " AND ".join(f'{target}."{k}" = s."{k}"' for k in keys)
        sql = f'UPDATE {target} SET {sets} FROM "stage" AS s WHERE {match}'
        return self._apply_staged(table, data, sql)

    def delete_rows(self, table: SourceTable, keys: pa.Table) -> int:
        """Hard-delete the rows whose key is in ``keys``."""
        cols = quoted_list(table.row_key)
        # a row-value IN uses the primary-key index (a correlated EXISTS scans on SQLite)
        sql = f'DELETE FROM {self.qualified(table)} WHERE ({cols}) IN (SELECT {cols} FROM "stage")'
        return self._apply_staged(table, keys, sql)

    # -- what Bronze and the checks ask of the source (no SQL outside this module) ------------
    def changed_keys(
        self, table: SourceTable, since: datetime | None, extra: Sequence[str] = ()
    ) -> pa.Table:
        """(row key, updated_at, ``extra`` columns) of the rows updated after ``since`` (all
        rows if None)."""
        columns = list(dict.fromkeys([*table.row_key, UPDATED_AT, *extra]))
        if since is None:
            return self.select(table, columns)
        where = f"{quote(UPDATED_AT)} > {self.param(1)}"
        return self.select(table, columns, where, [self._timestamp(since)])

    def rows_updated_between(
        self, table: SourceTable, columns: Sequence[str], low: datetime | None, high: datetime
    ) -> Iterator[pa.RecordBatch]:
        """``columns`` of the rows with ``low < updated_at <= high``, oldest first, in batches."""
        where = f"{quote(UPDATED_AT)} <= {self.param(1)}"
        params: list[Any] = [self._timestamp(high)]
        if low is not None:
            where += f" AND {quote(UPDATED_AT)} > {self.param(2)}"
            params.append(self._timestamp(low))
        return self.select_batches(
            table, columns, where, params, order_by=UPDATED_AT, whole=low is None
        )

    def rows_with_updates(
        self, table: SourceTable, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """``columns`` of every row that has an ``updated_at``, in the table's own order (a
        first load orders them itself: SQLite's sort of a million rows costs 0.4 s, and a
        table written in time order needs none), in batches."""
        return self.select_batches(table, columns, f"{quote(UPDATED_AT)} IS NOT NULL")

    def latest_update(self, table: SourceTable) -> datetime | None:
        """The newest ``updated_at`` of the table (None when it is empty)."""
        value = self.scalar(f"SELECT MAX({quote(UPDATED_AT)}) FROM {self.qualified(table)}")
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    def key_buckets(self, table: SourceTable, buckets: int, before: datetime) -> pa.Table:
        """Per bucket of the row-key hash (:mod:`medallion.source.key_hash`): the count and
        fingerprint sums of the keys not soft-deleted and last updated at or before
        ``before``. One GROUP BY in the database; the hash is computed once per row."""
        hashed = (
            f"SELECT {row_hash(table, self.dialect)} AS h FROM {self.qualified(table)} "
            f"WHERE {quote(DELETED_AT)} IS NULL AND {quote(UPDATED_AT)} <= {self.param(1)}"
        )
        summary = summary_sql("SELECT h FROM hashed", buckets)
        sql = f"WITH hashed AS MATERIALIZED ({hashed}) {summary}"
        return self.query(sql, [self._timestamp(before)])

    def keys_in_buckets(
        self, table: SourceTable, buckets: int, selected: Sequence[int]
    ) -> pa.Table:
        """The row keys of every row whose key hash falls in one of the ``selected`` buckets."""
        where = f"{row_hash(table, self.dialect)} % {buckets} IN ({bucket_list(selected)})"
        return self.select(table, list(table.row_key), where)

    def fingerprint(self, table: SourceTable) -> str:
        """What moves whenever the table's rows do, from one aggregate query (no row read):
        rows, soft-deleted rows and the newest ``updated_at`` (:meth:`stats`). A check that
        read the table stands while this stays the same."""
        row = self.stats([table])[0]
        return source_version(row["rows"], row["soft_deleted"], row["max_updated_at"])

    def row_count(self, table: SourceTable) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {self.qualified(table)}") or 0)

    def _timestamp(self, ts: datetime) -> Any:
        """A timestamp as a query parameter: ISO text for SQLite (as ADBC stores it)."""
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") if self.dialect == "sqlite" else ts

    def read_table(self, table: SourceTable, columns: Sequence[str] | None = None) -> pa.Table:
        """A whole table (or some of its columns) cast to the catalog's Arrow types."""
        return self.select(table, columns)

    def select(
        self,
        table: SourceTable,
        columns: Sequence[str] | None = None,
        where: str = "",
        params: Sequence[Any] = (),
        order_by: str | None = None,
    ) -> pa.Table:
        """:meth:`select_batches` gathered into one table."""
        names = list(columns or [c.name for c in table.all_columns])
        batches = list(self.select_batches(table, names, where, params, order_by))
        if batches:
            return pa.Table.from_batches(batches)
        return self.cast_to_catalog(table, _empty(table, names))

    def select_batches(
        self,
        table: SourceTable,
        columns: Sequence[str],
        where: str = "",
        params: Sequence[Any] = (),
        order_by: str | None = None,
        *,
        whole: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of ``table`` in bounded batches, typed as the catalog declares;
        with ``order_by`` (one of ``columns``), the rows where it is not NULL, in its order.
        ``whole``: the ``where`` selects about every row.

        Columns the catalog does not declare (new in the source) come as text. On SQLite a
        typed sentinel row leads the result: the driver infers each column's type from the
        first rows, and a column that starts with NULLs would otherwise be taken for an
        integer and fail later on text. SQLite returns the arms of a ``UNION ALL`` in order,
        so the first row is checked instead of sorting by the sentinel (0.4 s per million
        rows of geolocation); ordered, the sentinel's ``order_by`` is the NULL that sorts
        before every row selected, so an index on that column gives the order with no sort
        (a sort by the sentinel first took SQLite 1.2 s before the first of geolocation's
        million rows). Not so for ``whole``: read through the index, every row costs a page
        read in another place of the table, so SQLite reads the table in its own order and
        sorts (a million orders: 1.9 s, where the index order took 3.2 s).
        """
        sql = self._select_sql(table, columns, where, order_by, whole=whole)
        for number, batch in enumerate(self.query_batches(sql, params)):
            data = pa.Table.from_batches([batch])
            if self.dialect == "sqlite":
                if number == 0 and (not data.num_rows or data["_sentinel"][0].as_py() != 0):
                    raise SourceError(f"SQLite returned {table.name}'s rows before its typed row")
                # the one typed row is the first: the rest are the rows (no copy to drop it)
                data = (data.slice(1) if number == 0 else data).drop_columns(["_sentinel"])
            if data.num_rows:
                yield from self._typed(table, data).to_batches()

    def _select_sql(
        self,
        table: SourceTable,
        columns: Sequence[str],
        where: str,
        order_by: str | None,
        *,
        whole: bool,
    ) -> str:
        """The query of :meth:`select_batches` (on SQLite with its typed sentinel row)."""
        if order_by is not None:
            if order_by not in columns:
                raise ValueError(f"order_by {order_by!r} is not among the selected columns")
            present = f"{quote(order_by)} IS NOT NULL"
            where = f"({where}) AND {present}" if where else present
        cols = quoted_list(columns)
        source = self.qualified(table)
        if whole and order_by is not None and self.dialect == "sqlite":
            source += " NOT INDEXED"  # its own order, then a sort: see select_batches
        sql = f"SELECT {cols} FROM {source}" + (f" WHERE {where}" if where else "")
        if self.dialect == "sqlite":
            sentinel = ", ".join(
                f'{"NULL" if c == order_by else _sqlite_sample(table, c)} AS "{c}"' for c in columns
            )
            sql = f"SELECT 0 AS _sentinel, {sentinel} UNION ALL SELECT 1, * FROM ({sql})"
        if order_by is not None:
            sql += f" ORDER BY {quote(order_by)}"
        return sql

    def _typed(self, table: SourceTable, data: pa.Table) -> pa.Table:
        declared = {c.name for c in table.all_columns}
        known = [n for n in data.column_names if n in declared]
        typed = self.cast_to_catalog(table, data.select(known))
        for name in data.column_names:
            if name not in declared:
                typed = typed.append_column(name, pc.cast(data[name], pa.string()))
        return typed.select(data.column_names)

    def cast_to_catalog(self, table: SourceTable, data: pa.Table) -> pa.Table:
        """Cast driver-typed Arrow (ISO text, REAL money, numeric strings) to catalog types."""
        arrays = []
        for name, column in zip(data.schema.names, data.columns, strict=True):
            arrays.append(_cast_column(column, table.column(name).type))
        fields = [pa.field(n, table.column(n).type.arrow) for n in data.schema.names]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def stats(self, tables: Sequence[SourceTable]) -> list[dict[str, Any]]:
        """Row count, soft-deleted count and max ``updated_at`` per table."""
        out = []
        for table in tables:
            row = self.query(
                f'SELECT COUNT(*) AS n, COUNT("{DELETED_AT}") AS d, MAX("{UPDATED_AT}") AS m '
                f"FROM {self.qualified(table)}"
            ).to_pylist()[0]
            max_updated = row["m"]
            if isinstance(max_updated, str):
                max_updated = datetime.fromisoformat(max_updated)
            out.append(
                {
                    "table": table.name,
                    "rows": row["n"],
                    "soft_deleted": row["d"],
                    "max_updated_at": max_updated,
                }
            )
        return out

    def close(self) -> None:
        self._conn.close()


_SQLITE_SAMPLE = {
    ColumnType.INT: "0",
    ColumnType.FLOAT: "0.0",
    ColumnType.MONEY: "0.0",
}


def _sqlite_sample(table: SourceTable, column: str) -> str:
    """A literal of the column's SQLite storage class (text for undeclared columns)."""
    declared = {c.name: c.type for c in table.all_columns}
    ctype = declared.get(column)
    return _SQLITE_SAMPLE.get(ctype, "''") if ctype is not None else "''"


def _empty(table: SourceTable, columns: Sequence[str]) -> pa.Table:
    declared = {c.name: c.type.arrow for c in table.all_columns}
    return pa.table({c: pa.array([], declared.get(c, pa.string())) for c in columns})


def _cast_column(column: pa.ChunkedArray, ctype: ColumnType) -> pa.ChunkedArray:
    target = ctype.arrow
    if column.type == target:
        return column
    if pa.types.is_null(column.type) or column.null_count == len(column):
        return pa.chunked_array([pa.nulls(len(column), target)])
    if isinstance(column.type, pa.ExtensionType):  # PostgreSQL NUMERIC arrives as text
        column = pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    if ctype is ColumnType.MONEY and pa.types.is_floating(column.type):
        # SQLite keeps NUMERIC as REAL: round to cents, but never hide a third decimal
        rounded = pc.round(column, 2)
        off = pc.greater(pc.abs(pc.subtract(column, rounded)), 1e-6)
        if pc.any(off).as_py():
            example = column.filter(off)[0].as_py()
            raise SourceError(
                f"a money column holds {example!r}, which has more than 2 decimals; "
                "fix the value in the source (money is exact to the cent)"
            )
        column = rounded
    return pc.cast(column, target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("IO: ", "INVALID_ARGUMENT: ", "NOT_FOUND: ", "INTERNAL: "):
        text = text.removeprefix(prefix)
    return redact_url(" ".join(text.split()))[:400]


def change_token(location: str) -> str | None:
    """A text that changes whenever a write commits to the source database, read without
    touching a table; None where no such text exists. Read it before the rows it vouches
    for: equal texts then mean no write committed in between.

    SQLite in rollback-journal mode (the default): the header's file change counter,
    which every committed write increments, with the file's identity, size and
    modification time (another file in its place is another text).
    In WAL mode a commit goes to the ``-wal`` file and the counter may not move, so there
    is none. PostgreSQL has none either: its WAL position moves with every write of the
    cluster, the audit store's included, and its statistics counters lag behind commits.
    """
    if dialect_of(location) != "sqlite":
        return None
    path = sqlite_path(location)
    try:
        with path.open("rb") as f:
            header = f.read(100)
        stat = path.stat()
    except OSError:
        return None
    if len(header) < 100 or header[18] == 2 or path.with_name(path.name + "-wal").exists():
        return None
    counter = int.from_bytes(header[24:28], "big")
    file = f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"sqlite:{counter}:{file}"


@contextmanager
def open_source(location: str, *, create: bool = False) -> Iterator[SourceDatabase]:
    """Connect to the source; a missing SQLite file is an error unless ``create``."""
    dialect = dialect_of(location)
    try:
        if dialect == "postgresql":
            import adbc_driver_postgresql.dbapi as pg

            uri = _PG_URL.sub("postgresql://", location)
            conn = pg.connect(uri)
        else:
            import adbc_driver_sqlite.dbapi as sq

            path = sqlite_path(location)
            if not path.exists() and not create:
                raise SourceError(
                    f"source database {path} does not exist; run `medallion source init` "
                    "(or generate / load-csv) first"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sq.connect(str(path))
            with conn.cursor() as cur:  # wait for another writer instead of failing at once
                cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except adbc_driver_manager.Error as exc:
        where = redact_url(location)
        raise SourceError(f"cannot connect to source {where}: {_first_line(exc)}") from None
    db = SourceDatabase(conn, dialect, location)
    try:
        yield db
    finally:
        db.close()
