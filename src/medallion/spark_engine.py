"""The Spark Connect engine: the SQL the DuckDB engine runs, transpiled once by sqlglot and run
on a Spark Connect server (a Spark 4 cluster, or LakeSail's Sail), the only pyspark user.

One definition of every transformation: callers write DuckDB SQL; :func:`to_spark_sql` is the
whole difference. Lake tables handed in as lazy scans are read by the server itself from the
lake (``format("delta")`` by URI and version), Arrow tables (keys, small change sets) are sent
with the query or, when large, staged in the lake.

Small answers come back as Arrow. A result that may be as large as a table never does
(:meth:`SparkEngine.keep`): the server writes it as Parquet files into the lake, in the folder
of the table it is meant for, and this process commits those files to the Delta log itself
(:meth:`DeltaHandle.adopt`, reading only their footers). The commit carries the app
transactions and is checked against the table's schema here, so idempotent commits and schema
enforcement do not depend on the server (Sail ignores Delta's ``txnAppId`` and nulls wrongly
typed values on append). A MERGE is a copy-on-write the server computes
(:func:`~medallion.merge_sql.merged_sql`): the table's new content, committed as an overwrite in one
commit; one that only inserts appends the new rows.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as pads
import sqlglot
from sqlglot import exp

from medallion.errors import EngineError
from medallion.merge_sql import expressible, inserted_sql, merge_counts_sql, merged_sql
from medallion.remembered import Remembered
from medallion.storage import (
    AppendedFiles,
    DeltaHandle,
    Lake,
    MergePlan,
    MergeResult,
    appended_files,
    join_uri,
    nullable,
    scan_location,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# what a query reads, as medallion.engine names it (which this module must not import)
Relation: TypeAlias = "pa.Table | pads.Dataset"

CONNECT_TIMEOUT_S = 5.0
INLINE_BYTES = 32 << 20  # larger inputs are staged in the lake, not sent with the query
STAGING_LAYER = "_spark_staging"
KEPT_PREFIX = "kept-"  # the folder, in a table's folder, of a result the server wrote there


@lru_cache(maxsize=1024)
def to_spark_sql(sql: str) -> str:
    """``sql`` (DuckDB's dialect) in Spark's, with the few rewrites sqlglot does not make."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise EngineError(f"query cannot be read: {' '.join(str(exc).split())[:300]}") from exc
    return _portable(tree).sql(dialect="spark")


def _portable(tree: exp.Expr) -> exp.Expr:
    """``tree`` with each DuckDB construct that has an exact Spark equivalent sqlglot does not
    produce rewritten, children before their parents (so a rewrite inside a rewrite applies).
    ``AS MATERIALIZED`` (a hint to DuckDB's planner) has no Spark syntax and goes."""
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)
    for node in reversed(list(tree.walk(bfs=False))):
        rewritten = _rewrite(node)
        if rewritten is not node:
            if node is tree:
                tree = rewritten
            else:
                node.replace(rewritten)
    return tree


