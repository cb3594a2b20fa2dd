"""The review event contract, declared once: a pydantic model the producer serialises, the docs
print (``medallion stream schema``), and from which the consumer's set-based validation SQL is
derived (one DuckDB query checks a whole micro-batch; no per-event Python).

An event is one JSON object, keyed by ``order_id`` on the topic (per-order ordering).
Timestamps are ISO 8601 in UTC without an offset (``2018-03-01T09:00:00``), like the source.
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
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?$"


def _problems(f: EventField) -> list[tuple[str, str]]:
    """(SQL condition that is true when the field is wrong, reason) in the order checked,
    over the field's JSON value ``_j_<name>`` (NULL when absent), its JSON type ``_t_<name>``
    and its text ``_s_<name>``."""
    jtype, text = f"_t_{f.name}", f"_s_{f.name}"
    checks: list[tuple[str, str]] = []
    if f.required:
        checks.append((f"_j_{f.name} IS NULL", f"{f.name}: missing"))
    if not f.nullable:
        checks.append((f"{jtype} = 'NULL'", f"{f.name}: null"))
    types = ", ".join(f"'{t}'" for t in _JSON_TYPES[f.kind])
    checks.append((f"{jtype} NOT IN ('NULL', {types})", f"{f.name}: wrong type"))
    typed = f"{jtype} IN ({types})"
    if f.kind == "timestamp":
        bad = (
            f"NOT regexp_full_match({text}, '{_TIMESTAMP}') "
            f"OR TRY_CAST({text} AS TIMESTAMP) IS NULL"
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
        number = f"TRY_CAST({text} AS HUGEINT)"
        low = f"{number} < {f.ge}" if f.ge is not None else "FALSE"
        high = f"{number} > {f.le}" if f.le is not None else "FALSE"
        checks.append((f"{typed} AND ({low} OR {high})", f"{f.name}: out of range {f.ge}..{f.le}"))
    return checks


def _reason_sql() -> str:
    """A CASE giving the first problem of a message (NULL: a valid event)."""
    known = ", ".join(f"'{f.name}'" for f in FIELDS)
    cases = [
        ("value IS NULL OR octet_length(value) = 0", "empty message"),
        ("v IS NULL", "not UTF-8 text"),
        ("NOT json_valid(v)", "not JSON"),
        ("json_type(v) <> 'OBJECT'", "not a JSON object"),
        (
            f"len(list_filter(json_keys(v), lambda k: k NOT IN ({known}))) > 0",
            "unexpected field(s)",
        ),
    ]
    for f in FIELDS:
        cases += _problems(f)
    whens = "\n".join(f"        WHEN {cond} THEN '{reason}'" for cond, reason in cases)
    return f"CASE\n{whens}\n        ELSE NULL END"


_SQL_TYPES = {"text": "VARCHAR", "int": "BIGINT", "timestamp": "TIMESTAMP"}
REASON_SQL = _reason_sql()


def validate_sql(raw: str = "raw") -> str:
    """Every row of table ``raw`` (its ``value`` column holds the message bytes) with
    ``_reason`` (NULL when the event is valid) and the typed fields (NULL when not). Each
    message is parsed once: all fields come out of one ``json_extract`` with a list of paths."""
    paths = ", ".join(f"'$.{f.name}'" for f in FIELDS)
    parts = ", ".join(f"_parts[{i + 1}] AS _j_{f.name}" for i, f in enumerate(FIELDS))
    facets = ", ".join(
        f"json_type(_j_{f.name}) AS _t_{f.name}, "
        f"json_extract_string(_j_{f.name}, '$') AS _s_{f.name}"
        for f in FIELDS
    )
    helpers = ", ".join(
        ["v", "_object", "_parts", *(f"_{x}_{f.name}" for f in FIELDS for x in "jts")]
    )
    typed = ", ".join(
        f"CASE WHEN _reason IS NULL THEN CAST(_s_{f.name} AS {_SQL_TYPES[f.kind]}) END "
        f"AS {quote(f.name)}"
        for f in FIELDS
    )
    return f"""
    WITH r AS (SELECT *, try(decode(value)) AS v FROM {raw}),
    o AS (
        SELECT *, CASE WHEN json_valid(v) THEN json_type(v) = 'OBJECT' ELSE FALSE END AS _object
        FROM r
    ),
    p AS (SELECT *, CASE WHEN _object THEN json_extract(v, [{paths}]) END AS _parts FROM o),
    f AS (SELECT *, {parts} FROM p),
    t AS (SELECT *, {facets} FROM f),
    checked AS (SELECT *, {REASON_SQL} AS _reason FROM t)
    SELECT * EXCLUDE ({helpers}), {typed} FROM checked
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
