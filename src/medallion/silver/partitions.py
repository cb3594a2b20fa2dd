"""Bounded memory for large change sets: a Silver batch split by key hash.

An engine running in this process (DuckDB) holds a batch of Bronze rows (and a few copies of
it) in memory. Up to ``silver_batch_rows`` rows a batch is read whole; a larger change set (a
first build or full refresh of a big table, a huge backlog) is streamed to local Parquet files
in groups by a hash of the conformed key, and each group is validated alone. An engine running
elsewhere (Spark) holds the data itself: its batches are never split. Every row of a key
lands in the same group, so the latest row per key, tombstones and superseded counts are
what one batch would give. A table whose content must be unique across keys is grouped by the
key columns its content includes (``order_reviews``: ``order_id``), or not split when there
are none.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from medallion.engine import default_engine, partition_to_files
from medallion.silver.contracts import SilverTable
from medallion.silver.transform import conformed_expr

PART = "_part"


def head(reader: pa.RecordBatchReader, limit: int) -> tuple[pa.Table, pa.RecordBatchReader | None]:
    """The first batches of ``reader`` up to just over ``limit`` rows, and the reader of the
    rest (None when the stream ended within the limit)."""
    batches, rows = [], 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows > limit:
            return pa.Table.from_batches(batches, reader.schema), reader
    return pa.Table.from_batches(batches, reader.schema), None


def split_columns(spec: SilverTable) -> tuple[str, ...]:
    """The key columns a change set can be split by without separating rows that a rule
    compares (see the module's docstring); empty: it cannot be split."""
    if spec.unique_content:
        return tuple(k for k in spec.key if k in spec.unique_content)
    return spec.key


def groups(
    spec: SilverTable,
    stream: pa.RecordBatchReader,
    retry: pa.Table | None,
    *,
    expected_rows: int,
    limit: int,
    folder: Path,
) -> Iterator[tuple[pa.Table, pa.Table | None]]:
    """The change set (``stream``) and the retried rows, group by group, each
    group's Bronze rows and retried rows (None when it has none); ``expected_rows`` sizes the
    groups (about ``limit`` rows each). The retried rows are grouped by the same hash as the
    change set, so both on the local DuckDB (another engine's ``hash`` differs)."""
    by = f"hash({', '.join(conformed_expr(spec, k) for k in split_columns(spec))})"
    parts = max(2, math.ceil(expected_rows / max(limit, 1)))
    schema = stream.schema
    files = partition_to_files(stream, by, parts, folder)
    retried = None
    if retry is not None and retry.num_rows:
        retried = default_engine().query(
            f"SELECT b.*, ({by}) % {parts} AS {PART} FROM retry b", {"retry": retry}
        )
    import pyarrow.dataset as pads  # only here: it imports pandas

    for part, paths in enumerate(files):
        rows = pads.dataset(paths, schema=schema).to_table() if paths else schema.empty_table()
        again = None
        if retried is not None:
            mine = retried.filter(pc.equal(retried[PART], part)).drop_columns([PART])
            again = mine if mine.num_rows else None
        if rows.num_rows or again is not None:
            yield rows, again


def chained(first: pa.Table, rest: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``first``'s batches, then ``rest``'s: one stream again after :func:`head`."""

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first.to_batches()
        yield from rest

    return pa.RecordBatchReader.from_batches(first.schema, batches())