def _rewrite(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
        return exp.DataType.build("DECIMAL(38, 0)")  # HUGEINT: sums of 64-bit hashes
    if isinstance(node, exp.RegexpFullMatch):
        anchored = exp.Concat(
            expressions=[exp.Literal.string("^(?:"), node.expression, exp.Literal.string(")$")]
        )
        return exp.RegexpLike(this=node.this, expression=anchored)
    if isinstance(node, exp.TimeToUnix):
        return _epoch_seconds(node)
    if isinstance(node, exp.Cast) and _hex_digits(node.this) is not None:
        return _from_hex(node)
    if isinstance(node, exp.Anonymous):
        return _rewrite_call(node)
    return node


def _rewrite_call(node: exp.Anonymous) -> exp.Expr:
    name = node.name.lower()
    if name == "strip_accents":
        return _strip_accents(node)
    if name == "epoch_us":
        # DuckDB's epoch_us(ts) is Spark's unix_micros(ts) (the session time zone is UTC);
        # no form both run exists: Sail's datediff has no MICROSECOND unit
        return exp.Anonymous(this="UNIX_MICROS", expressions=node.expressions)
    return node


def _strip_accents(node: exp.Anonymous) -> exp.Expression:
    """DuckDB's ``strip_accents(s)`` (every combining mark of the canonical decomposition
    removed) as Spark's ``translate``, over a table of every code point it changes."""
    source, target = _accent_table()
    text = node.expressions[0]
    return exp.Anonymous(
        this="TRANSLATE",
        expressions=[text, exp.Literal.string(source), exp.Literal.string(target)],
    )


@lru_cache(maxsize=1)
def _accent_table() -> tuple[str, str]:
    """(from, to) for ``translate``: each code point whose decomposition carries marks maps to
    its base character; marks themselves come last in ``from``, with no ``to``: deleted."""
    import unicodedata

    mapped, bases, marks = [], [], []
    for code in range(0x80, 0x30000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        decomposed = unicodedata.normalize("NFD", char)
        kept = "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))
        base = unicodedata.normalize("NFC", kept)
        if base == char:
            continue
        if base == "":
            marks.append(char)
        elif len(base) == 1:
            mapped.append(char)
            bases.append(base)
    return "".join(mapped + marks), "".join(bases)


def _hex_digits(node: exp.Expr) -> exp.Expr | None:
    """The digits of ``'0x' || digits``, a hexadecimal text, else None."""
    if not isinstance(node, exp.DPipe):
        return None
    prefix = node.this
    hexadecimal = isinstance(prefix, exp.Literal) and prefix.is_string and prefix.name == "0x"
    digits: exp.Expr | None = node.expression if hexadecimal else None
    return digits


def _from_hex(node: exp.Cast) -> exp.Expression:
    """DuckDB's ``CAST('0x' || digits AS BIGINT)`` (it reads hexadecimal text) as Spark's
    ``CAST(conv(digits, 16, 10) AS BIGINT)``; both hold 15 digits (Sail's ``conv`` is signed:
    16 digits of which the first is 8 or more give NULL). The checks' key hash."""
    digits = _hex_digits(node.this)
    conv = exp.Anonymous(
        this="CONV", expressions=[digits, exp.Literal.number(16), exp.Literal.number(10)]
    )
    cast = node.copy()
    cast.set("this", conv)
    return cast


def _epoch_seconds(node: exp.TimeToUnix) -> exp.Expression:
    """DuckDB's ``epoch(ts)``: seconds since 1970 as a DOUBLE, the microseconds its fraction.
    sqlglot writes ``unix_timestamp(ts)``, whole seconds (a BIGINT); ``unix_micros(ts) /
    1000000`` is the same double (an integer ``/`` in Spark is a double division)."""
    micros = exp.Anonymous(this="unix_micros", expressions=[node.this])
    return exp.Paren(this=exp.Div(this=micros, expression=exp.Literal.number(1000000)))


@dataclass
class Wire:
    """The largest row sets that crossed the wire between this process and the server,
    both ways (what a test of "only counts, versions and samples cross" looks at)."""

    answers: tuple[int, str] = (0, "")  # rows of the largest answer, and its query
    uploads: tuple[int, str] = (0, "")  # rows of the largest Arrow input sent, its columns
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, way: str, rows: int, what: str) -> None:
        with self._lock:
            if rows > getattr(self, way)[0]:
                setattr(self, way, (rows, " ".join(what.split())[:200]))


class SparkEngine:
    """Queries on a Spark Connect server; one Spark session per thread (temporary views are
    per session, so two tasks never see each other's inputs)."""

    in_process = False
    dialect = "spark"

    def __init__(self, remote: str, staging: Lake | None = None) -> None:
        self.remote = remote
        self.staging = staging  # where inputs too large to send are staged
        self._local = threading.local()
        self._opened: list[SparkSession] = []
        self._lock = threading.Lock()
        self.wire = Wire()

    def _session(self) -> SparkSession:
        spark: SparkSession | None = getattr(self._local, "spark", None)
        if spark is None:
            spark = connect(self.remote)
            self._local.spark = spark
            with self._lock:
                self._opened.append(spark)
        return spark

    def query(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        spark = self._session()
        text = to_spark_sql(sql)
        names = list(tables or {})
        staged: list[DeltaHandle] = []
        try:
            for name in names:
                frame = self._frame(spark, (tables or {})[name], staged)
                frame.createOrReplaceTempView(name)
            answer = spark.sql(text, args=_args(params)).toArrow()
            self.wire.note("answers", answer.num_rows, sql)
            return answer
        except EngineError:
            raise
        except Exception as exc:  # pyspark's errors share no base class worth naming
            raise EngineError(f"Spark query failed: {_one_line(exc)}") from exc
        finally:
            _drop_views(spark, names)
            for handle in staged:
                handle.drop()

    def _frame(
        self, spark: SparkSession, relation: Relation, staged: list[DeltaHandle]
    ) -> DataFrame:
        """The relation as a Spark frame: a lake table read by the server from the lake; a
        small Arrow table sent with the query; a large one staged in the lake for the server
        to read (a Spark Connect message holds 128 MiB at most), dropped after the query."""
        if isinstance(relation, pads.Dataset):
            kept = kept_result(relation)
            if kept is not None:
                return _read_kept(spark, kept)
            appended = appended_files(relation)
            if appended is not None:
                return _read_appended(spark, appended)
            location = scan_location(relation)
            if location is not None:
                uri, version = location
                reader = spark.read.format("delta").option("versionAsOf", version)
                # Sail's default log replay takes a column a file holds one value of from the
                # file's JSON statistics, parsed a bit off for some doubles (-46.767180684564956
                # reads -46.76718068456496); replaying the log as data reads them exactly
                return reader.option("metadataAsDataRead", "true").load(uri)
            relation = relation.to_table()
        table = relation.cast(_plain_schema(relation.schema))
        self.wire.note("uploads", table.num_rows, ", ".join(table.column_names))
        if self.staging is None or table.nbytes <= INLINE_BYTES:
            return _upload(spark, table)
        from pyspark.sql import functions

        # Delta has no NULL type: such columns are left out and put back as NULL literals,
        # a NULL type inside a list or struct is stored as text
        nulls = {f.name for f in table.schema if pa.types.is_null(f.type)}
        handle = self.staging.table(STAGING_LAYER, uuid.uuid4().hex)
        staged.append(handle)
        stored = table.drop_columns(list(nulls))
        stored = stored.cast(pa.schema([f.with_type(_storable(f.type)) for f in stored.schema]))
        handle.overwrite(stored, transactions={}, metadata={"step": "spark staging"})
        frame = spark.read.format("delta").load(handle.uri)
        if not nulls:
            return frame
        return frame.select(
            *(functions.lit(None).alias(c) if c in nulls else c for c in table.column_names)
        )

    def keep(
        self,
        sql: str,
        tables: Mapping[str, Relation] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        near: DeltaHandle | None = None,
    ) -> Relation:
        """The result written by the server as Parquet files in a new folder of ``near``'s
        folder (else of the lake's staging area), as a lazy dataset over them: nothing but
        its schema and the file list reaches this process. Later queries read it on the
        server; :meth:`overwrite` commits it to ``near`` as it lies."""
        home = near if near is not None else self._staging_area()
        folder = f"{KEPT_PREFIX}{uuid.uuid4().hex}"
        spark = self._session()
        names = list(tables or {})
        staged: list[DeltaHandle] = []
        try:
            for name in names:
                self._frame(spark, (tables or {})[name], staged).createOrReplaceTempView(name)
            frame = spark.sql(to_spark_sql(sql), args=_args(params))
            schema = _arrow_schema(frame)
            frame.write.mode("overwrite").parquet(join_uri(home.uri, folder))
        except EngineError:
            raise
        except Exception as exc:  # pyspark's errors share no base class worth naming
            home.discard(folder)
            raise EngineError(f"Spark query failed: {_one_line(exc)}") from exc
        finally:
            _drop_views(spark, names)
            for handle in staged:
                handle.drop()
        return _remember_kept(Kept(home, folder, home.files_under(folder), schema))

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
        """A result kept near ``target`` is committed as it lies (files the server wrote, as
        it laid them out); another is first written there by the server (Arrow rows already
        here are written by delta-rs, laid out for lookups by ``key``)."""
        if isinstance(data, pa.Table):
            return target.overwrite(
                data,
                transactions=transactions,
                metadata=metadata,
                configuration=configuration,
                key=key,
            )
        kept = self._kept_near(target, data)
        return target.adopt(
            kept.files,
            kept.schema,
            mode="overwrite",
            transactions=transactions,
            metadata=metadata,
            configuration=configuration,
        )

    def _kept_near(self, target: DeltaHandle, data: pads.Dataset) -> Kept:
        """``data`` as files in ``target``'s folder: a result kept there as it is, another
        written there by the server first."""
        kept = kept_result(data)
        if kept is None or kept.home.uri != target.uri:
            moved = self.keep("SELECT * FROM data", {"data": data}, near=target)
            kept = kept_result(moved)
            assert kept is not None
        return kept

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
        """A result kept near ``target`` is committed as new rows as its files lie, after the
        check of ``expected`` :meth:`DeltaHandle.append` makes (Arrow rows already here are
        appended by delta-rs, laid out for lookups by ``key``). Committing files does not
        change the table's schema, so with ``evolve_schema`` a column the table lacks is
        first added by an empty append."""
        if isinstance(data, pa.Table):
            return target.append(
                data,
                transactions=transactions,
                expected=expected,
                metadata=metadata,
                evolve_schema=evolve_schema,
                key=key,
            )
        kept = self._kept_near(target, data)
        target.expect(expected)
        current = target.schema
        if evolve_schema and current is not None and set(kept.schema.names) - set(current.names):
            empty = nullable(kept.schema).empty_table()
            target.append(
                empty, transactions={}, expected={}, metadata=metadata, evolve_schema=True
            )
        return target.adopt(
            kept.files, kept.schema, mode="append", transactions=transactions, metadata=metadata
        )

    def discard(self, relation: Relation) -> None:
        """Delete the folder :meth:`keep` wrote ``relation`` into (any other relation: no-op);
        never a result a commit took, whose files the table now holds."""
        kept = kept_result(relation)
        if kept is not None:
            kept.home.discard(kept.folder)

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
        """The MERGE as a copy-on-write on the server: the table's new content
        (:func:`merged_sql`) written near it (laid out by the server: ``key`` is for files
        this process writes) and committed as an overwrite, with the counts
        delta-rs would report (counted whatever ``all_new`` says); no change commits only
        ``transactions``, inserts alone are appended."""
        schema = target.schema
        current = target.relation()
        if schema is None or current is None:
            raise EngineError(f"cannot merge into {target.uri}: no such table")
        inputs = {"t": current, "s": source}
        counted = self.query(merge_counts_sql(plan), inputs).to_pylist()[0]
        counts = {k: int(v or 0) for k, v in counted.items()}
        if counts["inserted"] + counts["updated"] + counts["deleted"] == 0:
            version = target.record(transactions, metadata)
            return MergeResult(version, counts["source_rows"], 0, 0, 0, 0, 0)
        if counts["updated"] + counts["deleted"] == 0 and expressible(schema):
            return self._append_inserts(
                target,
                source,
                plan,
                schema=schema,
                counts=counts,
                transactions=transactions,
                metadata=metadata,
            )
        files, _ = target.files()
        merged = self.keep(merged_sql(plan, schema), inputs, near=target)
        kept = kept_result(merged)
        assert kept is not None
        version = target.adopt(
            kept.files,
            kept.schema,
            mode="overwrite",
            transactions=transactions,
            metadata=metadata,
        )
        return MergeResult(
            version,
            counts["source_rows"],
            counts["inserted"],
            counts["updated"],
            counts["deleted"],
            len(kept.files),
            files,
        )

    def _append_inserts(
        self,
        target: DeltaHandle,
        source: Relation,
        plan: MergePlan,
        *,
        schema: pa.Schema,
        counts: Mapping[str, int],
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
    ) -> MergeResult:
        """A MERGE that only inserts: those rows written near ``target`` and committed as
        new files, the stored ones left as they are."""
        rows = self.keep(inserted_sql(plan, schema), {"s": source}, near=target)
        kept = kept_result(rows)
        assert kept is not None
        version = self.append(
            target, rows, transactions=transactions, expected={}, metadata=metadata
        )
        inserted = counts["inserted"]
        return MergeResult(version, counts["source_rows"], inserted, 0, 0, len(kept.files), 0)

    def hold(self, relation: Relation, columns: Sequence[str] | None = None) -> Relation:
        """``relation`` as it is: the server reads a lake table from the lake each time."""
        return relation

    def _staging_area(self) -> DeltaHandle:
        if self.staging is None:
            raise EngineError("the Spark engine keeps results in the lake; it was given none")
        return self.staging.table(STAGING_LAYER, "kept")

    def describe(self) -> str:
        """Which Spark serves this engine (opens the calling thread's session)."""
        return f"Spark {self._session().version}"

    def close(self) -> None:
        """End every session this engine opened (each thread opens its own)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for spark in opened:
            with contextlib.suppress(Exception):  # a server already gone ended them too
                spark.stop()
        self._local = threading.local()


def _drop_views(spark: SparkSession, names: list[str]) -> None:
    for name in names:
        try:
            spark.catalog.dropTempView(name)
        except Exception:  # the session is gone: its views went with it
            break


@dataclass(frozen=True)
class Kept:
    """A result the server wrote: Parquet ``files`` (paths relative to ``home``'s folder,
    sizes) in ``folder`` there, and its Arrow schema."""

    home: DeltaHandle
    folder: str
    files: list[tuple[str, int]]
    schema: pa.Schema


_KEPT: Remembered[pads.Dataset, Kept] = Remembered(kept=512)


def _remember_kept(kept: Kept) -> pads.Dataset:
    """A lazy dataset over the kept files (its schema given: an empty result has none)."""
    paths = [join_uri(kept.home.uri, path) for path, _ in kept.files]
    dataset = pads.dataset(paths, schema=nullable(kept.schema), format="parquet")
    _KEPT.add(dataset, kept)
    return dataset


def kept_result(dataset: pads.Dataset | pa.Table) -> Kept | None:
    """What :meth:`SparkEngine.keep` wrote for ``dataset``; None for any other relation."""
    return _KEPT.of(dataset)


def _read_kept(spark: SparkSession, kept: Kept) -> DataFrame:
    if kept.files:
        return spark.read.parquet(*(join_uri(kept.home.uri, path) for path, _ in kept.files))
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.createDataFrame(
        [], schema=from_arrow_schema(kept.schema, prefer_timestamp_ntz=True)
    )


def _read_appended(spark: SparkSession, appended: AppendedFiles) -> DataFrame:
    """The files of :meth:`DeltaHandle.appended`, read by the server by path, each group of
    files with the same partition values given those values as columns."""
    from pyspark.sql import functions
    from pyspark.sql.pandas.types import from_arrow_schema

    schema, partitions = appended.schema, appended.partitions
    whole = from_arrow_schema(_plain_schema(schema), prefer_timestamp_ntz=True)
    if not appended.files:
        return spark.createDataFrame([], schema=whole)
    stored = from_arrow_schema(
        _plain_schema(pa.schema([f for f in schema if f.name not in partitions])),
        prefer_timestamp_ntz=True,
    )
    groups: dict[tuple[str | None, ...], list[str]] = {}
    for path, values in appended.files:
        key = tuple(values.get(c) for c in partitions)
        groups.setdefault(key, []).append(join_uri(appended.uri, path))
    frames = []
    for key, paths in groups.items():
        frame = spark.read.schema(stored).parquet(*paths)
        for column, value in zip(partitions, key, strict=True):
            kind = whole[column].dataType
            frame = frame.withColumn(column, functions.lit(value).cast(kind))
        frames.append(frame.select(*schema.names))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _arrow_schema(frame: DataFrame) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema, prefers_large_types=False)


def _args(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _upload(spark: SparkSession, table: pa.Table) -> DataFrame:
    from pyspark.sql.pandas.types import from_arrow_schema

    # a naive timestamp stays naive (TIMESTAMP_NTZ), as DuckDB's TIMESTAMP is
    schema = from_arrow_schema(table.schema, prefer_timestamp_ntz=True)
    if table.num_rows == 0:
        return spark.createDataFrame([], schema=schema)
    return spark.createDataFrame(table, schema=schema)


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """Arrow types Spark's conversion takes: views and large variants as plain ones."""
    return pa.schema([f.with_type(_plain(f.type)) for f in schema])


def _storable(kind: pa.DataType) -> pa.DataType:
    """``kind`` with a NULL type nested in it (a list of NULLs) as text: Delta has none."""
    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_list(kind):
        return pa.list_(_storable(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_storable(f.type)) for f in kind])
    return kind


def _plain(kind: pa.DataType) -> pa.DataType:
    if kind in (pa.string_view(), pa.large_string()):
        return pa.string()
    if kind in (pa.binary_view(), pa.large_binary()):
        return pa.binary()
    if pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        return pa.list_(_plain(kind.value_type))
    if pa.types.is_list(kind):
        return pa.list_(_plain(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_plain(f.type)) for f in kind])
    return kind


