"""A hash of a row key written in SQL that SQLite, PostgreSQL and DuckDB compute identically.

Bronze compares the source and its own live keys bucket by bucket (see
``medallion.bronze.deletes``): the bucket of a key and its share of the bucket's fingerprint
come from this one expression, evaluated by the source database over the source table and by
DuckDB over the Bronze keys. SQLite has no hash function, so the hash is arithmetic over
things all three engines agree on: integer values, ``length`` and the code points of a few
characters from each end of a text value (``unicode`` / ``ascii``), weighted by fixed
pseudo-random multipliers and reduced modulo the prime 2^31 - 1. Every intermediate fits in
a signed 64-bit integer, so SQLite never overflows.

It is not a cryptographic hash: two text keys of the same length that agree on their first
and last ``ENDS`` characters hash alike (for 32-hex ids that is 32 random bits; SQLite pays
about a microsecond per character call, so more characters cost real time). The fingerprint
also sums the squared hash so that swaps across composite keys do not cancel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from medallion.catalog import SourceTable
from medallion.sql import quote

Engine = Literal["sqlite", "postgresql", "duckdb"]

PRIME = 2_147_483_647  # 2^31 - 1: a hash is below 2^31, its square below 2^62
ENDS = 4  # characters weighted from each end of a text value (SQLite pays per call)
_PAD = "~" * ENDS
# fixed multipliers below 2^24: code point (< 2^21) x multiplier < 2^45, a sum of 9 < 2^49
_WEIGHTS = tuple((i * 2_654_435_761 + 97_531) % 16_777_213 + 1 for i in range(2 * ENDS + 1))
_COLUMN_WEIGHTS = (1, 1_048_573, 786_433, 524_287)  # per key column, all below 2^20

_CODE_POINT = {"sqlite": "unicode", "postgresql": "ascii", "duckdb": "unicode"}


def _text_hash(column: str, engine: Engine) -> str:
    """length and the code points of the first and last ``ENDS`` characters, padded so no
    engine ever sees an empty string (where they disagree)."""
    code = _CODE_POINT[engine]
    value = f"coalesce({column}, '')"
    terms = [f"CAST(length({value}) AS BIGINT) * {_WEIGHTS[0]}"]
    for i in range(1, ENDS + 1):
        head = f"substr({value} || '{_PAD}', {i}, 1)"
        tail = f"substr('{_PAD}' || {value}, length({value}) + {ENDS + 1 - i}, 1)"
        terms.append(f"CAST({code}({head}) AS BIGINT) * {_WEIGHTS[i]}")
        terms.append(f"CAST({code}({tail}) AS BIGINT) * {_WEIGHTS[ENDS + i]}")
    return f"(({' + '.join(terms)}) % {PRIME})"


def row_hash(table: SourceTable, engine: Engine, prefix: str = "") -> str:
    """SQL for the hash of a row's key: an integer in [0, 2^31 - 1) (negative only for a
    negative integer key)."""
    parts = []
    for i, name in enumerate(table.row_key):
        column = f"{prefix}{quote(name)}"
        if table.column(name).type.is_text:
            value = _text_hash(column, engine)
        else:
            value = f"(CAST(coalesce({column}, 0) AS BIGINT) % {PRIME})"
        parts.append(f"{value} * {_COLUMN_WEIGHTS[i % len(_COLUMN_WEIGHTS)]}")
    return f"(({' + '.join(parts)}) % {PRIME})"


def summary_sql(hashed: str, buckets: int) -> str:
    """A per-bucket summary of ``hashed``, a query exposing each key's hash as ``h``: the
    bucket, the key count and two sums, the second non-linear (so a key replaced by another,
    or the parts of composite keys swapped, changes it). Sums stay below 2^63 for up to 2^31
    keys per bucket."""
    return (
        f"SELECT h % {buckets} AS bucket, count(*) AS n, CAST(sum(h) AS BIGINT) AS s1, "
        f"CAST(sum((h * h) % {PRIME}) AS BIGINT) AS s2 FROM ({hashed}) AS hashed "
        f"GROUP BY h % {buckets}"
    )


def bucket_list(selected: Sequence[int]) -> str:
    """Bucket numbers as an SQL list of integer literals (never text from outside)."""
    return ", ".join(str(int(b)) for b in selected)


def bucket_count(keys: int, per_bucket: int) -> int:
    """About ``keys / per_bucket`` buckets, a power of two, at least 1."""
    return 1 << max(0, (keys // max(per_bucket, 1)).bit_length() - 1)
