"""Arrow and numpy building blocks of the generator and the change batches: ids, zip codes,
money, timestamps, catalog-typed tables, sampling and column replacement, all vectorised.

Times are int64 seconds (or microseconds) since the Unix epoch, naive UTC.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import source_table

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Rng = np.random.Generator

DAY = 86_400
US = 1_000_000

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


# -- values ---------------------------------------------------------------------------------------
def fixed_width_strings(chars: npt.NDArray[np.uint8]) -> pa.Array:
    """A string array from an (n, width) matrix of ASCII codes, without a Python loop."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars).tobytes()
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def random_ids(rng: Rng, n: int) -> pa.Array:
    """``n`` ids of 32 lowercase hex characters drawn from ``rng``."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    return fixed_width_strings(_HEX[nibbles])


def zip_strings(zips: npt.NDArray[np.integer]) -> pa.Array:
    """5-character zip code prefixes with leading zeros."""
    z = np.asarray(zips, dtype=np.int64)
    powers = 10 ** np.arange(4, -1, -1, dtype=np.int64)
    return fixed_width_strings(_DIGITS[(z[:, None] // powers) % 10])


def money(cents: npt.NDArray[np.integer], null: Mask | None = None) -> pa.Array:
    """Exact ``decimal128(12, 2)`` values from integer cents."""
    c = np.asarray(cents, dtype=np.int64)
    words = np.empty((len(c), 2), dtype=np.int64)
    words[:, 0] = c
    words[:, 1] = c >> 63  # sign extension of the 128-bit two's complement
    validity = None if null is None else pa.array(~null).buffers()[1]
    null_count = 0 if null is None else int(null.sum())
    return pa.Array.from_buffers(
        pa.decimal128(12, 2), len(c), [validity, pa.py_buffer(words.tobytes())], null_count
    )


def micro_timestamps(us: npt.NDArray[np.integer], null: Mask | None = None) -> pa.Array:
    """``timestamp[us]`` from epoch microseconds."""
    return pa.array(us, pa.int64(), mask=null).cast(pa.timestamp("us"))


def timestamps(
    seconds: npt.NDArray[np.integer], null: Mask | None = None, micros: int | I64 = 0
) -> pa.Array:
    """``timestamp[us]`` from epoch seconds (plus optional microseconds array or offset)."""
    return micro_timestamps(np.asarray(seconds, dtype=np.int64) * US + micros, null)


def micros(table: pa.Table, column: str) -> tuple[I64, Mask]:
    """A timestamp column as int64 microseconds (0 where NULL) and its validity."""
    col = table[column].cast(pa.int64())
    valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.asarray(col.fill_null(0).to_numpy(), dtype=np.int64), valid


def seconds(table: pa.Table, column: str) -> I64:
    """A timestamp column as int64 seconds (0 where NULL)."""
    return micros(table, column)[0] // US


def day_start(secs: I64) -> I64:
    return secs - secs % DAY


# -- tables ---------------------------------------------------------------------------------------
def build_table(name: str, columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    """A table with exactly the catalog schema of ``name``; ``deleted_at`` defaults to NULL."""
    schema = source_table(name).arrow_schema()
    n = len(next(iter(columns.values())))
    arrays = []
    for fld in schema:
        col = columns.get(fld.name)
        if col is None:
            col = pa.nulls(n, fld.type)
        arrays.append(col.cast(fld.type) if col.type != fld.type else col)
    return pa.Table.from_arrays(arrays, schema=schema)


def set_column(table: pa.Table, column: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Replace a column, keeping its field (type and nullability; ``values`` are cast to it)."""
    index = table.schema.get_field_index(column)
    field = table.schema.field(index)
    return table.set_column(index, field, values.cast(field.type))


def replace_rows(table: pa.Table, column: str, rows: I64, values: pa.Array) -> pa.Table:
    """Set ``column`` at the sorted positions ``rows`` to ``values``."""
    mask = np.zeros(table.num_rows, dtype=np.bool_)
    mask[rows] = True
    col = table[column].combine_chunks()
    return set_column(
        table, column, pc.replace_with_mask(col, pa.array(mask), values.cast(col.type))
    )


def row_keys(name: str, table: pa.Table) -> pa.Array:
    """Each row's key values joined by ``|`` (the ``key`` of the dirty-row list)."""
    cols = [pc.cast(table[c], pa.string()) for c in source_table(name).row_key]
    if len(cols) == 1:
        return cols[0].combine_chunks()
    return pc.binary_join_element_wise(*cols, "|").combine_chunks()


# -- sampling -------------------------------------------------------------------------------------
def allocate(total: int, weights: npt.ArrayLike) -> I64:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    parts = np.floor(exact).astype(np.int64)
    short = total - int(parts.sum())
    if short:
        parts[np.argsort(-(exact - parts), kind="stable")[:short]] += 1
    return np.asarray(parts, dtype=np.int64)


def group_positions(counts: I64) -> tuple[I64, I64]:
    """For groups of ``counts`` rows: each row's group index and its 0-based position in it."""
    group = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(len(group), dtype=np.int64) - np.repeat(starts, counts)


def lognormal(rng: Rng, median: float, sigma: float, n: int, *, low: float, high: float) -> F64:
    return np.clip(rng.lognormal(math.log(median), sigma, n), low, high)


def choose(rng: Rng, n: int, shares: tuple[float, ...]) -> I64:
    """``n`` random indices into ``shares`` (relative weights)."""
    p = np.asarray(shares, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)
