"""SCD2 dimensions: one pure, set-based fold of change events into versioned history.

``apply_scd2(spec, history, events)`` re-computes only the keys present in ``events``: their
existing versions are turned back into events (a version is an upsert at its ``effective_at``;
a deleted version also a delete at its ``valid_to``), the new events are added, exact
duplicates dropped, and the lot is folded again in time order. Re-folding is what makes
out-of-order events (split the interval they fall in), repeated batches (no-op) and deletes
followed by restores all the same code path.

Order per key: by ``effective_at``; at one instant upserts come before a delete and upserts of
different tracked states in ``row_hash`` order, so the greatest hash is the state in force after
that instant and the others become zero-length versions ``[t, t)`` (kept rather than dropped, so
that re-applying a batch is a no-op). Type-1 values of a version: those of the latest new event
after its start; else the stored version's; else the greatest of the new events at its start.

What history cannot remember: the time of an absorbed event (an upsert repeating the state in
force, a delete of a deleted or unknown key) and the time a stored type-1 value was seen. An
older event arriving later is folded as if those never happened, so out-of-order delivery can
differ from one fold of all events. Time-ordered delivery is exact; for exactness whatever the
order, fold every known event of the touched keys with ``history=None`` (Bronze keeps them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from medallion.engine import Engine, Relation, default_engine
from medallion.errors import SCD2Error
from medallion.sql import quote as _q
from medallion.storage import DeltaHandle

EFFECTIVE_AT, IS_DELETE = "effective_at", "is_delete"
VALID_FROM, VALID_TO, IS_CURRENT, IS_DELETED, ROW_HASH = (
    "valid_from",
    "valid_to",
    "is_current",
    "is_deleted",
    "row_hash",
)
LOW, HIGH = datetime(1900, 1, 1), datetime(9999, 12, 31)
UNKNOWN_SK, UNKNOWN_KEY = 0, "unknown"
_LOW_SQL, _HIGH_SQL = "TIMESTAMP '1900-01-01'", "TIMESTAMP '9999-12-31'"
_INTERNAL_PREFIX = "_scd2_"
_META = (EFFECTIVE_AT, VALID_FROM, VALID_TO, IS_CURRENT, IS_DELETED, ROW_HASH)


@dataclass(frozen=True)
class SCD2Spec:
    """A dimension declared as data: its name, natural key, tracked and type-1 attributes."""

    name: str
    natural_key: tuple[str, ...]
    tracked: tuple[str, ...]
    type1: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.natural_key or not self.tracked:
            raise SCD2Error(
                f"SCD2 spec {self.name!r} needs a name, a natural key and tracked columns"
            )
        declared = [*self.natural_key, *self.tracked, *self.type1]
        dupes = sorted({c for c in declared if declared.count(c) > 1})
        reserved = {self.sk_column, *_META, IS_DELETE}
        bad = sorted(c for c in declared if c in reserved or c.startswith(_INTERNAL_PREFIX))
        if dupes or bad:
            raise SCD2Error(
                f"SCD2 spec {self.name!r}: columns declared twice {dupes} or reserved {bad}; "
                "rename them"
            )

    @property
    def sk_column(self) -> str:
        return f"{self.name.removeprefix('dim_')}_sk"

    @property
    def attributes(self) -> tuple[str, ...]:
        return (*self.tracked, *self.type1)

    @property
    def event_columns(self) -> tuple[str, ...]:
        return (*self.natural_key, *self.attributes, EFFECTIVE_AT, IS_DELETE)

    @property
    def columns(self) -> tuple[str, ...]:
        """The dimension's columns, in output order."""
        return (self.sk_column, *self.natural_key, *self.attributes, *_META)


def dimension_schema(spec: SCD2Spec, events_schema: pa.Schema) -> pa.Schema:
    """The dimension's Arrow schema: attribute types from the events, fixed types for the rest."""
    ts = pa.timestamp("us")
    return pa.schema(
        [
            pa.field(spec.sk_column, pa.int64()),
            *(events_schema.field(c) for c in (*spec.natural_key, *spec.attributes)),
            pa.field(EFFECTIVE_AT, ts),
            pa.field(VALID_FROM, ts),
            pa.field(VALID_TO, ts),
            pa.field(IS_CURRENT, pa.bool_()),
            pa.field(IS_DELETED, pa.bool_()),
            pa.field(ROW_HASH, pa.string()),
        ]
    )


