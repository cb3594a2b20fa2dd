"""The Delta table handle: reading a change stream whose files are gone fails in one line."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medallion.errors import StorageError
from medallion.storage import CDF, Lake


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
