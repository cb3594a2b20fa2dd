"""The Spark engine against a real Spark Connect server (Sail): the same answers as DuckDB,
lake tables read by the server from the lake at the version asked for, and one line for a
server that is not there."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from medallion import spark_engine
from medallion.engine import DuckDBEngine, rows_in
from medallion.errors import EngineError
from medallion.local_servers import free_port
from medallion.spark_engine import SparkEngine, Wire, connect
from medallion.storage import Lake, MergePlan, scan_location

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


KEYED = pa.table(
    {
        "k": pa.array([1, 2, 3], pa.int64()),
        "v": ["a", "b", None],
        "day": pa.array([date(2018, 1, 1), date(2018, 1, 2), date(2018, 1, 3)]),
        "ts": pa.array([0, 1, None], pa.timestamp("us")),
        "money": pa.array([Decimal("1.50"), None, Decimal("2.25")], pa.decimal128(18, 2)),
    }
)
PLAN = MergePlan(
    keys=("k",),
    matched_deletes=("s.gone",),
    matched_updates=(("NOT s.gone", {c: f"s.{c}" for c in KEYED.column_names}),),
    not_matched_inserts=(("NOT s.gone", {c: f"s.{c}" for c in KEYED.column_names}),),
)


def _through(engine: Any, lake: Lake) -> tuple[pa.Table, list[int], Any]:
    """A result kept near a new table, committed, then merged into twice (the second time
    nothing changes); the table, its versions and the first merge's result."""
    table = lake.table("gold", "t")
    kept = engine.keep("SELECT * FROM rows WHERE k > 0", {"rows": KEYED}, near=table)
    assert rows_in(kept) == 3
    versions = [engine.overwrite(table, kept, transactions={"app": 1}, metadata={}, **CDF_ON)]
    change = KEYED.slice(1).append_column("gone", pa.array([True, False]))
    change = change.set_column(1, "v", pa.array(["B", "C"]))
    change = pa.concat_tables([change, change.slice(0, 0)])
    extra = pa.table({**{c: KEYED[c].slice(0, 1) for c in KEYED.column_names}})
    extra = extra.set_column(0, "k", pa.array([9], pa.int64())).append_column(
        "gone", pa.array([False])
    )
    source = pa.concat_tables([change, extra])
    merged = engine.merge(table, source, PLAN, transactions={"app": 2}, metadata={"step": "m"})
    versions.append(merged.version)
    again = engine.merge(table, extra, PLAN, transactions={"app": 3}, metadata={"step": "n"})
    versions.append(again.version)
    assert (again.inserted, again.updated, again.deleted) == (0, 1, 0)
    stored = table.read()
    assert stored is not None and table.app_version("app") == 3
    return stored.sort_by("k"), versions, merged


CDF_ON = {"configuration": {"delta.enableChangeDataFeed": "true"}}


def test_kept_results_are_committed_and_merged_on_the_server_as_duckdb_does(
    engine: SparkEngine, tmp_path: Path
) -> None:
    spark_lake, duck_lake = Lake(str(tmp_path / "spark")), Lake(str(tmp_path / "duck"))
    engine.staging = spark_lake
    got, versions, merged = _through(engine, spark_lake)
    expected, duck_versions, duck_merged = _through(DuckDBEngine(), duck_lake)
    assert got.to_pylist() == expected.to_pylist()
    assert got.schema == expected.schema  # nullable, naive timestamps, the same decimals
    assert versions == duck_versions == [0, 1, 2]
    assert (merged.inserted, merged.updated, merged.deleted) == (1, 1, 1)
    assert (duck_merged.inserted, duck_merged.updated, duck_merged.deleted) == (1, 1, 1)
    table = spark_lake.table("gold", "t")
    assert table.row_count() == 3 and table.value_range("k") == (1, 9)
    assert table.value_range("day") == (date(2018, 1, 1), date(2018, 1, 3))
    commit = table.data_commit()
    assert commit is not None and commit["step"] == "n"  # our metadata, in the same commit