def apply_scd2(
    spec: SCD2Spec, history: pa.Table | None, events: pa.Table, engine: Engine | None = None
) -> pa.Table:
    """Fold ``events`` into ``history`` (None or empty on a first load); return the dimension.

    Keys absent from ``events`` pass through untouched, as does the unknown member (sk 0).
    """
    engine = engine or default_engine()
    return engine.query(_fold_sql(spec), _fold_inputs(spec, history, events, engine))


def fold_scd2(
    spec: SCD2Spec,
    history: Relation | None,
    events: Relation,
    engine: Engine,
    *,
    near: DeltaHandle | None = None,
) -> Relation:
    """:func:`apply_scd2` for inputs and a result that may be as large as a table: the result
    is kept by the engine (``near``: as :meth:`Engine.keep`), never brought here."""
    inputs = _fold_inputs(spec, history, events, engine)
    return engine.keep(_fold_sql(spec), inputs, near=near)


def _fold_inputs(
    spec: SCD2Spec, history: Relation | None, events: Relation, engine: Engine
) -> dict[str, Relation]:
    """The fold's inputs, checked: ``history`` None is the dimension's empty shape."""
    _validate_events(spec, events, engine)
    if history is None:
        history = dimension_schema(spec, events.schema).empty_table()
    else:
        _require_columns(spec, "history", history.schema.names, spec.columns)
    return {"history": history, "events": events}


def unknown_member(spec: SCD2Spec, schema: pa.Schema, engine: Engine | None = None) -> pa.Table:
    """The one-row unknown member (sk 0) facts join to when their key is missing or late.

    String natural keys read ``'unknown'``, other keys and all attributes are NULL; it is open
    from 1900-01-01 to 9999-12-31 and current.
    """
    _require_columns(spec, "schema", schema.names, spec.columns)
    schema = pa.schema([schema.field(c) for c in spec.columns])
    values: dict[str, object] = dict.fromkeys(spec.columns)
    for key in spec.natural_key:
        if _is_string(schema.field(key).type):
            values[key] = UNKNOWN_KEY
    values |= {
        spec.sk_column: UNKNOWN_SK,
        EFFECTIVE_AT: LOW,
        VALID_FROM: LOW,
        VALID_TO: HIGH,
        IS_CURRENT: True,
        IS_DELETED: False,
    }
    row = pa.Table.from_pylist([values], schema=schema)
    hashed = (engine or default_engine()).query(
        f"SELECT {_row_hash_sql(spec)} AS h FROM member", {"member": row}
    )
    return row.set_column(
        row.schema.get_field_index(ROW_HASH), ROW_HASH, hashed["h"].cast(pa.string())
    )


def _is_string(dtype: pa.DataType) -> bool:
    types = pa.types
    return bool(
        types.is_string(dtype) or types.is_large_string(dtype) or types.is_string_view(dtype)
    )


def _require_columns(
    spec: SCD2Spec, what: str, present: list[str], needed: tuple[str, ...]
) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise SCD2Error(f"{spec.name}: {what} lack columns {', '.join(missing)}")


