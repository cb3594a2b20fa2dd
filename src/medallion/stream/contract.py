"""The review event contract, declared once: a pydantic model the producer serialises, the docs
print (``medallion stream schema``), and from which the consumer's set-based validation SQL is
derived (one DuckDB query checks a whole micro-batch; no per-event Python).

An event is one JSON object, keyed by ``order_id`` on the topic (per-order ordering).
Timestamps are ISO 8601 in UTC without an offset (``2018-03-01T09:00:00``), like the source.

The model is the contract: the SQL accepts exactly what ``ReviewEvent.model_validate_json``
accepts (``tests/unit/stream/test_stream_contract.py`` checks it property-based), including
pydantic's leniencies: a timestamp may use ``t``, ``_`` or a space for ``T``, omit the
seconds and give any number of fraction digits after ``.`` or ``,``; a field named twice
takes its last value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, NaiveDatetime, StringConstraints

from medallion.sql import quote

SCHEMA_VERSION = 1
HEX32 = r"^[0-9a-f]{32}$"
Hex32 = Annotated[str, StringConstraints(pattern=HEX32)]
Text = Annotated[str, StringConstraints(max_length=2000)]


class ReviewEvent(BaseModel):
    """A customer review of an order, as the review service publishes it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    schema_version: int = Field(ge=1, le=1, description="the contract's version (1)")
    event_id: Hex32 = Field(description="unique per event; a redelivered event keeps it")
    review_id: Hex32
    order_id: Hex32 = Field(description="the reviewed order; also the message key")
    review_score: int = Field(ge=1, le=5)
    review_comment_title: Text | None = None
    review_comment_message: Text | None = None
    review_creation_date: NaiveDatetime
    review_answer_timestamp: NaiveDatetime | None = None
    event_time: NaiveDatetime = Field(description="when the event happened; the newest wins")

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


def json_schema() -> dict[str, Any]:
    return ReviewEvent.model_json_schema()


# -- the contract as SQL ----------------------------------------------------------------------
@dataclass(frozen=True)
class EventField:
    """One field of the contract, as the validation SQL needs it."""

    name: str
    kind: Literal["text", "int", "timestamp"]
    required: bool
    nullable: bool
    pattern: str | None = None
    max_length: int | None = None
    ge: int | None = None
    le: int | None = None

    @property
    def arrow(self) -> pa.DataType:
        return {
            "text": pa.string(),
            "int": pa.int64(),
            "timestamp": pa.timestamp("us"),
        }[self.kind]


def _kind(annotation: Any) -> Literal["text", "int", "timestamp"]:
    if annotation is int:
        return "int"
    if annotation is NaiveDatetime or annotation is datetime:
        return "timestamp"
    return "text"


def _unwrap(annotation: Any) -> tuple[Any, bool, list[Any]]:
    """(base type, nullable, constraint objects) of a field's annotation."""
    nullable = type(None) in get_args(annotation)
    if nullable:
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    metadata: list[Any] = []
    if get_origin(annotation) is Annotated:
        annotation, *metadata = get_args(annotation)
    return annotation, nullable, metadata


def _fields() -> tuple[EventField, ...]:
    out = []
    for name, info in ReviewEvent.model_fields.items():
        base, nullable, metadata = _unwrap(info.annotation)
        constraints: dict[str, Any] = {}
        for m in [*metadata, *info.metadata]:
            for attr in ("pattern", "max_length", "ge", "le"):
                if getattr(m, attr, None) is not None:
                    constraints[attr] = getattr(m, attr)
        out.append(EventField(name, _kind(base), info.is_required(), nullable, **constraints))
    return tuple(out)


