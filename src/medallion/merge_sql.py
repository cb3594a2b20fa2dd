"""A MERGE plan (:class:`~medallion.storage.MergePlan`) as SQL in DuckDB's dialect, over
target ``t`` and source ``s``: what the table holds after it, what it counts, and the rows it
inserts. The Spark engine runs a MERGE as these queries; a MERGE of new keys only is an
append of :func:`inserted_sql` on every engine (delta-rs would join every stored row to find
nothing to rewrite), which the in-process engine finds out with :func:`matched_sql` and the
Spark engine from its counts."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from medallion.errors import EngineError
from medallion.sql import quote
from medallion.storage import MergePlan


def merged_sql(plan: MergePlan, schema: pa.Schema) -> str:
    """The rows of target ``t`` after MERGE ``plan`` of source ``s``, as delta-rs computes
    them: a matched row is deleted by the first delete condition that holds, else changed by
    the first update clause whose condition holds (columns it does not assign are kept);
    a source row matching none is inserted by the first insert clause that holds; every
    other target row stays as it is. Each column keeps the target's type."""
    columns = schema.names
    deleted = _any(plan.matched_deletes)
    updated = ", ".join(
        _cast(_first([(c, u.get(n)) for c, u in plan.matched_updates], f"t.{quote(n)}"), f)
        + f" AS {quote(n)}"
        for n, f in zip(columns, schema, strict=True)
    )
    every = ", ".join(f"t.{quote(n)}" for n in columns)
    return f"""
        SELECT {every} FROM t WHERE NOT EXISTS (SELECT 1 FROM s WHERE {plan.predicate})
        UNION ALL
        SELECT {updated} FROM t JOIN s ON {plan.predicate} WHERE NOT ({deleted})
        UNION ALL
        SELECT {_inserted(plan, schema)} FROM s
        WHERE NOT EXISTS (SELECT 1 FROM t WHERE {plan.predicate})
            AND ({_any(c for c, _ in plan.not_matched_inserts)})
    """


def merge_counts_sql(plan: MergePlan) -> str:
    """The counts of :func:`merged_sql` as delta-rs' metrics name them."""
    deleted = _any(plan.matched_deletes)
    updated = _any(c for c, _ in plan.matched_updates)
    inserted = _any(c for c, _ in plan.not_matched_inserts)
    return f"""
        SELECT
            (SELECT count(*) FROM s) AS source_rows,
            (SELECT count(*) FROM t JOIN s ON {plan.predicate} WHERE {deleted}) AS deleted,
            (SELECT count(*) FROM t JOIN s ON {plan.predicate}
                WHERE NOT ({deleted}) AND {updated}) AS updated,
            (SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM t WHERE {plan.predicate})
                AND {inserted}) AS inserted
    """


def inserted_sql(plan: MergePlan, schema: pa.Schema) -> str:
    """The rows MERGE ``plan`` inserts when no source row matches a stored one, each column of
    the target's type (``schema``): the whole MERGE then, as :func:`matched_sql` tells."""
    inserts = _any(c for c, _ in plan.not_matched_inserts)
    return f"SELECT {_inserted(plan, schema)} FROM s WHERE {inserts}"


def matched_sql(plan: MergePlan) -> str:
    """A row when some source row matches a stored one, none when every source key is new:
    the stored rows are read once, only the key columns, and the answer is one row at most."""
    return f"SELECT 1 FROM t WHERE EXISTS (SELECT 1 FROM s WHERE {plan.predicate}) LIMIT 1"


def _inserted(plan: MergePlan, schema: pa.Schema) -> str:
    """The columns of a row the first insert clause that holds makes (NULL where it assigns
    nothing), each of the target's type."""
    return ", ".join(
        _cast(_first([(c, i.get(n, "NULL")) for c, i in plan.not_matched_inserts], "NULL"), f)
        + f" AS {quote(n)}"
        for n, f in zip(schema.names, schema, strict=True)
    )


def _any(conditions: Iterable[str | None]) -> str:
    """Whether one of ``conditions`` holds (None: always; a NULL one does not); no
    condition: never."""
    held = [f"COALESCE(({c}), false)" if c is not None else "true" for c in conditions]
    return "(" + " OR ".join(held) + ")" if held else "false"


def _first(clauses: list[tuple[str | None, str | None]], otherwise: str) -> str:
    """The value of the first clause whose condition holds (a clause without a value for
    this column gives ``otherwise``)."""
    if not clauses:
        return otherwise
    whens = " ".join(
        f"WHEN {'true' if c is None else f'COALESCE(({c}), false)'} THEN {v or otherwise}"
        for c, v in clauses
    )
    return f"CASE {whens} ELSE {otherwise} END"


def _cast(expression: str, field: pa.Field) -> str:
    kind = _sql_type(field.type)
    if kind is None:
        raise EngineError(f"a MERGE written as SQL cannot hold a column of type {field.type}")
    return f"CAST({expression} AS {kind})"


def expressible(schema: pa.Schema) -> bool:
    """Whether every column of ``schema`` has a type these queries can cast to."""
    return all(_sql_type(f.type) is not None for f in schema)


def _sql_type(kind: pa.DataType) -> str | None:
    """An Arrow type as a DuckDB type name (what the SQL is written in); None: none here."""
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision}, {kind.scale})"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        inner = _sql_type(kind.value_type)
        return None if inner is None else f"{inner}[]"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    return _SIMPLE.get(kind)


_SIMPLE = {
    pa.bool_(): "BOOLEAN",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.date32(): "DATE",
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.string_view(): "VARCHAR",
    pa.binary(): "BLOB",
    pa.large_binary(): "BLOB",
}
