"""The Spark engine against a real Spark Connect server (Sail): the same answers as DuckDB,
lake tables read by the server from the lake at the version asked for, and one line for a
server that is not there."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from medallion import spark_engine
from medallion.engine import DuckDBEngine
from medallion.errors import EngineError
from medallion.local_servers import free_port
from medallion.spark_engine import SparkEngine, connect
from medallion.storage import Lake, scan_location

ROWS = pa.table(
    {
        "k": pa.array(["a", "b", "c", None], pa.string_view()),
        "v": pa.array([3, 1, 2, 5], pa.int64()),
        "z": ["01234", "1234", "x1234", None],
        "ts": pa.array([0, 1, None, 3], pa.timestamp("us")),
        "utc": pa.array([0, 1, None, 3], pa.timestamp("us", "UTC")),
    }
)
QUERIES = [
    "SELECT k, v * 2 AS w FROM t WHERE v > $low ORDER BY v",
    "SELECT count(*) AS n, sum(hash(k)::HUGEINT) IS NOT NULL AS hashed FROM t",
    "SELECT k, regexp_full_match(z, '[0-9]{5}') AS ok FROM t ORDER BY k NULLS LAST",
    "SELECT k, row_number() OVER (ORDER BY v DESC) AS r FROM t ORDER BY r",
    "SELECT ts, ts + INTERVAL 1 DAY AS later, utc FROM t ORDER BY v",
]


@pytest.fixture(scope="module")
def engine(spark_local: str) -> Iterator[SparkEngine]:
    engine = SparkEngine(spark_local)
    yield engine
    engine.close()


@pytest.mark.parametrize("sql", QUERIES)
def test_answers_equal_duckdb(engine: SparkEngine, sql: str) -> None:
    tables = {"t": ROWS}
    params = {"low": 1} if "$low" in sql else None
    expected = DuckDBEngine().query(sql, tables, params)
    got = engine.query(sql, tables, params)
    assert got.to_pylist() == expected.to_pylist()
    for want, have in zip(expected.schema, got.schema, strict=True):  # naive stays naive
        assert (getattr(have.type, "tz", None) is None) == (getattr(want.type, "tz", None) is None)


def test_an_empty_table_keeps_its_shape(engine: SparkEngine) -> None:
    got = engine.query("SELECT k, v FROM t", {"t": ROWS.slice(0, 0)})
    assert got.num_rows == 0 and got.column_names == ["k", "v"]


def test_a_lake_table_is_read_by_the_server_at_its_version(
    engine: SparkEngine, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    table = lake.table("silver", "t")
    table.overwrite(pa.table({"k": ["a", "b"]}), transactions={}, metadata={})
    table.overwrite(pa.table({"k": ["c"]}), transactions={}, metadata={})
    first = lake.table("silver", "t").relation(version=0)
    assert first is not None and scan_location(first) == (table.uri, 0)
    got = engine.query("SELECT k FROM t ORDER BY k", {"t": first})
    assert got.column("k").to_pylist() == ["a", "b"]  # version 0, read by the server


def test_query_errors_are_one_line(engine: SparkEngine) -> None:
    with pytest.raises(EngineError, match=r"^Spark query failed: ") as caught:
        engine.query("SELECT no_such_column FROM t", {"t": ROWS})
    assert "\n" not in str(caught.value)


def test_a_dead_server_is_one_line_within_seconds() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(EngineError, match=f"127.0.0.1:{port} unreachable: Connection refused$"):
        connect(f"sc://127.0.0.1:{port}")
    assert time.monotonic() - started < 10


def test_the_server_command_starts_and_stops_sail(tmp_path: Path) -> None:
    port = free_port()
    args = [sys.executable, "-m", "medallion", "spark", "server", "--port", str(port)]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline() if server.stdout else ""
        assert f"on sc://127.0.0.1:{port}" in first
        spark = connect(f"sc://127.0.0.1:{port}")
        assert spark.version.startswith("4.")
        spark.stop()
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "Spark server stopped" in out


def test_a_large_input_is_staged_in_the_lake_and_dropped(
    spark_local: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_engine, "INLINE_BYTES", 0)  # every input counts as large
    lake = Lake(str(tmp_path / "lake"))
    engine = SparkEngine(spark_local, staging=lake)
    rows = ROWS.append_column("nothing", pa.nulls(ROWS.num_rows))  # Delta has no NULL type
    rows = rows.append_column("none", pa.array([[], [None], None, []], pa.list_(pa.null())))
    sql = "SELECT k, v, nothing, array_length(none) AS n, ts FROM t WHERE v > $low ORDER BY v"
    try:
        got = engine.query(sql, {"t": rows}, {"low": 1})
    finally:
        engine.close()
    assert got.to_pylist() == DuckDBEngine().query(sql, {"t": rows}, {"low": 1}).to_pylist()
    staged = tmp_path / "lake" / spark_engine.STAGING_LAYER
    assert staged.is_dir() and not [p for p in staged.rglob("*") if p.is_file()]