def test_a_merge_of_new_keys_only_appends_them_on_the_server_as_duckdb_does(
    engine: SparkEngine, tmp_path: Path
) -> None:
    """No source key is stored: the rows the MERGE inserts are appended (no stored file is
    rewritten), counted as delta-rs counts them, in a commit recording the transaction whose
    change feed holds just those rows."""
    fresh = KEYED.set_column(0, "k", pa.array([7, 8, 9], pa.int64()))
    fresh = fresh.append_column("gone", pa.array([False, True, False]))  # 8: not inserted
    seen = {}
    for name, merging in (("spark", engine), ("duck", DuckDBEngine())):
        lake = Lake(str(tmp_path / name))
        engine.staging = lake
        table = lake.table("gold", "t")
        before = merging.overwrite(table, KEYED, transactions={"app": 1}, metadata={}, **CDF_ON)
        merged = merging.merge(table, fresh, PLAN, transactions={"app": 2}, metadata={})
        stored, commit = table.read(), table.data_commit()
        changes, _ = table.changes(before, with_change_type=True)
        assert stored is not None and commit is not None and changes is not None
        seen[name] = (
            (merged.source_rows, merged.inserted, merged.updated, merged.deleted),
            merged.files_removed,
            stored.sort_by("k")["k"].to_pylist(),
            commit["operation"],
            table.app_version("app"),
            sorted(zip(changes["k"].to_pylist(), changes["_change_type"].to_pylist(), strict=True)),
        )
    assert seen["spark"] == seen["duck"]
    assert seen["duck"] == (
        (3, 2, 0, 0),
        0,
        [1, 2, 3, 7, 9],
        "WRITE",
        2,
        [(7, "insert"), (9, "insert")],
    )


def test_an_empty_result_is_kept_with_its_shape_and_commits_an_empty_table(
    engine: SparkEngine, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    engine.staging = lake
    table = lake.table("gold", "empty")
    kept = engine.keep("SELECT k, v, ts FROM rows WHERE k < 0", {"rows": KEYED}, near=table)
    assert rows_in(kept) == 0
    version = engine.overwrite(table, kept, transactions={"app": 1}, metadata={})
    stored = table.read()
    assert version == 0 and stored is not None and stored.num_rows == 0
    assert stored.column_names == ["k", "v", "ts"] and table.app_version("app") == 1
    counted = engine.query("SELECT count(*) AS n FROM kept", {"kept": kept})
    assert counted["n"].to_pylist() == [0]


def test_a_kept_result_is_read_by_the_server_without_passing_through(
    engine: SparkEngine, tmp_path: Path
) -> None:
    engine.staging = Lake(str(tmp_path / "lake"))
    engine.wire = Wire()
    kept = engine.keep("SELECT k, v FROM rows", {"rows": KEYED})
    assert engine.wire.answers == (0, "")  # nothing came back
    got = engine.query("SELECT count(*) AS n, max(k) AS top FROM kept", {"kept": kept})
    assert got.to_pylist() == [{"n": 3, "top": 3}]


def test_rows_appended_since_a_version_are_read_by_the_server_from_their_files(
    engine: SparkEngine, tmp_path: Path
) -> None:
    table = Lake(str(tmp_path / "lake")).table("bronze", "t")
    rows = KEYED.append_column("part", pa.array(["x", "y", None]))
    first = table.append(
        rows.slice(0, 1), partition_by=["part"], transactions={}, expected={}, metadata={}
    )
    table.append(rows.slice(1), partition_by=["part"], transactions={}, expected={}, metadata={})
    appended = table.appended(first)
    assert appended is not None
    engine.wire = Wire()
    sql = "SELECT k, v, day, ts, money, part FROM a ORDER BY k"
    got = engine.query(sql, {"a": appended})
    assert got.to_pylist() == DuckDBEngine().query(sql, {"a": appended}).to_pylist()
    assert got["part"].to_pylist() == ["y", None]
    assert engine.wire.uploads == (0, "")  # the server read the files: nothing was sent