def _validate_events(spec: SCD2Spec, events: Relation, engine: Engine) -> None:
    _require_columns(spec, "events", events.schema.names, spec.event_columns)
    ts_type = events.schema.field(EFFECTIVE_AT).type
    del_type = events.schema.field(IS_DELETE).type
    if not pa.types.is_timestamp(ts_type) or ts_type.tz is not None:
        raise SCD2Error(
            f"{spec.name}: events.{EFFECTIVE_AT} is {ts_type}; cast it to timestamp[us]"
        )
    if not pa.types.is_boolean(del_type):
        raise SCD2Error(f"{spec.name}: events.{IS_DELETE} is {del_type}; cast it to bool")
    groups = (spec.natural_key, (EFFECTIVE_AT,), (IS_DELETE,))
    counts = ", ".join(
        f"sum(CASE WHEN {' OR '.join(f'{_q(c)} IS NULL' for c in columns)} THEN 1 ELSE 0 END)"
        f" AS _n{i}"
        for i, columns in enumerate(groups)
    )
    nulls = engine.query(f"SELECT {counts} FROM events", {"events": events}).to_pylist()[0]
    for i, columns in enumerate(groups):
        if nulls[f"_n{i}"]:
            raise SCD2Error(
                f"{spec.name}: {nulls[f'_n{i}']} event(s) with NULL {', '.join(columns)}; "
                "drop or fix those rows before Gold"
            )


def _list(names: tuple[str, ...]) -> str:
    return ", ".join(_q(n) for n in names)


def _json_sql(names: tuple[str, ...]) -> str:
    """A null-safe, unambiguous text encoding of the columns: the text of DuckDB's
    ``to_json(struct_pack(...))``, built field by field so that Spark writes it too (Spark's
    ``to_json`` leaves NULL fields out, and Sail ignores its ``ignoreNullFields`` option)."""
    if not names:
        return "'{}'"
    fields = " || ',' || ".join(
        f"CASE WHEN {_q(n)} IS NULL THEN '{_q(n)}:null' "
        f"ELSE substr({_field_json(n)}, 2, length({_field_json(n)}) - 2) END"
        for n in names
    )
    return f"'{{' || {fields} || '}}'"


def _field_json(name: str) -> str:
    """``{"name":value}``: :func:`_json_sql` keeps what is between the braces (by position:
    a regular expression costs twice the whole fold's other work)."""
    return f"to_json(struct_pack({_q(name)} := {_q(name)}))"


def _row_hash_sql(spec: SCD2Spec) -> str:
    return f"sha256({_json_sql(spec.tracked)})"


_SK_HEX_DIGITS = 15  # 60 bits of the hash: a positive BIGINT


def _sk_hex_sql(spec: SCD2Spec) -> str:
    """The first hex digits of sha256 of (natural key, start, row_hash), which
    :func:`_sk_sql` turns into the surrogate key."""
    payload = ", ".join(
        [
            *(f"{_q(k)} := {_q(k)}" for k in spec.natural_key),
            f"{EFFECTIVE_AT} := epoch_us(_scd2_start)",
            f"{ROW_HASH} := {ROW_HASH}",
        ]
    )
    # no field is NULL (Spark's to_json would leave it out): to_json is the same text on both
    return f"substr(sha256(to_json(struct_pack({payload}))), 1, {_SK_HEX_DIGITS})"


def _sk_sql(hex_digits: str) -> str:
    """A stable positive int64 from the hex digits ``hex_digits``; 0 is reserved.

    The hash tells apart versions opened at one instant (conflicting events of one time). The
    value of the digits is summed digit by digit: what ``('0x' || h)::BIGINT`` is in DuckDB,
    written so that Spark, which has no hex cast, computes it too (in BIGINT: Spark's
    ``strpos`` is an INT, whose products would overflow)."""
    digits = " + ".join(
        f"CAST(strpos('0123456789abcdef', substr({hex_digits}, {i + 1}, 1)) - 1 AS BIGINT) * "
        f"{16 ** (_SK_HEX_DIGITS - 1 - i)}"
        for i in range(_SK_HEX_DIGITS)
    )
    return f"greatest({digits}, 1)"


# Which event of a run gives the version its type-1 values: the latest new event after the
# run's start; else the version already stored (its values may come from an event absorbed
# later than its start, so they outrank new events at the start); else a new event at the start.
_TYPE1_RANK = (
    f"CASE WHEN _scd2_stored = 1 THEN 1 WHEN {EFFECTIVE_AT} > _scd2_start THEN 2 ELSE 0 END"
)