def connect(remote: str, timeout_s: float = CONNECT_TIMEOUT_S) -> SparkSession:
    """A new Spark session on ``remote`` (``sc://host:port``), its version checked; one line
    when the server is unreachable or speaks another Spark. A dead server costs at most a few
    seconds: the address is probed first and the client's retries are cut short."""
    shown = _shown(remote)
    _probe(shown, timeout_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyspark on pandas 3; its retry warnings
        try:
            from pyspark.sql import SparkSession
            from pyspark.sql.connect.client.retries import DefaultPolicy
        except ImportError as exc:
            raise EngineError(
                "engine = 'spark' needs the spark extra: pip install 'medallion[spark]'"
            ) from exc
        try:
            spark = SparkSession.builder.remote(remote).create()
            spark.client.set_retry_policies(
                [DefaultPolicy(max_retries=4, initial_backoff=100, max_backoff=1000)]
            )
            version = spark.version
            spark.conf.set("spark.sql.session.timeZone", "UTC")
        except Exception as exc:
            raise EngineError(f"Spark Connect server {shown} failed: {_one_line(exc)}") from exc
    if not version.startswith("4."):
        spark.stop()
        raise EngineError(f"Spark Connect server {shown} runs Spark {version}; 4.x is needed")
    return spark


def _shown(remote: str) -> str:
    """The server's address without the client options (never the token)."""
    return remote.split("/;", 1)[0]


def _probe(remote: str, timeout_s: float) -> None:
    address = urlsplit(remote.replace("sc://", "tcp://", 1))
    host, port = address.hostname or "", address.port or 15002
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EngineError(f"Spark Connect server {remote} unreachable: {reason}") from None


def _one_line(exc: BaseException) -> str:
    """The server's message: gRPC's ``details`` rather than the whole RPC dump."""
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    text = text or getattr(exc, "getMessage", lambda: None)() or str(exc)
    return " ".join(str(text).split())[:400]
