"""The nine Olist Kaggle CSV files: read and write them exactly as published, and bulk-load them.

Everything is Arrow-native: pyarrow.csv reads every column as text, compute kernels validate and
cast it to the catalog types, and the writer formats each column as a string array and joins
them, so no Python code runs per row.
"""

from __future__ import annotations

import codecs
import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from medallion.catalog import DELETED_AT, UPDATED_AT, ColumnType, SourceTable, source_tables
from medallion.errors import InputFileError
from medallion.source.db import SourceDatabase

log = logging.getLogger(__name__)

_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_BATCH_ROWS = 65_536
_ROW = "__row"

# Values a column type accepts, checked before the cast so a bad value is found, not raised on.
_PATTERNS: dict[ColumnType, str] = {
    ColumnType.INT: r"^-?[0-9]{1,19}$",
    ColumnType.FLOAT: r"(?i)^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?|nan|inf)$",
    ColumnType.MONEY: r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$",
}
_EXPECTED: dict[ColumnType, str] = {
    ColumnType.INT: "an integer",
    ColumnType.FLOAT: "a number",
    ColumnType.MONEY: "an amount with at most 2 decimals (e.g. 58.90)",
    ColumnType.TIMESTAMP: "a timestamp YYYY-MM-DD HH:MM:SS",
}
# A text field is quoted when it starts with a digit, is empty (not NULL), or needs escaping.
_NEEDS_QUOTES = r'^[0-9]|[",\r\n]|^$'


@dataclass(frozen=True)
class CsvFormat:
    """How one Kaggle file is laid out on disk."""

    quote_header: bool = True
    bom: bool = False
    eol: str = "\n"
    final_newline: bool = True


_OLIST_FORMAT = CsvFormat()
_FORMATS: dict[str, CsvFormat] = {
    "product_category_name_translation": CsvFormat(
        quote_header=False, bom=True, eol="\r\n", final_newline=False
    ),
}


def csv_format(table: SourceTable) -> CsvFormat:
    """The layout of ``table``'s Kaggle file (the translation file differs from the others)."""
    return _FORMATS.get(table.source_name, _OLIST_FORMAT)


