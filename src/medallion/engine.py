"""The SQL engine interface; DuckDB in-process is the default and the only duckdb user.

Transformations hand relations in by name (Arrow tables, or lazy scans of lake tables) and get
small answers back as Arrow (:meth:`Engine.query`). A result that may be as large as a table
is kept where the engine runs (:meth:`Engine.keep`) and written to the lake by the same engine
(:meth:`Engine.overwrite`, :meth:`Engine.merge`, :meth:`Engine.append`): with DuckDB that place
is this process, with a Spark Connect server it is the lake itself, so table-sized data never
crosses the wire.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import pyarrow as pa

from medallion.errors import EngineError, EngineMemoryError, ReadOnlyError, one_line
from medallion.merge_sql import expressible, inserted_sql, matched_sql
from medallion.runner import at_attempt_end
from medallion.settings import Settings
from medallion.sql import quote, quoted_list
from medallion.storage import (
    DeltaHandle,
    Lake,
    LocalFiles,
    MergePlan,
    MergeResult,
    local_parquet,
)

if TYPE_CHECKING:  # duckdb is imported where a query needs it (a run with nothing to do
    # makes none, and the import costs 30-40 ms of its second)
    import duckdb
    import pyarrow.dataset as pads

    from medallion.spark_engine import SparkEngine

# of the process's DuckDB database, shared by the tasks side by side (beyond the limit
# DuckDB spills what it can); a connection of its own (partitioning, a user's query) has as much
THREADS, MEMORY_LIMIT = 2, "4GB"
# what a query reads: an Arrow table, or a lazy dataset of which it scans only what it needs
Relation: TypeAlias = "pa.Table | pads.Dataset"


class Engine(Protocol):
    # whether the engine runs in this process (its results are Arrow here): only then is
    # streaming a large change set through local files in groups worth it
    in_process: bool
    # the SQL dialect it runs as written: queries are written in DuckDB's, which other
    # engines translate; a native DuckDB function may stand in for a portable expression
    dialect: str

    def query(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> pa.Table: ...

    def keep(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        near: DeltaHandle | None = None,
    ) -> Relation:
        """:meth:`query` for a result that may be as large as a table, kept where the engine
        runs: later queries read it there, and :meth:`overwrite` commits it to ``near``
        without moving it when it was kept near that table."""
        ...

    def overwrite(
        self,
        target: DeltaHandle,
        data: Relation,
        *,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        configuration: Mapping[str, str] | None = None,
        key: Sequence[str] = (),
    ) -> int:
        """Replace ``target``'s content with ``data`` in one commit recording
        ``transactions``, files this process writes laid out for lookups by ``key``
        (:func:`~medallion.storage.file_layout`); the new version."""
        ...

    def merge(
        self,
        target: DeltaHandle,
        source: Relation,
        plan: MergePlan,
        *,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        all_new: bool | None = None,
        key: Sequence[str] | None = None,
    ) -> MergeResult:
        """MERGE ``source`` (alias ``s``) into ``target`` (alias ``t``) in one commit
        recording ``transactions``, as :meth:`DeltaHandle.merge` does (files laid out for
        lookups by ``key``, by default the plan's keys). When no source row matches a stored
        one (``all_new``: the caller knows; None: the engine finds out) the rows it would
        insert are appended instead, and no stored row is read again."""
        ...

    def append(
        self,
        target: DeltaHandle,
        data: Relation,
        *,
        transactions: Mapping[str, int],
        expected: Mapping[str, int | None],
        metadata: Mapping[str, Any],
        evolve_schema: bool = False,
        key: Sequence[str] = (),
    ) -> int:
        """Add ``data`` to ``target`` in one commit recording ``transactions``, as
        :meth:`DeltaHandle.append` does (``expected`` checked first, files laid out for
        lookups by ``key``); the new version."""
        ...

    def discard(self, relation: Relation) -> None:
        """Forget a kept result no commit took (an intermediate, a MERGE's source): files
        the engine wrote for it are deleted; nothing to do for rows held in this process."""
        ...

    def hold(self, relation: Relation, columns: Sequence[str] | None = None) -> Relation:
        """``relation`` (its ``columns`` at least) for many queries of one task, held where
        reading it again costs least: in this process, a lazy scan pyarrow would decode for
        each query is read into memory once, files DuckDB reads itself are left where they
        are (its reader is as fast as memory, and a table-sized copy is not made); a server
        reads it from the lake."""
        ...


def read_matching(
    engine: Engine,
    handle: DeltaHandle,
    column: str,
    values: pa.Array | pa.ChunkedArray,
    columns: Sequence[str] | None = None,
) -> pa.Table | None:
    """:meth:`DeltaHandle.read_matching` (the rows whose ``column`` is one of ``values``, NULL
    matching a NULL), read by DuckDB from the table's files when ``engine`` runs in this
    process and the table is in a folder: about twice as fast as pyarrow's filtered scan,
    which cannot skip a file on a cast string column. None when the table does not exist.

    Without a NULL among ``values`` the filter is an ``IN`` list, which DuckDB hands to its
    Parquet reader: a row group whose bloom filter holds none of a few keys is not read
    (:func:`~medallion.storage.file_layout`); with one, a NULL-safe semi-join."""
    scan = handle.relation() if engine.in_process else None
    if scan is None or local_parquet(scan) is None:
        return handle.read_matching(column, values, list(columns) if columns else None)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    wanted = quoted_list(columns) if columns else "*"
    if values.null_count:
        where = f"EXISTS (SELECT 1 FROM k WHERE k.v IS NOT DISTINCT FROM t.{quote(column)})"
    else:
        where = f"t.{quote(column)} IN (SELECT v FROM k)"
    return engine.query(
        f"SELECT {wanted} FROM t WHERE {where}", {"t": scan, "k": pa.table({"v": values})}
    )


def rows_in(relation: Relation) -> int:
    """How many rows a relation holds (a lazy one: from its files' metadata)."""
    return int(relation.num_rows if isinstance(relation, pa.Table) else relation.count_rows())


class _InProcess:
    """What an engine running in this process does with its results: they are Arrow here
    already, so keeping one is querying it, and delta-rs writes it."""

    in_process = True
    dialect = "duckdb"

    def query(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        raise NotImplementedError

    def keep(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        near: DeltaHandle | None = None,
    ) -> Relation:
        return self.query(sql, tables, params)

    def hold(self, relation: Relation, columns: Sequence[str] | None = None) -> Relation:
        wanted = list(columns) if columns is not None else None
        if isinstance(relation, pa.Table):
            return relation if wanted is None else relation.select(wanted)
        if local_parquet(relation) is not None:
            return relation
        return relation.to_table(columns=wanted)

    def overwrite(
        self,
        target: DeltaHandle,
        data: Relation,
        *,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        configuration: Mapping[str, str] | None = None,
        key: Sequence[str] = (),
    ) -> int:
        return target.overwrite(
            _rows(data),
            transactions=transactions,
            metadata=metadata,
            configuration=configuration,
            key=key,
        )

    def merge(
        self,
        target: DeltaHandle,
        source: Relation,
        plan: MergePlan,
        *,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        all_new: bool | None = None,
        key: Sequence[str] | None = None,
    ) -> MergeResult:
        layout = plan.keys if key is None else tuple(key)
        schema = target.schema
        if all_new is not False and schema is not None and expressible(schema):
            if all_new is None:
                stored = target.relation()
                matched = (
                    stored is None
                    or self.query(matched_sql(plan), {"t": stored, "s": source}).num_rows
                )
                all_new = not matched
            if all_new:
                return self._append_inserts(
                    target,
                    source,
                    plan,
                    schema=schema,
                    transactions=transactions,
                    metadata=metadata,
                    key=layout,
                )
        return target.merge(
            _rows(source), plan, transactions=transactions, metadata=metadata, key=layout
        )

    def _append_inserts(
        self,
        target: DeltaHandle,
        source: Relation,
        plan: MergePlan,
        *,
        schema: pa.Schema,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        key: Sequence[str],
    ) -> MergeResult:
        """The MERGE of ``source`` when none of its rows matches a stored one: what it
        inserts, appended (a MERGE that changes nothing still commits, as delta-rs' does)."""
        rows = self.query(inserted_sql(plan, schema), {"s": source})
        if rows.num_rows == 0:
            version = target.record(transactions, metadata)
            return MergeResult(version, rows_in(source), 0, 0, 0, 0, 0)
        files, _ = target.files()
        version = target.append(
            rows, transactions=transactions, expected={}, metadata=metadata, key=key
        )
        added = target.files()[0] - files
        return MergeResult(version, rows_in(source), rows.num_rows, 0, 0, added, 0)

    def append(
        self,
        target: DeltaHandle,
        data: Relation,
        *,
        transactions: Mapping[str, int],
        expected: Mapping[str, int | None],
        metadata: Mapping[str, Any],
        evolve_schema: bool = False,
        key: Sequence[str] = (),
    ) -> int:
        return target.append(
            _rows(data),
            transactions=transactions,
            expected=expected,
            metadata=metadata,
            evolve_schema=evolve_schema,
            key=key,
        )

    def discard(self, relation: Relation) -> None:
        return None


def _rows(relation: Relation) -> pa.Table | pa.RecordBatchReader:
    return relation if isinstance(relation, pa.Table) else relation.scanner().to_reader()


class DuckDBEngine(_InProcess):
    """DuckDB in this process: each thread queries on a cursor of its own of the process's
    database, opened by its first query and kept for the next until the task attempt ends (a
    task makes dozens of queries); each query sees only the tables handed to it (registered
    on the cursor, or its temporary views: no other cursor sees them).

    Known DuckDB 2.0 trap: a ``LIMIT`` over a ``UNION ALL`` of window-function CTEs on
    registered Arrow tables never returns; callers sample results in Arrow instead.
    """

    def __init__(self, threads: int = THREADS, memory_limit: str = MEMORY_LIMIT) -> None:
        self._config: dict[str, str | int] = {"threads": threads, "memory_limit": memory_limit}
        self._key = tuple(sorted(self._config.items()))  # its connection in a thread's ones

    def query(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        """Run ``sql`` with each Arrow table of ``tables`` visible under its name and each
        value of ``params`` bound to ``$name`` (values are never pasted into SQL text)."""
        sessions = _thread_sessions()
        session = sessions.get(self._key)
        if session is None:
            session = sessions[self._key] = _Session(self._config)
        try:
            return session.query(sql, tables, params)
        except EngineError:
            del sessions[self._key]  # a failed query leaves nothing behind for the next one
            session.close()
            raise


class _Session(_InProcess):
    """Queries on one connection, opened when first needed; not for two threads at once."""

    def __init__(self, config: Mapping[str, str | int]) -> None:
        self._config = dict(config)
        self._open: duckdb.DuckDBPyConnection | None = None
        # the lake scans DuckDB reads from their files, as the cursor's own (temporary) views
        # kept for the session's next queries (a task hands the same scans to many)
        self._views: dict[str, pads.Dataset] = {}

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        if self._open is None:
            self._open = _database(self._config).cursor()
        return self._open

    def close(self) -> None:
        if self._open is not None:
            self._open.close()

    def query(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        import duckdb

        registered: list[str] = []
        try:
            for name, relation in (tables or {}).items():
                files = local_parquet(relation)  # None but for a lake scan
                if files is not None:
                    if self._views.get(name) is not relation:
                        view = f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS "
                        self._con.execute(view + self._parquet(relation, files))
                        self._views[name] = relation
                    continue
                if self._views.pop(name, None) is not None:
                    self._con.execute(f"DROP VIEW {quote(name)}")
                self._con.register(name, relation)
                registered.append(name)
            return _collect(self._con.sql(sql, params=dict(params) if params else None))
        except duckdb.OutOfMemoryException as exc:
            raise EngineMemoryError(f"query ran out of memory: {one_line(exc)}") from exc
        except duckdb.Error as exc:
            raise EngineError(f"query failed: {one_line(exc)}") from exc
        finally:
            for name in registered:
                self._con.unregister(name)

    def _parquet(self, dataset: pads.Dataset, files: LocalFiles) -> str:
        """A query of a lake table's Parquet files read by DuckDB itself, typed as the
        table's schema (a file written before a column was added reads it as NULL; partition
        values come from the paths)."""
        columns = ", ".join(
            f"CAST({quote(n)} AS {t}) AS {quote(n)}" for n, t in self._types(dataset.schema)
        )
        paths = ", ".join(_text(path) for path in files.paths)
        partitioned = str(files.partitioned).lower()
        return (
            f"SELECT {columns} FROM read_parquet([{paths}], union_by_name = true, "
            f"hive_partitioning = {partitioned})"
        )

    def _types(self, schema: pa.Schema) -> list[tuple[str, str]]:
        """The DuckDB type of each column of ``schema``, as DuckDB reads an Arrow table (asked
        once per schema: a task's queries read the same few tables)."""
        known = _TYPES.get(schema)
        if known is None:
            self._con.register("_schema", schema.empty_table())
            try:
                described = self._con.sql("DESCRIBE _schema").fetchall()
            finally:
                self._con.unregister("_schema")
            known = _TYPES[schema] = [(row[0], row[1]) for row in described]
        return known


def _text(value: str) -> str:
    """``value`` as an SQL string literal (a file path: never a user's text)."""
    return "'" + value.replace("'", "''") + "'"


def _collect(result: duckdb.DuckDBPyRelation) -> pa.Table:
    """The result as Arrow, streamed out in batches: DuckDB never holds the whole result in
    its own memory (a table-sized result would count against ``memory_limit`` twice)."""
    return result.to_arrow_reader(_BATCH_ROWS).read_all()


_BATCH_ROWS = 1 << 20
_TYPES: dict[pa.Schema, list[tuple[str, str]]] = {}  # DuckDB's types of an Arrow schema
_THREAD = threading.local()  # each thread's DuckDB connections, by configuration
_FORKED: list[object] = []  # connections a forked child inherited: never touched, never closed


def release_thread_connections() -> None:
    """Close this thread's connections (at the end of each task attempt: the memory DuckDB
    keeps for a connection is given back as it was when each query had its own)."""
    for session in _thread_sessions().values():
        session.close()
    _THREAD.sessions = {}


at_attempt_end(release_thread_connections)


def _database(config: Mapping[str, str | int]) -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database of ``config``, opened by the first query that
    needs it and kept: a session queries on a cursor of it (about 0.4 ms to open, where a
    database of its own costs 12-25 ms, paid by every task attempt), so the threads and the
    memory limit are the process's, shared by the tasks running side by side. A process
    forked from one with it open opens its own (DuckDB's threads did not come along)."""
    import duckdb

    key = (os.getpid(), *sorted(config.items()))
    with _DATABASE_LOCK:
        database = _DATABASES.get(key)
        if database is None:
            database = _DATABASES[key] = duckdb.connect(config=dict(config))
        return database


_DATABASES: dict[tuple[Any, ...], duckdb.DuckDBPyConnection] = {}  # by process and config
_DATABASE_LOCK = threading.Lock()


def _thread_sessions() -> dict[tuple[Any, ...], _Session]:
    """This thread's connections; a process forked from one with connections open starts
    afresh (DuckDB's threads did not come along), leaving the inherited ones alone."""
    pid = os.getpid()
    if getattr(_THREAD, "pid", pid) != pid:
        _FORKED.append(_THREAD.sessions)
        del _THREAD.sessions
    _THREAD.pid = pid
    sessions: dict[tuple[Any, ...], _Session] = _THREAD.__dict__.setdefault("sessions", {})
    return sessions


def partition_to_files(
    rows: pa.RecordBatchReader | pa.Table, by: str, parts: int, folder: Path
) -> list[list[Path]]:
    """Stream ``rows`` (alias ``b``) into ``parts`` groups of Parquet files under ``folder``
    by ``by`` (an SQL hash expression), so that each group can later be read alone: memory
    stays bounded by DuckDB's limit whatever the size of ``rows``. The files of each group."""
    import duckdb

    con = duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY_LIMIT})
    target = str(folder).replace("'", "''")
    try:
        con.register("rows", rows)
        con.execute(
            f"COPY (SELECT b.*, ({by}) % {int(parts)} AS _part FROM rows b) TO '{target}' "
            "(FORMAT parquet, PARTITION_BY (_part))"
        )
    except duckdb.Error as exc:
        raise EngineError(f"partitioning failed: {one_line(exc)}") from exc
    finally:
        con.close()
    return [sorted((folder / f"_part={p}").glob("*.parquet")) for p in range(parts)]


_READ_ONLY = {"enable_external_access": False, "lock_configuration": True}
_ALLOWED = ("SELECT", "EXPLAIN")  # the statement types (by name) a user's query may be


def query_read_only(sql: str, tables: Mapping[str, Relation]) -> pa.Table:
    """Run one user SELECT over ``tables`` and nothing else: no file, network or extension
    access (``enable_external_access`` off), configuration locked, and any statement that is
    not a single SELECT (DDL, DML, COPY, ATTACH, SET, PRAGMA, INSTALL/LOAD, CALL) refused."""
    import duckdb

    con = duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY_LIMIT})
    try:
        for name, table in tables.items():
            con.register(name, table)
        for key, value in _READ_ONLY.items():  # after registering: locked from here on
            con.execute(f"SET {key} = {str(value).lower()}")
        statements = con.extract_statements(sql)
        if len(statements) != 1 or statements[0].type.name not in _ALLOWED:
            kinds = ", ".join(s.type.name for s in statements) or "nothing"
            raise ReadOnlyError(
                f"only one SELECT statement can run on the lake (got {kinds}); "
                "the lake is read-only here"
            )
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise EngineError(f"query failed: {one_line(exc)}") from exc
    finally:
        con.close()


@cache
def default_engine() -> Engine:
    return DuckDBEngine()


def engine_for(settings: Settings) -> Engine:
    """The engine the settings name: DuckDB in this process, or a Spark Connect server."""
    if settings.engine == "spark":
        return _spark_engine(settings.spark_connect_url, Lake.from_settings(settings))
    return default_engine()


_SPARK_ENGINES: dict[tuple[str, str], SparkEngine] = {}  # by server and lake


def _spark_engine(url: str, lake: Lake) -> Engine:
    from medallion.spark_engine import SparkEngine  # pyspark only when asked for

    if (url, lake.uri) not in _SPARK_ENGINES:
        _SPARK_ENGINES[url, lake.uri] = SparkEngine(url, staging=lake)
    return _SPARK_ENGINES[url, lake.uri]


def reach_engine(settings: Settings) -> str:
    """Reach the settings' engine now (a Spark server that is not there fails here in one
    line, before any task) and say what it is."""
    if settings.engine == "spark":
        from medallion.spark_engine import SparkEngine

        engine = engine_for(settings)
        assert isinstance(engine, SparkEngine)
        return engine.describe()
    import duckdb

    return f"DuckDB {duckdb.__version__}"


def close_engines() -> None:
    """End the sessions of every Spark engine opened (before its server goes away)."""
    while _SPARK_ENGINES:
        _SPARK_ENGINES.popitem()[1].close()
