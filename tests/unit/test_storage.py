"""The Delta table handle: reading a change stream whose files are gone fails in one line."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
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