@dataclass(frozen=True)
class CsvRead:
    """One Kaggle file read and typed: the rows kept and what was dropped."""

    table: pa.Table  # business columns, catalog types, duplicate keys resolved (last wins)
    rows_in_file: int
    duplicates_dropped: int


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_csv_dir` did with one file."""

    table: str
    file: Path
    rows_in_file: int
    duplicates_dropped: int
    rows_upserted: int  # rows sent to the upsert; unchanged rows are left as they are


# -- reading ---------------------------------------------------------------------------------


def read_kaggle_csv(path: Path, table: SourceTable) -> CsvRead:
    """Read one Kaggle file (``.csv`` or ``.csv.gz``) and cast it to the catalog business schema.

    Raises :class:`InputFileError` (one line: file, line, problem) on a wrong header, a row with
    the wrong number of fields, a value that does not parse as its column type, or a NULL key.
    Rows repeating a key are dropped, keeping the last occurrence.
    """
    _check_bytes(path)
    _check_header(path, table)
    raw = _read_text(path, table)
    typed = _cast_table(raw, table, path)
    _check_required(raw, typed, table, path)
    kept, dropped = _keep_last(typed, table.key)
    if dropped:
        log.warning("%s: dropped %d row(s) repeating a key (kept the last)", path, dropped)
    return CsvRead(kept, raw.num_rows, dropped)


def _check_bytes(path: Path, chunk: int = 1 << 22) -> None:
    """Refuse a file that is not UTF-8 text, or holds a NUL byte (no text column can keep
    one), naming the line; the offending bytes are never echoed. A quote inside an unquoted
    field is no error: it is kept as a literal character, as Python's csv module does."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            while block := stream.read(chunk):
                nul = block.find(b"\x00")
                if nul >= 0:
                    line = lines + block.count(b"\n", 0, nul)
                    raise InputFileError(
                        f"{path}, line {line}: a NUL byte; the file is binary or corrupt "
                        "(remove the NUL bytes to load it)"
                    )
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    line = lines + block.count(b"\n", 0, exc.start)
                    raise InputFileError(
                        f"{path}, line {line}: not UTF-8 text (byte 0x{block[exc.start]:02x}); "
                        "save the file as UTF-8"
                    ) from None
                lines += block.count(b"\n")
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: cannot read: {_first_line(exc)}") from None


def _check_header(path: Path, table: SourceTable) -> None:
    found = _read_header(path)
    expected = list(table.column_names)
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if not missing and not unexpected:
        problem = f"columns are out of order; expected {', '.join(expected)}"
    else:
        problem = f"missing column(s): {', '.join(missing) or '-'}; "
        problem += f"unexpected column(s): {', '.join(unexpected) or '-'}"
    raise InputFileError(f"{path}, line 1: header does not match {table.csv_file}: {problem}")


def _read_header(path: Path) -> list[str]:
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 16)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: cannot read: {_first_line(exc)}") from None
    line = head.split(b"\n", 1)[0].removeprefix(b"\xef\xbb\xbf").rstrip(b"\r")
    if not line:
        raise InputFileError(f"{path}, line 1: the file is empty; expected a header row")
    return next(csv.reader([line.decode("utf-8", errors="replace")]))


def _read_options(table: SourceTable, *, threads: bool) -> pacsv.ReadOptions:
    return pacsv.ReadOptions(
        column_names=list(table.column_names), skip_rows=1, use_threads=threads
    )


def _convert_options(table: SourceTable) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in table.column_names},
        strings_can_be_null=True,
        null_values=[""],  # only an empty unquoted field is NULL; "" is an empty string
        quoted_strings_can_be_null=False,
    )


def _read_text(path: Path, table: SourceTable) -> pa.Table:
    """Every column as text; a malformed row is reported with its physical line."""
    parse = pacsv.ParseOptions(newlines_in_values=True)
    try:
        return pacsv.read_csv(
            str(path),
            read_options=_read_options(table, threads=True),
            parse_options=parse,
            convert_options=_convert_options(table),
        )
    except pa.ArrowInvalid as exc:
        _raise_bad_row(path, table)
        raise InputFileError(f"{path}: cannot parse CSV: {_first_line(exc)}") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{path}: cannot read: {_first_line(exc)}") from None


def _raise_bad_row(path: Path, table: SourceTable) -> None:
    """Re-read serially, skipping malformed rows, and raise on the first one if any."""
    bad: list[pacsv.InvalidRow] = []

    def skip(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "skip"

    try:
        good = pacsv.read_csv(
            str(path),
            read_options=_read_options(table, threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
            convert_options=_convert_options(table),
        )
    except (OSError, pa.ArrowException):
        return
    if not bad:
        return
    row = bad[0]
    record = row.number or 0  # 1-based record number, the header being record 1
    line = record + _line_breaks(good, record - 2)
    raise InputFileError(
        f"{path}, line {line}: expected {row.expected_columns} fields, "
        f"found {row.actual_columns}: {_shorten(row.text)}"
    )


def _line_breaks(raw: pa.Table, rows: int) -> int:
    """Line breaks embedded in quoted values of the first ``rows`` rows."""
    head = raw.slice(0, max(rows, 0))
    total = 0
    for column in head.columns:
        if pa.types.is_string(column.type):
            total += pc.sum(pc.count_substring(column, "\n")).as_py() or 0
    return total


def _line_of(raw: pa.Table, index: int) -> int:
    """Physical line of data row ``index`` (0-based; the header is line 1)."""
    return index + 2 + _line_breaks(raw, index)


def _cast_table(raw: pa.Table, table: SourceTable, path: Path) -> pa.Table:
    schema = table.arrow_schema(business_only=True)
    arrays = []
    for col in table.columns:
        text = raw.column(col.name)
        typed, bad = _cast_column(text, col.type)
        first = pc.index(bad, True).as_py() if bad is not None else -1
        if first >= 0:
            value = text[first].as_py()
            raise InputFileError(
                f"{path}, line {_line_of(raw, first)}: column {col.name}: "
                f"{_shorten(value)} is not {_EXPECTED[col.type]}"
            )
        arrays.append(typed)
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast_column(
    text: pa.ChunkedArray, ctype: ColumnType
) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """The column cast to ``ctype`` and a mask of the non-NULL values that do not parse."""
    if ctype.is_text:
        return text, None
    if ctype is ColumnType.TIMESTAMP:
        parsed = pc.strptime(text, format=_TIMESTAMP_FORMAT, unit="us", error_is_null=True)
        # strptime normalises 2017-02-30 and accepts 2017-1-5; only the canonical form is valid
        canonical = pc.cast(pc.cast(parsed, pa.timestamp("s"), safe=False), pa.string())
        ok = pc.fill_null(pc.equal(canonical, text), False)
        return parsed, pc.and_(pc.is_valid(text), pc.invert(ok))
    bad = pc.invert(pc.fill_null(pc.match_substring_regex(text, _PATTERNS[ctype]), True))
    if pc.any(bad).as_py():
        return text, bad
    try:
        return pc.cast(text, ctype.arrow), bad
    except pa.ArrowInvalid:  # only an integer beyond int64 gets past its pattern
        wide = pc.cast(text, pa.decimal128(20, 0))
        limits = np.iinfo(np.int64)
        low, high = pc.less(wide, limits.min), pc.greater(wide, limits.max)
        return text, pc.fill_null(pc.or_(low, high), False)


def _check_required(raw: pa.Table, typed: pa.Table, table: SourceTable, path: Path) -> None:
    for col in table.columns:
        if col.nullable:
            continue
        first = pc.index(pc.is_null(typed.column(col.name)), True).as_py()
        if first >= 0:
            raise InputFileError(
                f"{path}, line {_line_of(raw, first)}: key column {col.name} is empty"
            )


def _keep_last(data: pa.Table, key: Sequence[str]) -> tuple[pa.Table, int]:
    """Drop rows repeating a key, keeping the last occurrence, in file order."""
    if not key or data.num_rows == 0:
        return data, 0
    rows = pa.array(np.arange(data.num_rows, dtype=np.int64))
    groups = (
        data.select(list(key))
        .append_column(_ROW, rows)
        .group_by(list(key), use_threads=False)
        .aggregate([(_ROW, "max")])
    )
    if groups.num_rows == data.num_rows:
        return data, 0
    last = np.sort(groups.column(f"{_ROW}_max").to_numpy())
    return data.take(pa.array(last)), data.num_rows - groups.num_rows


# -- writing ---------------------------------------------------------------------------------


def write_kaggle_csv(data: pa.Table, table: SourceTable, directory: Path) -> Path:
    """Write ``data``'s business columns as ``directory/<kaggle file>.csv`` in the Kaggle layout.

    Text fields are quoted only when they start with a digit, are empty strings, or hold a
    comma, quote or line break; NULL is an empty field; timestamps are written to the second.
    """
    fmt = csv_format(table)
    path = directory / table.csv_file
    directory.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(_header(table, fmt))
        for batch in data.select(list(table.column_names)).to_batches(_BATCH_ROWS):
            out.write(_format_batch(batch, table, fmt))
    return path


def _header(table: SourceTable, fmt: CsvFormat) -> bytes:
    names = [f'"{n}"' if fmt.quote_header else n for n in table.column_names]
    text = ("\ufeff" if fmt.bom else "") + ",".join(names)
    return (text + (fmt.eol if fmt.final_newline else "")).encode()


def _format_batch(batch: pa.RecordBatch, table: SourceTable, fmt: CsvFormat) -> bytes:
    """The batch's rows as CSV bytes, each with its line ending (before it when none at EOF)."""
    if batch.num_rows == 0:
        return b""
    fields = [_format_column(batch.column(c.name), c.type) for c in table.columns]
    lines = pc.binary_join_element_wise(*fields, ",")
    ends = (lines, fmt.eol) if fmt.final_newline else (fmt.eol, lines)
    lines = pc.binary_join_element_wise(*ends, "")
    offsets = pa.array([0, len(lines)], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, lines), "")
    return bytes(joined[0].as_buffer())


def _format_column(values: pa.Array, ctype: ColumnType) -> pa.Array:
    """One column as Kaggle text; NULL becomes an empty field."""
    if ctype.is_text:
        text = pc.cast(values, pa.string())
        escaped = pc.replace_substring(text, '"', '""')
        quoted = pc.binary_join_element_wise('"', escaped, '"', "")
        text = pc.if_else(pc.match_substring_regex(text, _NEEDS_QUOTES), quoted, text)
    elif ctype is ColumnType.TIMESTAMP:
        text = pc.cast(pc.cast(values, pa.timestamp("s"), safe=False), pa.string())
    elif ctype is ColumnType.MONEY:
        text = pc.cast(pc.cast(values, ctype.arrow), pa.string())  # always 2 decimals: 58.90
    elif ctype is ColumnType.FLOAT:
        text = pc.cast(pc.cast(values, pa.float64()), pa.string())
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")  # Python/pandas write 3.0, not 3
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    else:
        text = pc.cast(values, pa.string())
    return pc.fill_null(text, "")


# -- loading ---------------------------------------------------------------------------------


def kaggle_files(
    directory: Path, tables: Sequence[str] | None = None
) -> list[tuple[SourceTable, Path]]:
    """The Kaggle files present in ``directory`` (``.csv`` preferred over ``.csv.gz``).

    With ``tables``, each named table's file must be present.
    """
    if not directory.is_dir():
        raise InputFileError(f"CSV directory {directory} does not exist")
    found = []
    for table in source_tables(list(tables) if tables else None):
        path = _find_file(directory, table)
        if path is not None:
            found.append((table, path))
        elif tables:
            raise InputFileError(
                f"{table.csv_file} (or {table.csv_file}.gz) not found in {directory}"
            )
    if not found:
        expected = ", ".join(t.csv_file for t in source_tables())
        raise InputFileError(
            f"no Kaggle CSV file in {directory}; expected any of: {expected} (or .csv.gz)"
        )
    return found


def _find_file(directory: Path, table: SourceTable) -> Path | None:
    for name in (table.csv_file, f"{table.csv_file}.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_csv_dir(
    db: SourceDatabase,
    directory: Path,
    *,
    loaded_at: datetime,
    tables: list[str] | None = None,
) -> list[LoadResult]:
    """Upsert the Kaggle files found in ``directory`` (or the named ``tables``) into ``db``.

    Each row gets ``updated_at = loaded_at`` and ``deleted_at = NULL`` (geolocation also its
    1-based row number as ``geolocation_id``); a reload of the same files changes nothing.
    """
    files = kaggle_files(directory, tables)
    db.create_tables([table for table, _ in files])
    return [_load_file(db, table, path, loaded_at) for table, path in files]


def _load_file(
    db: SourceDatabase, table: SourceTable, path: Path, loaded_at: datetime
) -> LoadResult:
    started = time.perf_counter()
    read = read_kaggle_csv(path, table)
    upserted = db.upsert(table, with_tracking(read.table, table, loaded_at))
    log.info(
        "loaded %s: %d rows in %s in %.1fs",
        table.source_name,
        upserted,
        path.name,
        time.perf_counter() - started,
    )
    return LoadResult(table.name, path, read.rows_in_file, read.duplicates_dropped, upserted)


def with_tracking(data: pa.Table, table: SourceTable, loaded_at: datetime) -> pa.Table:
    """Business columns plus the source-side surrogate and change-tracking columns."""
    n = data.num_rows
    ts = pa.timestamp("us")
    extra: dict[str, pa.Array] = {
        UPDATED_AT: pa.repeat(pa.scalar(loaded_at, ts), n),
        DELETED_AT: pa.nulls(n, ts),
    }
    if table.surrogate_key:
        extra[table.surrogate_key] = pa.array(np.arange(1, n + 1, dtype=np.int64))
    schema = table.arrow_schema()
    arrays = [data.column(f.name) if f.name in data.schema.names else extra[f.name] for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# -- messages --------------------------------------------------------------------------------


def _shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
