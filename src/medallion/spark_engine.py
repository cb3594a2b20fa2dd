"""The Spark Connect engine: the SQL the DuckDB engine runs, transpiled once by sqlglot and run
on a Spark Connect server (a Spark 4 cluster, or LakeSail's Sail), the only pyspark user.

One definition of every transformation: callers write DuckDB SQL; :func:`to_spark_sql` is the
whole difference. Lake tables handed in as lazy scans are read by the server itself from the
lake (``format("delta")`` by URI and version), small Arrow tables (change sets, keys) are
uploaded, and results come back as Arrow.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads
import sqlglot
from sqlglot import exp

from medallion.errors import EngineError
from medallion.storage import scan_location

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from medallion.engine import Engine, Relation

_CLIENT = "4.2"  # the pyspark-client series this module is written against


@lru_cache(maxsize=1024)
def to_spark_sql(sql: str) -> str:
    """``sql`` (DuckDB's dialect) in Spark's, with the few rewrites sqlglot does not make."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise EngineError(f"query cannot be read: {' '.join(str(exc).split())[:300]}") from exc
    tree = tree.transform(_portable)
    return tree.sql(dialect="spark")


def _portable(node: exp.Expression) -> exp.Expression:
    """DuckDB constructs with an exact Spark equivalent sqlglot does not produce."""
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.INT128:
        return exp.DataType.build("DECIMAL(38, 0)")  # HUGEINT: sums of 64-bit hashes
    if isinstance(node, exp.RegexpFullMatch):
        value, pattern = node.this, node.expression
        anchored = exp.Concat(
            expressions=[exp.Literal.string("^(?:"), pattern, exp.Literal.string(")$")]
        )
        return exp.RegexpLike(this=value, expression=anchored)
    if isinstance(node, exp.TimeToUnix):
        return _epoch_seconds(node)
    return node


def _epoch_seconds(node: exp.TimeToUnix) -> exp.Expression:
    """DuckDB's ``epoch(ts)``: seconds since 1970 as a DOUBLE, the microseconds its fraction.
    sqlglot writes ``unix_timestamp(ts)``, whole seconds (a BIGINT); ``unix_micros(ts) /
    1000000`` is the same double (an integer ``/`` in Spark is a double division)."""
    micros = exp.Anonymous(this="unix_micros", expressions=[node.this])
    return exp.Paren(this=exp.Div(this=micros, expression=exp.Literal.number(1000000)))


class SparkEngine:
    """Queries on a Spark Connect server; one Spark session per thread (temporary views are
    per session, so two tasks never see each other's inputs)."""

    def __init__(self, remote: str, *, timeout_s: float = 30.0) -> None:
        self.remote = remote
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _session(self) -> SparkSession:
        spark: SparkSession | None = getattr(self._local, "spark", None)
        if spark is None:
            spark = connect(self.remote)
            self._local.spark = spark
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
        try:
            for name in names:
                _frame(spark, (tables or {})[name]).createOrReplaceTempView(name)
            frame = spark.sql(text, args=_args(params))
            return frame.toArrow()
        except EngineError:
            raise
        except Exception as exc:  # pyspark's errors share no base class worth naming
            raise EngineError(f"Spark query failed: {_one_line(exc)}") from exc
        finally:
            for name in names:
                try:
                    spark.catalog.dropTempView(name)
                except Exception:  # the session is gone: its views went with it
                    break

    @contextmanager
    def session(self) -> Iterator[Engine]:
        yield self

    def stop(self) -> None:
        spark = getattr(self._local, "spark", None)
        if spark is not None:
            spark.stop()
            self._local.spark = None


def _args(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _frame(spark: SparkSession, relation: Relation) -> DataFrame:
    """The relation as a Spark frame: a lake table read by the server from the lake, an Arrow
    table uploaded."""
    if isinstance(relation, pads.Dataset):
        location = scan_location(relation)
        if location is not None:
            uri, version = location
            return spark.read.format("delta").option("versionAsOf", version).load(uri)
        relation = relation.to_table()
    return _upload(spark, relation)


def _upload(spark: SparkSession, table: pa.Table) -> DataFrame:
    from pyspark.sql.pandas.types import from_arrow_schema

    table = table.cast(_plain_schema(table.schema))
    if table.num_rows == 0:
        return spark.createDataFrame([], schema=from_arrow_schema(table.schema))
    return spark.createDataFrame(table)


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """Arrow types Spark's conversion takes: views and large variants as plain ones."""
    return pa.schema([f.with_type(_plain(f.type)) for f in schema])


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


def connect(remote: str) -> SparkSession:
    """A new Spark session on ``remote`` (``sc://host:port``), its version checked; one line
    when the server is unreachable or speaks another Spark."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark on pandas 3
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise EngineError(
                "engine = 'spark' needs the spark extra: pip install 'medallion[spark]'"
            ) from exc
        try:
            spark = SparkSession.builder.remote(remote).create()
            version = spark.version
            spark.conf.set("spark.sql.session.timeZone", "UTC")
        except Exception as exc:
            raise EngineError(
                f"Spark Connect server {remote} unreachable: {_one_line(exc)}"
            ) from exc
    if not version.startswith(("4.", "3.5")):
        spark.stop()
        raise EngineError(f"Spark Connect server {remote} runs Spark {version}; 4.x is needed")
    return spark


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "getMessage", lambda: None)() or str(exc)
    return " ".join(str(text).split())[:400]