FIELDS = _fields()
_JSON_TYPES = {"text": ("VARCHAR",), "int": ("BIGINT", "UBIGINT"), "timestamp": ("VARCHAR",)}
# What pydantic's datetime parser accepts without an offset (an offset is refused: naive
# datetimes only): a separator T, t, _ or space; seconds optional; a fraction after . or ,
# of any length (truncated to microseconds). The year is 0001..9999 and the hour 00..23 there,
# which DuckDB's cast alone would not enforce (it takes year 0 and 24:00:00).
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[Tt_ ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?$"
_INTEGER = r"^-?\d+$"
# Each field's JSON type and text, read in one pass over the document per row (a JSON
# function parses its whole argument each time it is called)
_PATHS = "[" + ", ".join(f"'$.{f.name}'" for f in FIELDS) + "]"


def _timestamp_text(text: str) -> str:
    """SQL turning an accepted timestamp text into ``YYYY-MM-DD HH:MM:SS[.f]`` for a cast."""
    return (
        f"substr({text}, 1, 10) || ' ' || substr({text}, 12, 5) || "
        f"CASE WHEN length({text}) = 16 THEN ':00' ELSE replace(substr({text}, 17), ',', '.') END"
    )


def _problems(f: EventField, i: int) -> list[tuple[str, str]]:
    """(SQL condition that is true when the field is wrong, reason) in the order checked;
    ``_types[i]`` and ``_texts[i]`` are the field's JSON type (NULL: absent) and text."""
    jtype, text = f"_types[{i}]", f"_texts[{i}]"
    checks: list[tuple[str, str]] = []
    if f.required:
        checks.append((f"{jtype} IS NULL", f"{f.name}: missing"))
    if not f.nullable:
        checks.append((f"{jtype} = 'NULL'", f"{f.name}: null"))
    value = f"{jtype} IS NOT NULL AND {jtype} <> 'NULL'"
    right_type = f"{jtype} IN ({', '.join(repr(t) for t in _JSON_TYPES[f.kind])})"
    if f.kind == "int":  # DuckDB types an integer beyond 64 bits as DOUBLE, pydantic as int
        integral = f"regexp_full_match({text}, '{_INTEGER.strip('^$')}')"
        right_type = f"({right_type} OR ({jtype} = 'DOUBLE' AND {integral}))"
    checks.append((f"{value} AND NOT {right_type}", f"{f.name}: wrong type"))
    typed = f"{value} AND {right_type}"
    if f.kind == "timestamp":
        bad = (
            f"NOT regexp_full_match({text}, '{_TIMESTAMP.strip('^$')}') "
            f"OR substr({text}, 1, 4) = '0000' OR substr({text}, 12, 2) > '23' "
            f"OR TRY_CAST({_timestamp_text(text)} AS TIMESTAMP) IS NULL"
        )
        checks.append((f"{typed} AND ({bad})", f"{f.name}: not a UTC timestamp"))
    if f.pattern is not None:
        checks.append(
            (f"{typed} AND NOT regexp_full_match({text}, '{f.pattern.strip('^$')}')",
             f"{f.name}: malformed")
        )  # fmt: skip
    if f.max_length is not None:
        checks.append((f"{typed} AND length({text}) > {f.max_length}", f"{f.name}: too long"))
    if f.ge is not None or f.le is not None:
        number = f"TRY_CAST({text} AS HUGEINT)"  # NULL: beyond 128 bits, so out of any range
        low = f" OR {number} < {f.ge}" if f.ge is not None else ""
        high = f" OR {number} > {f.le}" if f.le is not None else ""
        checks.append(
            (f"{typed} AND ({number} IS NULL{low}{high})", f"{f.name}: out of range {f.ge}..{f.le}")
        )
    return checks


def _reason_sql() -> str:
    """A CASE giving the first problem of raw message ``value`` (NULL: a valid event), over
    the columns :func:`validate_sql` prepares: ``v`` (the text), ``_keys`` (its keys, when an
    object), ``_types`` and ``_texts`` (each field's JSON type and text)."""
    known = ", ".join(f"'{f.name}'" for f in FIELDS)
    cases = [
        ("value IS NULL OR octet_length(value) = 0", "empty message"),
        ("v IS NULL", "not UTF-8 text"),
        ("NOT json_valid(v)", "not JSON"),
        ("_keys IS NULL", "not a JSON object"),
        (f"len(list_filter(_keys, lambda k: k NOT IN ({known}))) > 0", "unexpected field(s)"),
    ]
    for i, f in enumerate(FIELDS, start=1):
        cases += _problems(f, i)
    whens = "\n".join(f"        WHEN {cond} THEN '{reason}'" for cond, reason in cases)
    return f"CASE\n{whens}\n        ELSE NULL END"


_SQL_TYPES = {"text": "VARCHAR", "int": "BIGINT", "timestamp": "TIMESTAMP"}
REASON_SQL = _reason_sql()
# An object naming a field twice means its last value, as in pydantic (and Python's json):
# such an object is rebuilt from the last occurrence of each key before it is checked.
_LAST_WINS = (
    "'{' || array_to_string(list_transform(list_filter(range(1, len(_keys) + 1), "
    "lambda i: NOT list_contains(_keys[i + 1:], _keys[i])), "
    "lambda i: to_json(_keys[i]) || ':' || json_extract(_text, '$.*')[i]), ',') || '}'"
)


def _typed_value(f: EventField, i: int) -> str:
    text = f"_texts[{i}]"
    if f.kind == "timestamp":
        text = _timestamp_text(text)
    return f"CAST({text} AS {_SQL_TYPES[f.kind]})"


def validate_sql(raw: str = "raw") -> str:
    """Every row of table ``raw`` (its ``value`` column holds the message bytes) with
    ``_reason`` (NULL when the event is valid) and the typed fields (NULL when not)."""
    typed = ", ".join(
        f"CASE WHEN _reason IS NULL THEN {_typed_value(f, i)} END AS {quote(f.name)}"
        for i, f in enumerate(FIELDS, start=1)
    )
    return f"""
    WITH r AS (SELECT *, try(decode(value)) AS _text FROM {raw}),
    o AS (
        SELECT *, CASE WHEN _text IS NULL OR NOT json_valid(_text) THEN NULL
                       WHEN json_type(_text) <> 'OBJECT' THEN NULL
                       ELSE json_keys(_text) END AS _keys
        FROM r
    ),
    d AS (
        SELECT * EXCLUDE (_text),
               CASE WHEN len(_keys) > len(list_distinct(_keys)) THEN {_LAST_WINS}
                    ELSE _text END AS v
        FROM o
    ),
    f AS (
        SELECT *, CASE WHEN _keys IS NOT NULL THEN json_type(v, {_PATHS}) END AS _types,
                  CASE WHEN _keys IS NOT NULL THEN json_extract_string(v, {_PATHS}) END AS _texts
        FROM d
    ),
    checked AS (SELECT *, {REASON_SQL} AS _reason FROM f)
    SELECT * EXCLUDE (v, _keys, _types, _texts), {typed} FROM checked
    """


def example(**overrides: Any) -> dict[str, Any]:
    """A valid event as a JSON-ready dict (docs and tests)."""
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": "e" * 32,
        "review_id": "a" * 32,
        "order_id": "b" * 32,
        "review_score": 5,
        "review_comment_title": None,
        "review_comment_message": "chegou antes do prazo",
        "review_creation_date": "2018-03-01T00:00:00",
        "review_answer_timestamp": "2018-03-02T10:00:00",
        "event_time": "2018-03-02T10:00:00",
    }
    return event | overrides


def dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