def _fold_sql(spec: SCD2Spec) -> str:
    nk, attrs, sk = _list(spec.natural_key), _list(spec.attributes), _q(spec.sk_column)
    null_attrs = ", ".join(f"NULL AS {_q(a)}" for a in spec.attributes)
    masked = ", ".join(
        f"CASE WHEN {IS_DELETE} THEN NULL ELSE {_q(a)} END AS {_q(a)}" for a in spec.attributes
    )
    in_order = f"PARTITION BY {nk} ORDER BY {EFFECTIVE_AT}, {IS_DELETE}, _scd2_state"
    out = _list(spec.columns)
    same_key = " AND ".join(f"t.{_q(k)} = h.{_q(k)}" for k in spec.natural_key)
    touched = f"EXISTS (SELECT 1 FROM touched t WHERE {same_key})"  # h: a history row
    type1 = f", {_json_sql(spec.type1)} DESC" if spec.type1 else ""
    return f"""
WITH new_ev AS (
  SELECT {nk}, {masked}, CAST({EFFECTIVE_AT} AS TIMESTAMP) AS {EFFECTIVE_AT}, {IS_DELETE},
         0 AS _scd2_stored
  FROM events
),
touched AS (SELECT DISTINCT {nk} FROM new_ev),
old AS (SELECT {out} FROM history h WHERE {touched} AND {sk} <> {UNKNOWN_SK}),
ev AS (
  SELECT * FROM new_ev
  UNION SELECT {nk}, {attrs}, {EFFECTIVE_AT}, false, 1 FROM old
  UNION SELECT {nk}, {null_attrs}, {VALID_TO}, true, 1 FROM old WHERE {IS_DELETED}
),
states AS (
  SELECT *, coalesce({ROW_HASH}, 'deleted') AS _scd2_state
  FROM (SELECT *, CASE WHEN {IS_DELETE} THEN NULL ELSE {_row_hash_sql(spec)} END AS {ROW_HASH}
        FROM ev) e
),
runs AS (  -- a run: consecutive events in one state; it starts at its first event
  SELECT *, max(CASE WHEN _scd2_prev IS DISTINCT FROM _scd2_state THEN {EFFECTIVE_AT} END)
              OVER ({in_order}) AS _scd2_start
  FROM (SELECT *, lag(_scd2_state) OVER ({in_order}) AS _scd2_prev FROM states) s
),
picked AS (  -- one row per run, carrying its type-1 values (see _TYPE1_RANK)
  SELECT * FROM (
    SELECT *, row_number() OVER (
      PARTITION BY {nk}, _scd2_start, _scd2_state
      ORDER BY {_TYPE1_RANK} DESC, {EFFECTIVE_AT} DESC{type1}) AS _scd2_rank
    FROM runs
  ) r WHERE _scd2_rank = 1
),
versions AS (
  SELECT *, lead(_scd2_start) OVER r AS _scd2_end, lead({IS_DELETE}) OVER r AS _scd2_end_delete,
         sum(CASE WHEN {IS_DELETE} THEN 0 ELSE 1 END) OVER r AS _scd2_nth
  FROM picked WINDOW r AS (PARTITION BY {nk} ORDER BY _scd2_start, {IS_DELETE}, _scd2_state)
)
SELECT {out} FROM history h WHERE NOT {touched}
UNION ALL SELECT {out} FROM history h WHERE {touched} AND {sk} = {UNKNOWN_SK}
UNION ALL
SELECT {_sk_sql("_scd2_hex")} AS {sk}, {nk}, {attrs}, _scd2_start AS {EFFECTIVE_AT},
       CASE WHEN _scd2_nth = 1 THEN {_LOW_SQL} ELSE _scd2_start END AS {VALID_FROM},
       coalesce(_scd2_end, {_HIGH_SQL}) AS {VALID_TO},
       _scd2_end IS NULL AS {IS_CURRENT},
       coalesce(_scd2_end_delete, false) AS {IS_DELETED},
       {ROW_HASH}
FROM (SELECT *, {_sk_hex_sql(spec)} AS _scd2_hex FROM versions WHERE NOT {IS_DELETE}) v
"""
