"""The Delta table handle: reading a change stream whose files are gone fails in one line."""

from __future__ import annotations

import random
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from medallion.errors import StorageError
from medallion.storage import CDF, DeltaHandle, Lake, appended_files, local_parquet


def test_a_change_stream_whose_files_are_gone_raises_a_storage_error(tmp_path: Path) -> None:
    handle = Lake(str(tmp_path / "lake")).table("silver", "t")
    rows = pa.table({"k": ["a", "b"]})
    handle.append(rows, transactions={}, expected={}, metadata={}, configuration=CDF)
    for data in (tmp_path / "lake" / "silver" / "t").glob("*.parquet"):
        data.unlink()  # as a vacuum with too short a retention would
    with pytest.raises(StorageError, match="read changes of"):
        reader, _ = handle.change_reader(None)
        assert reader is not None
        reader.read_all()


def test_a_dropped_table_is_gone_with_its_log(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    table = lake.table("_scratch", "t")
    table.overwrite(pa.table({"k": [1, 2]}), transactions={}, metadata={})
    table.drop()
    assert not lake.table("_scratch", "t").exists
    assert not any((tmp_path / "lake" / "_scratch" / "t").rglob("*.*"))
    lake.table("_scratch", "never").drop()  # nothing to drop: no error


ROWS = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", None]})


def test_files_of_another_shape_are_refused_before_an_append(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    table = lake.table("silver", "t")
    table.overwrite(ROWS, transactions={}, metadata={})
    folder = tmp_path / "lake" / "silver" / "t" / "kept-x"
    folder.mkdir()
    wrong = ROWS.set_column(0, "k", pa.array(["1", "2", "3"]))  # text where numbers are
    pq.write_table(wrong, folder / "part-0.parquet")
    files = table.files_under("kept-x")
    assert files == [("kept-x/part-0.parquet", (folder / "part-0.parquet").stat().st_size)]
    with pytest.raises(
        StorageError, match=r"its columns are k int64, v string, the rows. are k string"
    ):
        table.adopt(files, wrong.schema, mode="append", transactions={}, metadata={})
    assert table.version == 0 and table.read() == ROWS


def _append(table: Any, day: str, keys: list[int]) -> int:
    rows = pa.table(
        {
            "k": pa.array(keys, pa.int64()),
            "v": [f"v{k}" for k in keys],
            "day": pa.array([date.fromisoformat(day)] * len(keys)),
        }
    )
    return int(
        table.append(
            rows, partition_by=["day"], transactions={}, expected={}, metadata={"step": "t"}
        )
    )


def _rows(dataset: Any) -> list[tuple[Any, ...]]:
    data = dataset.to_table()
    return sorted(zip(*(data[c].to_pylist() for c in ("k", "v", "day")), strict=True))


def test_the_rows_appended_after_a_version_are_exactly_the_files_those_commits_added(
    tmp_path: Path,
) -> None:
    table = Lake(str(tmp_path)).table("bronze", "t")
    first = _append(table, "2018-01-01", [1, 2])
    _append(table, "2018-01-02", [3])
    table.compact(None, {"step": "maintain"})  # rewrites files, adds no row: skipped
    third = _append(table, "2018-01-02", [4, 5])
    since_first = table.appended(first)
    assert since_first is not None
    assert _rows(since_first) == [
        (3, "v3", date(2018, 1, 2)),
        (4, "v4", date(2018, 1, 2)),
        (5, "v5", date(2018, 1, 2)),
    ]  # partition values filled in from the log
    found = appended_files(since_first)
    assert found is not None and found.partitions == ["day"] and len(found.files) == 2
    everything = table.appended(None)
    assert everything is not None and [r[0] for r in _rows(everything)] == [1, 2, 3, 4, 5]
    nothing = table.appended(third)
    assert nothing is not None and _rows(nothing) == []
    assert appended_files(pa.table({"k": [1]})) is None  # type: ignore[arg-type]


def test_a_commit_that_did_more_than_append_gives_no_appended_rows(tmp_path: Path) -> None:
    table = Lake(str(tmp_path)).table("silver", "t")
    first = table.append(ROWS, transactions={}, expected={}, metadata={})
    table.overwrite(ROWS, transactions={}, metadata={})
    assert table.appended(first) is None
    assert table.appended(first + 1) is not None  # after the overwrite: appends only


def test_vacuum_deletes_the_files_no_commit_took(tmp_path: Path) -> None:
    table = Lake(str(tmp_path)).table("gold", "t")
    table.overwrite(ROWS, transactions={}, metadata={})
    orphan = tmp_path / "gold" / "t" / "kept-crashed" / "part-0.parquet"
    orphan.parent.mkdir()
    pq.write_table(ROWS, orphan)  # what a server wrote for a run that died before its commit
    assert table.vacuum(0, {"step": "maintain"}) == 1
    assert not orphan.exists() and table.read() == ROWS


def test_a_folder_no_commit_took_is_discarded_whole(tmp_path: Path) -> None:
    table = Lake(str(tmp_path)).table("gold", "t")
    table.overwrite(ROWS, transactions={}, metadata={})
    kept = tmp_path / "gold" / "t" / "kept-x"
    kept.mkdir()
    pq.write_table(ROWS, kept / "part-0.parquet")
    table.discard("kept-x")
    assert not kept.exists() and table.read() == ROWS


def test_duckdb_reads_a_lake_tables_own_files_as_the_table_reads(tmp_path: Path) -> None:
    """A scan DuckDB reads from the files themselves gives the rows, types and partition
    values pyarrow's dataset gives, a column added later included (NULL in older files)."""
    from medallion.engine import DuckDBEngine

    table = Lake(str(tmp_path)).table("bronze", "t")
    _append(table, "2018-01-01", [1, 2])
    wider = pa.table(
        {
            "k": pa.array([3], pa.int64()),
            "v": ["v3"],
            "day": pa.array([date(2018, 1, 2)]),
            "price": pa.array([pa.scalar(12, pa.decimal128(12, 2)).as_py()], pa.decimal128(12, 2)),
        }
    )
    table.append(
        wider, partition_by=["day"], transactions={}, expected={}, metadata={}, evolve_schema=True
    )
    scan = table.relation()
    assert scan is not None
    found = local_parquet(scan)
    assert found is not None and found.partitioned and len(found.paths) == 2
    assert all(p.startswith(str(tmp_path)) and p.endswith(".parquet") for p in found.paths)
    sql = "SELECT * FROM t ORDER BY k"
    native = DuckDBEngine().query(sql, {"t": scan})
    through_arrow = DuckDBEngine().query(sql, {"t": scan.to_table()})
    assert native.equals(through_arrow)
    assert native.column("price").to_pylist()[:2] == [None, None]
    assert native.column("day").to_pylist() == [date(2018, 1, 1)] * 2 + [date(2018, 1, 2)]
    appended = table.appended(table.version - 1 if table.version else None)
    assert appended is not None and local_parquet(appended) is not None
    assert DuckDBEngine().query("SELECT k FROM t", {"t": appended}).to_pylist() == [{"k": 3}]
    assert local_parquet(pads.dataset(found.paths[0])) is None  # not a scan of the lake


def test_a_null_partition_value_is_read_through_pyarrow(tmp_path: Path) -> None:
    from medallion.engine import DuckDBEngine

    table = Lake(str(tmp_path)).table("bronze", "t")
    rows = pa.table({"k": pa.array([1, 2], pa.int64()), "day": pa.array([date(2018, 1, 1), None])})
    table.append(rows, partition_by=["day"], transactions={}, expected={}, metadata={})
    scan = table.relation()
    assert scan is not None and local_parquet(scan) is None
    got = DuckDBEngine().query("SELECT k, day FROM t ORDER BY k", {"t": scan}).to_pylist()
    assert got == [{"k": 1, "day": date(2018, 1, 1)}, {"k": 2, "day": None}]


def test_a_merge_keeps_the_files_small_and_rewrites_only_those_it_touches(
    tmp_path: Path,
) -> None:
    """Files in key order of at most TARGET_FILE_BYTES: a MERGE touching one key range rewrites
    that range's file, one touching every range writes files of that size again (delta-rs'
    MERGE would write one file of everything it rewrote)."""
    from medallion.storage import TARGET_FILE_BYTES, MergePlan

    n = 200_000
    keys = [f"{i:08d}" for i in range(n)]
    noise = random.Random(7)  # values that do not compress: about 3 files' worth
    rows = pa.table({"k": keys, "v": [f"{noise.getrandbits(512):0128x}" for _ in range(n)]})
    table = Lake(str(tmp_path)).table("gold", "t")
    table.overwrite(rows, transactions={}, metadata={}, configuration=CDF)
    files, _ = table.files()
    assert files >= 2
    plan = MergePlan(("k",), matched_updates=((None, {"v": "s.v"}),))
    last = pa.table({"k": [keys[-1]], "v": ["x"]})
    result = table.merge(last, plan, transactions={}, metadata={})
    assert (result.updated, result.files_removed) == (1, 1)
    everywhere = pa.table({"k": keys[::1000], "v": ["y"] * len(keys[::1000])})
    result = table.merge(everywhere, plan, transactions={}, metadata={})
    assert result.files_removed == files and result.files_added >= 2
    sizes = [f.stat().st_size for f in (tmp_path / "gold" / "t").glob("*.parquet")]
    assert max(sizes) < 2 * TARGET_FILE_BYTES


def test_every_write_lays_its_files_out_for_lookups_by_the_key(tmp_path: Path) -> None:
    """Row groups of at most ROW_GROUP_ROWS rows, each with a bloom filter of the key's first
    column and of no other (a lookup of a few keys skips the row groups holding none of them):
    an overwrite, an append, a MERGE's rewritten files and those it inserts (laid out by its
    plan's keys, or by the key it is given), a compaction; no key, no filter."""
    from tests.support import file_layout

    from medallion.storage import ROW_GROUP_ROWS, MergePlan

    n = 2 * ROW_GROUP_ROWS + 5
    rows = pa.table({"k": [f"k{i:06d}" for i in range(n)], "g": [i % 7 for i in range(n)]})
    lake = Lake(str(tmp_path))
    table = lake.table("gold", "t")

    def laid_out(bloom: set[str], name: str = "t") -> None:
        groups = file_layout(lake.table_uri("gold", name))
        assert len(groups) >= 3
        assert {b for _, b in groups} == {frozenset(bloom)}
        assert max(r for r, _ in groups) == ROW_GROUP_ROWS

    table.overwrite(rows, transactions={}, metadata={}, key=("k", "g"))
    laid_out({"k"})
    more = pa.table({"k": [f"m{i:06d}" for i in range(n)], "g": [1] * n})
    table.append(more, transactions={}, expected={}, metadata={}, key=("k",))
    laid_out({"k"})
    plan = MergePlan(("k",), ((None, {"g": "s.g"}),), ((None, {"k": "s.k", "g": "s.g"}),))
    touched = pa.table({"k": ["k000001", "m000002", "new"], "g": [9, 9, 9]})
    result = table.merge(touched, plan, transactions={}, metadata={})
    assert result.files_removed >= 1 and result.inserted == 1
    laid_out({"k"})
    alone = pa.table({"k": ["z"], "g": [0]})  # in a file of its own
    table.append(alone, transactions={}, expected={}, metadata={}, key=("k",))
    table.merge(alone, plan, transactions={}, metadata={}, key=("g",))
    assert {b for _, b in file_layout(lake.table_uri("gold", "t"))} == {
        frozenset({"k"}),
        frozenset({"g"}),
    }
    table.compact(["k"], {}, key=("k",))
    laid_out({"k"})
    lake.table("gold", "u").overwrite(rows, transactions={}, metadata={})
    laid_out(set(), "u")


def test_a_table_made_before_a_property_gets_it_with_its_next_write(tmp_path: Path) -> None:
    from medallion.storage import CDF_KEY

    table = Lake(str(tmp_path)).table("gold", "t")
    table.overwrite(ROWS, transactions={}, metadata={}, configuration={CDF_KEY: "true"})
    before = table.data_version
    table.append(ROWS, transactions={}, expected={}, metadata={}, configuration=CDF)
    assert dict(Lake(str(tmp_path)).open("gold", "t").metadata().configuration) == CDF
    assert table.data_version == (before or 0) + 2  # the property's commit changed no row
    appended = table.appended(before)
    assert appended is not None and appended.count_rows() == ROWS.num_rows


def test_a_name_takes_whatever_each_query_hands_it(tmp_path: Path) -> None:
    """DuckDB keeps a view of a scan for the attempt's next queries: a name handed another
    version, an Arrow table or the first scan again reads what it was handed each time."""
    from medallion.engine import DuckDBEngine, release_thread_connections

    table = Lake(str(tmp_path)).table("silver", "t")
    table.overwrite(ROWS, transactions={}, metadata={}, configuration=CDF)
    first = table.relation()
    table.append(ROWS, transactions={}, expected={}, metadata={})
    second = table.relation()
    assert first is not None and second is not None
    engine, sql = DuckDBEngine(), "SELECT count(*) AS n FROM t"
    handed = [first, second, pa.table({"k": [1]}), first, second, second]
    try:
        got = [engine.query(sql, {"t": rows}).to_pylist()[0]["n"] for rows in handed]
    finally:
        release_thread_connections()
    assert got == [3, 6, 1, 3, 6, 6]


def test_tasks_side_by_side_see_only_what_each_handed_under_one_name(tmp_path: Path) -> None:
    """The threads query on cursors of one DuckDB database: the view of a scan one thread
    makes under a name is its cursor's own, so another thread handing another table under
    that name, at the same time, reads its own rows (a view in the database's catalog would be
    replaced under the first)."""
    from concurrent.futures import ThreadPoolExecutor

    from medallion.engine import DuckDBEngine, release_thread_connections

    lake = Lake(str(tmp_path))
    small, large = lake.table("silver", "small"), lake.table("silver", "large")
    small.overwrite(ROWS, transactions={}, metadata={}, configuration=CDF)
    large.overwrite(pa.concat_tables([ROWS] * 5), transactions={}, metadata={})
    both = threading.Barrier(2)

    def counts(handle: DeltaHandle) -> list[int]:
        engine, scan = DuckDBEngine(), handle.relation()
        try:
            got = [engine.query("SELECT count(*) AS n FROM t", {"t": scan}).to_pylist()]
            both.wait(timeout=30)  # the other thread has made its view of "t" by now
            got.append(engine.query("SELECT count(*) AS n FROM t", {"t": scan}).to_pylist())
            both.wait(timeout=30)
            return [rows[0]["n"] for rows in got]
        finally:
            release_thread_connections()

    with ThreadPoolExecutor(2) as pool:
        seen = list(pool.map(counts, [small, large]))
    assert seen == [[3, 3], [15, 15]]


@pytest.mark.parametrize("partitioned", [False, True])
def test_duckdb_reads_the_matching_rows_pyarrow_reads(tmp_path: Path, partitioned: bool) -> None:
    """The rows whose column is one of some values, read by DuckDB from the files, are those
    (and of the types) pyarrow's filtered scan gives: a NULL value matches a NULL, a value no
    row holds matches nothing, only the asked columns come; no table, no rows."""
    from medallion.engine import DuckDBEngine, read_matching, release_thread_connections

    rows = pa.table(
        {
            "k": pa.array([1, 2, 3, 4], pa.int64()),
            "v": ["a", "b", None, "a"],
            "day": ["d1", "d1", "d2", "d2"],
            "amount": pa.array([1, 2, 3, 4], pa.decimal128(12, 2)),
        }
    )
    lake = Lake(str(tmp_path))
    table = lake.table("silver", "t")
    table.append(
        rows,
        partition_by=["day"] if partitioned else None,
        transactions={},
        expected={},
        metadata={},
    )
    engine = DuckDBEngine()
    asked: list[tuple[str, pa.Array, list[str] | None]] = [
        ("v", pa.array(["a", None]), None),
        ("v", pa.array(["zz"]), ["k"]),
        ("v", pa.array(["a"]), None),  # no NULL asked: none matches the row holding one
        ("k", pa.array([2, 4], pa.int64()), ["k", "amount"]),
        ("day", pa.array(["d2"]), ["k", "day"]),
    ]
    try:
        assert local_parquet(table.relation()) is not None  # DuckDB's own path is taken
        for column, values, columns in asked:
            got = read_matching(engine, table, column, values, columns)
            want = table.read_matching(column, values, columns)
            assert got is not None and want is not None
            assert got.schema == want.schema
            assert sorted(got.to_pylist(), key=str) == sorted(want.to_pylist(), key=str)
        assert read_matching(engine, lake.table("silver", "none"), "k", pa.array([1])) is None
    finally:
        release_thread_connections()
    got = read_matching(engine, table, "v", pa.array(["a", None]))
    assert got is not None and sorted(got["k"].to_pylist()) == [1, 3, 4]


def test_a_snapshots_scan_is_made_once_and_a_table_made_anew_reads_its_own_rows(
    tmp_path: Path,
) -> None:
    """Two handles of one table at one version share one lazy scan (a task's queries reuse
    what was made for it); a table dropped and made again at the same place, whose versions
    start again at 0, is another table: its scan reads its own rows."""
    lake = Lake(str(tmp_path))
    table = lake.table("gold", "t")
    table.overwrite(ROWS, transactions={}, metadata={}, configuration=CDF)
    first, again = table.relation(), lake.table("gold", "t").relation()
    assert first is not None and first is again
    assert table.dataset() is not first  # strings not as views: another scan
    table.drop()
    made_anew = lake.table("gold", "t")
    made_anew.overwrite(ROWS.slice(0, 1), transactions={}, metadata={}, configuration=CDF)
    assert made_anew.version == 0
    scan = made_anew.relation()
    assert scan is not None and scan is not first
    assert scan.to_table()["k"].to_pylist() == [1]


def test_handles_share_a_snapshot_until_a_commit_follows_and_commit_through_their_own(
    tmp_path: Path,
) -> None:
    """Two handles of a local table opened with no commit between hold one snapshot object;
    a MERGE, a table property and an append through one of them leave the other where it
    was (delta-rs moves the object a commit goes through), and a handle opened after a
    commit sees it."""
    from medallion.storage import MergePlan

    lake = Lake(str(tmp_path / "lake"))
    lake.table("gold", "t").overwrite(pa.table({"k": [1, 2]}), transactions={}, metadata={})
    writer, reader = lake.table("gold", "t"), lake.table("gold", "t")
    assert writer._dt is reader._dt and writer.version == 0
    plan = MergePlan(("k",), not_matched_inserts=((None, {"k": "s.k"}),))
    merged = writer.merge(pa.table({"k": [3]}), plan, transactions={"a": 1}, metadata={})
    assert (merged.version, writer.version, reader.version) == (1, 1, 0)
    assert reader.read() == pa.table({"k": [1, 2]})
    later = lake.table("gold", "t")
    assert later.version == 1 and later.app_version("a") == 1
    assert later._dt is lake.table("gold", "t")._dt
    later.append(pa.table({"k": [4]}), transactions={}, expected={}, metadata={}, configuration=CDF)
    assert later.version == 3 and lake.table("gold", "t").version == 3  # a property, the rows
    assert (writer.version, reader.version) == (1, 0)
    assert sorted(lake.table("gold", "t").read()["k"].to_pylist()) == [1, 2, 3, 4]


def test_a_table_made_again_at_its_place_is_not_taken_for_the_one_opened_before(
    tmp_path: Path,
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.table("_scratch", "t").overwrite(pa.table({"k": [1]}), transactions={}, metadata={})
    first = lake.table("_scratch", "t")
    assert first.read() == pa.table({"k": [1]})
    first.drop()
    assert not lake.table("_scratch", "t").exists
    lake.table("_scratch", "t").overwrite(pa.table({"k": [7]}), transactions={}, metadata={})
    again = lake.table("_scratch", "t")
    assert again.version == 0 and again.read() == pa.table({"k": [7]})
