"""The consumer's validation SQL and the pydantic model agree on every message: a message gets
no reason from ``contract.validate_sql()`` exactly when ``ReviewEvent.model_validate_json``
accepts it, and then the typed fields equal the model's."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from medallion.engine import default_engine
from medallion.stream.contract import FIELDS, ReviewEvent, dumps, example, json_schema, validate_sql

NAMES = [f.name for f in FIELDS]
HEX = "0123456789abcdef"


def validate(values: list[bytes | None]) -> list[dict[str, Any]]:
    raw = pa.table({"value": pa.array(values, pa.binary())})
    result: list[dict[str, Any]] = default_engine().query(validate_sql(), {"raw": raw}).to_pylist()
    return result


def pydantic_accepts(value: bytes) -> ReviewEvent | None:
    try:
        return ReviewEvent.model_validate_json(value)
    except ValidationError:
        return None


# -- values of every kind, right and wrong -------------------------------------------------------
hex32 = st.text(HEX, min_size=32, max_size=32)
bad_hex = st.one_of(
    st.text(HEX + "ABCDEFxg", min_size=30, max_size=34),
    hex32.map(str.upper),
    hex32.map(lambda h: h + "\n"),
    hex32.map(lambda h: " " + h[1:]),
    st.text(max_size=40),
)
two = st.integers(0, 99).map("{:02d}".format)
timestamp_text = st.builds(
    lambda y, mo, d, sep, h, mi, sec, frac, off: f"{y}-{mo}-{d}{sep}{h}:{mi}{sec}{frac}{off}",
    st.sampled_from(["0000", "0001", "1969", "2016", "2018", "2020", "9999"]),
    st.sampled_from(["00", "01", "02", "03", "12", "13"]),
    st.sampled_from(["00", "01", "28", "29", "30", "31", "32"]),
    st.sampled_from(["T", "t", "_", " ", "", "x", "/"]),
    st.sampled_from(["00", "09", "23", "24", "25", "9"]),
    st.sampled_from(["00", "59", "60", "5"]),
    st.one_of(st.just(""), two.map(":{}".format), st.just(":60"), st.just(":5")),
    st.one_of(
        st.just(""),
        st.builds("{}{}".format, st.sampled_from([".", ","]), st.text("0123456789", max_size=12)),
    ),
    st.sampled_from(["", "", "", "Z", "z", "+00:00", "-03:00", "+0000", " UTC", " "]),
)
timestamps = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)).map(datetime.isoformat),
    timestamp_text,
    st.dates().map(str),  # date only
    st.integers(0, 2**40).map(str),  # epoch seconds as text
    st.text(max_size=30),
)
long_text = st.builds(lambda c, n: c * n, st.characters(), st.integers(1995, 2005))
texts = st.one_of(st.text(max_size=60), long_text)
ints = st.one_of(st.integers(-3, 12), st.integers(-(2**130), 2**130))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=4,
)
RIGHT: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(st.none(), texts),
    "int": ints,
    "timestamp": timestamps,
}
WRONG_TYPES = {
    "text": st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), json_values),
    "int": st.one_of(
        st.booleans(), st.floats(allow_nan=False, allow_infinity=False), ints.map(str), json_values
    ),
    "timestamp": st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), json_values),
}


def field_values(name: str) -> st.SearchStrategy[Any]:
    f = next(f for f in FIELDS if f.name == name)
    if f.pattern is not None:
        return st.one_of(hex32, bad_hex, WRONG_TYPES["text"], st.none())
    return st.one_of(RIGHT[f.kind], WRONG_TYPES[f.kind], st.none())


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    moment = st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31))
    return {
        "schema_version": 1,
        "event_id": draw(hex32),
        "review_id": draw(hex32),
        "order_id": draw(hex32),
        "review_score": draw(st.integers(1, 5)),
        "review_comment_title": draw(st.none() | st.text(max_size=40)),
        "review_comment_message": draw(st.none() | st.text(max_size=200)),
        "review_creation_date": draw(moment).isoformat(),
        "review_answer_timestamp": draw(st.none() | moment.map(datetime.isoformat)),
        "event_time": draw(moment).isoformat(),
    }


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    event = draw(valid_events())
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["drop", "add", "set", "null"]))
        name = draw(st.sampled_from(NAMES))
        if what == "drop":
            event.pop(name, None)
        elif what == "add":
            event[draw(st.text(max_size=12))] = draw(json_values)
        elif what == "null":
            event[name] = None
        else:
            event[name] = draw(field_values(name))
    text = json.dumps(
        event,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    if draw(st.integers(0, 4)) == 0:  # the same field again: pydantic takes the last value
        name = draw(st.sampled_from(NAMES))
        again = json.dumps({name: draw(field_values(name))})[1:-1]
        text = text[:-1] + ("," if event else "") + again + "}"
    data = text.encode()
    match draw(st.integers(0, 9)):
        case 0:  # not JSON: cut short
            data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
        case 1:  # bytes that are not UTF-8, anywhere
            at = draw(st.integers(0, len(data)))
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf"]))
            data = data[:at] + bad + data[at:]
        case 2:  # around the object
            data = draw(st.sampled_from([b" ", b"\n", b"\xef\xbb\xbf", b"[", b""])) + data
            data += draw(st.sampled_from([b" ", b"\n", b"]", b"{}", b"x", b""]))
        case 3:
            data = draw(st.binary(max_size=40))
        case _:
            pass
    return data


# `make test` checks the same examples every time; MEDALLION_PROPERTY_EXAMPLES=N explores N new ones
SOAK = os.environ.get("MEDALLION_PROPERTY_EXAMPLES")


@settings(
    max_examples=int(SOAK or 60),
    derandomize=SOAK is None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(mutated_events(), min_size=1, max_size=40))
def test_sql_validation_agrees_with_the_pydantic_model(messages: list[bytes]) -> None:
    for message, row in zip(messages, validate(list(messages)), strict=True):
        model = pydantic_accepts(message)
        assert (row["_reason"] is None) == (model is not None), (message, row["_reason"])
        if model is not None:
            assert {n: row[n] for n in NAMES} == model.model_dump(), message


def test_a_valid_example_and_its_typed_fields() -> None:
    [row] = validate([dumps(example())])
    assert row["_reason"] is None
    assert row["review_score"] == 5 and row["event_time"] == datetime(2018, 3, 2, 10)
    assert row["review_comment_title"] is None


def with_field(name: str, value: Any) -> bytes:
    return dumps(example(**{name: value}))


def without(name: str) -> bytes:
    event = example()
    del event[name]
    return dumps(event)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b'{"review_score": "\xff"}', "not UTF-8 text"),
        (b"review 5 stars", "not JSON"),
        (dumps(example())[:-1], "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (dumps(example(rating=5)), "unexpected field(s)"),
        (without("review_score"), "review_score: missing"),
        (with_field("review_score", None), "review_score: null"),
        (with_field("review_score", "5"), "review_score: wrong type"),
        (with_field("review_score", 5.0), "review_score: wrong type"),
        (with_field("review_score", True), "review_score: wrong type"),
        (with_field("review_score", 0), "review_score: out of range 1..5"),
        (with_field("review_score", 6), "review_score: out of range 1..5"),
        (with_field("review_score", 10**40), "review_score: out of range 1..5"),
        (with_field("schema_version", 2), "schema_version: out of range 1..1"),
        (with_field("order_id", "B" * 32), "order_id: malformed"),
        (with_field("event_id", "e" * 31), "event_id: malformed"),
        (with_field("review_comment_title", "x" * 2001), "review_comment_title: too long"),
        (with_field("event_time", "2018-03-01T09:00:00Z"), "event_time: not a UTC timestamp"),
        (with_field("event_time", "2018-03-01T09:00:00+00:00"), "event_time: not a UTC timestamp"),
        (with_field("event_time", "2018-02-29T09:00:00"), "event_time: not a UTC timestamp"),
        (with_field("event_time", "2018-03-01"), "event_time: not a UTC timestamp"),
        (with_field("event_time", "0000-01-01T00:00:00"), "event_time: not a UTC timestamp"),
        (with_field("event_time", "2018-03-01T24:00:00"), "event_time: not a UTC timestamp"),
        (with_field("event_time", 1519894800), "event_time: wrong type"),
        (with_field("review_answer_timestamp", "soon"),
         "review_answer_timestamp: not a UTC timestamp"),
        (dumps(example())[:-1] + b',"review_score":9}', "review_score: out of range 1..5"),
    ],
)  # fmt: skip
def test_exact_reasons(message: bytes | None, reason: str) -> None:
    [row] = validate([message])
    assert row["_reason"] == reason
    assert all(row[n] is None for n in NAMES)  # nothing typed out of an invalid event
    if message is not None:
        assert pydantic_accepts(message) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-03-01 09:00:00", datetime(2018, 3, 1, 9)),
        ("2018-03-01t09:00", datetime(2018, 3, 1, 9)),
        ("2018-03-01_09:00:00,5", datetime(2018, 3, 1, 9, 0, 0, 500_000)),
        ("2018-03-01T09:00:00.1234567", datetime(2018, 3, 1, 9, 0, 0, 123_456)),
    ],
)
def test_timestamps_pydantic_also_accepts(text: str, expected: datetime) -> None:
    message = with_field("event_time", text)
    [row] = validate([message])
    assert row["_reason"] is None and row["event_time"] == expected
    model = pydantic_accepts(message)
    assert model is not None and model.event_time == expected


def test_a_field_named_twice_takes_its_last_value() -> None:
    message = dumps(example(review_score=9))[:-1] + b',"review_score":4}'
    [row] = validate([message])
    assert row["_reason"] is None and row["review_score"] == 4
    model = pydantic_accepts(message)
    assert model is not None and model.review_score == 4


def test_the_json_schema_names_every_field() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(NAMES)
    assert schema["additionalProperties"] is False
