"""The producer side of the review stream: synthetic review events of existing orders (with
defects on demand), a replay of the source's reviews as events, and publishing messages to the
topic.

Messages are built set-based (numpy draws, Arrow columns, one DuckDB query serialising every
event); only :func:`publish` goes message by message, because that is how a Kafka client sends.
A message table has the columns ``key`` (binary: the order_id), ``value`` (binary: the JSON
event) and ``kind`` (what the message is: ``valid``, a defect of :data:`DEFECTS`, or
``replay``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import source_table
from medallion.engine import default_engine
from medallion.errors import ConfigError, StreamError
from medallion.settings import Settings, redact_url
from medallion.source.arrays import (
    DAY,
    I64,
    Rng,
    allocate,
    choose,
    day_start,
    random_ids,
    seconds,
    timestamps,
)
from medallion.source.orders import review_texts
from medallion.source.profile import SCORE_SHARES, SCORES
from medallion.stream import kafka
from medallion.stream.contract import HEX32, SCHEMA_VERSION

log = logging.getLogger(__name__)

# A defect is a message the consumer must not take as a new valid event: three break the
# contract, an unknown order is valid but points nowhere, a duplicate repeats an event.
DEFECTS = ("not_json", "wrong_type", "score_out_of_range", "unknown_order", "duplicate")
KINDS = ("valid", *DEFECTS)
MAX_DIRTY_RATE = 0.5
UPDATE_SHARE = 0.1  # of the valid events: a later version of an earlier review
NO_ANSWER_SHARE = 0.05  # reviews not answered yet: their event time is the creation date
HOUR = 3600
MESSAGE_COLUMNS = ("key", "value", "kind")


# -- synthetic events ------------------------------------------------------------------------
def synthetic_events(
    orders: pa.Table, *, count: int, seed: int, dirty_rate: float, start: datetime
) -> pa.Table:
    """``count`` messages: new reviews of ``orders`` (``order_id``, ``order_purchase_timestamp``)
    and, for ``dirty_rate`` of them, defects split evenly over :data:`DEFECTS`.

    Deterministic per ``seed`` (and inputs). A review is created on one of the 30 days after
    its order's purchase or ``start``, whichever is later, and answered 1 hour to 5 days after
    that (5 % not yet: the event time is then the creation date). A tenth of the valid events
    update an earlier review (same review and order, a different score, a later event time,
    a new event id). Messages come roughly in event-time order (within a day, so an update can
    arrive before the review it updates); a duplicate comes after the message it repeats.
    Orders whose id is not 32-character lowercase hex are never reviewed.
    """
    if count < 0:
        raise ConfigError(f"count must be 0 or more, got {count}")
    if not 0 <= dirty_rate <= MAX_DIRTY_RATE:
        raise ConfigError(f"dirty rate must be between 0 and {MAX_DIRTY_RATE}, got {dirty_rate}")
    known = _reviewable(orders)
    if known.num_rows == 0:
        raise ConfigError(
            "no order to review: synthetic events need orders with a 32-character hex order_id"
        )
    rng = np.random.default_rng(seed)
    dirty = int(count * dirty_rate + 0.5)
    not_json, wrong_type, out_of_range, unknown, duplicate = (
        int(n) for n in allocate(dirty, [1.0] * len(DEFECTS))
    )
    valid = count - dirty
    updates = int(valid * UPDATE_SHARE)
    fresh = valid - updates
    kinds = np.repeat(
        np.array(["valid", "unknown_order", "not_json", "wrong_type", "score_out_of_range"]),
        [fresh, unknown, not_json, wrong_type, out_of_range],
    )
    new = _new_reviews(rng, known, kinds, _epoch_seconds(start))
    # the valid events first (new reviews, then updates of some), then the other kinds
    events = pa.concat_tables(
        [new.slice(0, fresh), _updates(rng, new, fresh, updates), new.slice(fresh)]
    )
    serialised = _serialise(rng, events)
    if duplicate:
        if valid == 0:  # pragma: no cover - dirty_rate <= 0.5 leaves valid events to repeat
            raise ConfigError("duplicates need valid events to repeat")
        again = rng.integers(0, valid, duplicate)
        copies = serialised.take(pa.array(again))
        later = pc.add(copies["_pos"], pa.array(rng.integers(1, DAY, duplicate)))
        copies = copies.set_column(copies.schema.get_field_index("_pos"), "_pos", later)
        copies = copies.set_column(
            copies.schema.get_field_index("kind"), "kind", pa.repeat("duplicate", duplicate)
        )
        serialised = pa.concat_tables([serialised, copies])
    serialised = serialised.append_column("_row", pa.array(np.arange(serialised.num_rows)))
    ordered = serialised.sort_by([("_pos", "ascending"), ("_row", "ascending")])
    return ordered.select(list(MESSAGE_COLUMNS))


def _reviewable(orders: pa.Table) -> pa.Table:
    ids = pc.cast(orders["order_id"], pa.string())
    ok = pc.fill_null(pc.match_substring_regex(ids, HEX32), False)
    purchased = pc.cast(orders["order_purchase_timestamp"], pa.timestamp("us"))
    table = pa.table({"order_id": ids, "order_purchase_timestamp": purchased})
    return table.filter(ok)


def _epoch_seconds(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp())


def _new_reviews(rng: Rng, known: pa.Table, kinds: np.ndarray[Any, Any], start: int) -> pa.Table:
    """One new review per entry of ``kinds``, of a random known order (an unknown one for
    ``unknown_order``)."""
    n = len(kinds)
    pick = rng.integers(0, known.num_rows, n)
    order_ids = known["order_id"].take(pa.array(pick)).combine_chunks()
    purchase = seconds(known, "order_purchase_timestamp")[pick]
    foreign = np.flatnonzero(kinds == "unknown_order")
    if len(foreign):
        order_ids = _replace(order_ids, foreign, _unknown_ids(rng, len(foreign), known))
        purchase[foreign] = start
    score = np.asarray(SCORES, dtype=np.int64)[choose(rng, n, SCORE_SHARES)]
    title, message = review_texts(rng, score)
    created = day_start(np.maximum(purchase, start)) + DAY * rng.integers(1, 31, n)
    answered = created + rng.integers(HOUR, 5 * DAY, n)
    no_answer = rng.random(n) < NO_ANSWER_SHARE
    return _events(
        kinds=pa.array(kinds, pa.string()),
        event_id=random_ids(rng, n),
        review_id=random_ids(rng, n),
        order_id=order_ids,
        score=score,
        title=title,
        message=message,
        created=created,
        answered=answered,
        no_answer=no_answer,
        event_time=np.where(no_answer, created, answered),
    )


def _unknown_ids(rng: Rng, n: int, known: pa.Table) -> pa.Array:
    """``n`` valid ids that are no known order's (a clash of 128 random bits is redrawn)."""
    ids = random_ids(rng, n)
    while True:
        clash = np.flatnonzero(pc.is_in(ids, value_set=known["order_id"]).to_numpy(False))
        if not len(clash):
            return ids
        ids = _replace(ids, clash, random_ids(rng, len(clash)))  # pragma: no cover


def _replace(values: pa.Array, rows: I64, new: pa.Array) -> pa.Array:
    mask = np.zeros(len(values), dtype=np.bool_)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), new)


def _updates(rng: Rng, events: pa.Table, fresh: int, n: int) -> pa.Table:
    """``n`` updates of distinct fresh reviews: a new score and texts, answered again 1 hour to
    10 days after the event it updates (which is the update's event time)."""
    target = pa.array(np.sort(rng.choice(fresh, n, replace=False)) if n else np.zeros(0, int))
    base = events.take(target)
    old = np.asarray(base["review_score"].to_numpy(), dtype=np.int64)
    score = (old - 1 + rng.integers(1, 5, n)) % 5 + 1
    title, message = review_texts(rng, score)
    event_time = seconds(base, "event_time") + rng.integers(HOUR, 10 * DAY, n)
    return _events(
        kinds=pa.repeat("valid", n),
        event_id=random_ids(rng, n),
        review_id=base["review_id"],
        order_id=base["order_id"],
        score=score,
        title=title,
        message=message,
        created=seconds(base, "review_creation_date"),
        answered=event_time,
        no_answer=np.zeros(n, dtype=np.bool_),
        event_time=event_time,
    )


def _events(
    *,
    kinds: pa.Array,
    event_id: pa.Array | pa.ChunkedArray,
    review_id: pa.Array | pa.ChunkedArray,
    order_id: pa.Array | pa.ChunkedArray,
    score: I64,
    title: pa.Array,
    message: pa.Array,
    created: I64,
    answered: I64,
    no_answer: np.ndarray[Any, np.dtype[np.bool_]],
    event_time: I64,
) -> pa.Table:
    return pa.table(
        {
            "kind": kinds,
            "event_id": event_id,
            "review_id": review_id,
            "order_id": order_id,
            "review_score": pa.array(score, pa.int64()),
            "review_comment_title": title,
            "review_comment_message": message,
            "review_creation_date": timestamps(created),
            "review_answer_timestamp": timestamps(answered, no_answer),
            "event_time": timestamps(event_time),
        }
    )


_TS = "%Y-%m-%dT%H:%M:%S"


def _ts(column: str) -> str:
    """SQL: a timestamp as the contract's text (whole seconds, or with microseconds)."""
    return (
        f"CASE WHEN date_trunc('second', {column}) = {column} THEN strftime({column}, '{_TS}') "
        f"ELSE strftime({column}, '{_TS}.%f') END"
    )


def _event_json(score: str, schema_version: str, event_time: str, event_id: str) -> str:
    """SQL: one event as a JSON object, fields in the contract's order (JSON-typed values)."""
    return f"""json_object(
        'schema_version', {schema_version},
        'event_id', {event_id},
        'review_id', review_id,
        'order_id', order_id,
        'review_score', {score},
        'review_comment_title', review_comment_title,
        'review_comment_message', review_comment_message,
        'review_creation_date', {_ts("review_creation_date")},
        'review_answer_timestamp', {_ts("review_answer_timestamp")},
        'event_time', {event_time})"""


# a defect changes one part of an otherwise valid event; wrong_type has three variants (the
# score as text, the event time as epoch seconds, the version as text), not_json two (the
# message cut short, or written with single quotes)
_SCORE = """CASE WHEN kind = 'wrong_type' AND variant = 0 THEN to_json(review_score::VARCHAR)
                 WHEN kind = 'score_out_of_range' THEN to_json(bad_score)
                 ELSE to_json(review_score) END"""
_EVENT_TIME = f"""CASE WHEN kind = 'wrong_type' AND variant = 1
                      THEN to_json(epoch(event_time)::BIGINT)
                      ELSE to_json({_ts("event_time")}) END"""
_VERSION = f"""CASE WHEN kind = 'wrong_type' AND variant = 2 THEN to_json('{SCHEMA_VERSION}')
                   ELSE to_json({SCHEMA_VERSION}) END"""
_SYNTHETIC_JSON = _event_json(_SCORE, _VERSION, _EVENT_TIME, "event_id")
_SYNTHETIC_SQL = f"""
WITH j AS (SELECT *, {_SYNTHETIC_JSON}::VARCHAR AS doc FROM e)
SELECT encode(order_id) AS key,
       encode(CASE WHEN kind <> 'not_json' THEN doc
                   WHEN variant = 0 THEN left(doc, 1 + floor(cut * (length(doc) - 2))::BIGINT)
                   ELSE replace(doc, '"', '''') END) AS value,
       kind,
       epoch(event_time)::BIGINT + jitter AS _pos
FROM j
ORDER BY _n
"""


def _serialise(rng: Rng, events: pa.Table) -> pa.Table:
    """key, value, kind and a sort position per event (in the order of ``events``)."""
    n = events.num_rows
    extra = {
        "_n": pa.array(np.arange(n)),
        "variant": pa.array(rng.integers(0, 3, n)),
        "cut": pa.array(rng.random(n)),
        "bad_score": pa.array(np.asarray([0, 6, 7, 8, 9])[rng.integers(0, 5, n)]),
        "jitter": pa.array(rng.integers(-DAY, DAY, n)),
    }
    for name, values in extra.items():
        events = events.append_column(name, values)
    return default_engine().query(_SYNTHETIC_SQL, {"e": events})


# -- a replay of the source ------------------------------------------------------------------
_REPLAY_JSON = _event_json(
    score="review_score",
    schema_version=str(SCHEMA_VERSION),
    event_time=_ts("coalesce(review_answer_timestamp, review_creation_date)"),
    event_id="md5(review_id || ':' || order_id)",
)
_REPLAY_SQL = f"""
SELECT encode(order_id) AS key, encode({_REPLAY_JSON}::VARCHAR) AS value, 'replay' AS kind
FROM r
"""


def replay_events(reviews: pa.Table, *, seed: int) -> pa.Table:
    """The source's ``order_reviews`` rows as events, value for value: the event time is the
    answer time (the creation date when there is none), the event id the md5 hex of
    ``review_id:order_id`` (a replay repeats its events' ids). Soft-deleted rows are left out.
    A row the contract refuses (dirty source data) becomes a message the consumer refuses.
    The order is random (drawn from ``seed``): the event time, not the arrival, orders them."""
    if "deleted_at" in reviews.column_names:
        reviews = reviews.filter(pc.is_null(reviews["deleted_at"]))
    columns = list(source_table("order_reviews").column_names)
    messages = default_engine().query(_REPLAY_SQL, {"r": reviews.select(columns)})
    order = np.random.default_rng(seed).permutation(messages.num_rows)
    return messages.take(pa.array(order))


# -- publishing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` delivered: messages and value bytes the broker acknowledged, the
    time from the first send to the last acknowledgement, and messages not delivered (always
    0 in a returned result: undelivered messages raise :class:`StreamError`)."""

    sent: int
    bytes: int
    seconds: float
    failed: int = 0

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class _Deliveries:
    """The delivery callback's tally."""

    def __init__(self) -> None:
        self.delivered = 0
        self.bytes = 0
        self.failed = 0
        self.first_error = ""

    def __call__(self, error: Any, message: Any) -> None:
        if error is None:
            self.delivered += 1
            self.bytes += len(message)
            return
        self.failed += 1
        if not self.first_error:
            self.first_error = " ".join(str(error.str()).split())


POLL_EVERY = 1000  # messages between serving delivery callbacks


def publish(
    settings: Settings,
    messages: pa.Table,
    *,
    rate: float | None = None,
    duration: float | None = None,
) -> PublishResult:
    """Send every message (``key``, ``value``) to ``settings.kafka_topic`` through the
    idempotent producer, at most ``rate`` messages/s and for at most ``duration`` seconds when
    given; then wait up to ``stream_broker_timeout_s`` for every acknowledgement. A broker that
    cannot be reached at start, or messages left undelivered, raise :class:`StreamError`."""
    if rate is not None and not 0 < rate < float("inf"):
        raise ConfigError(f"rate must be a number of messages per second > 0, got {rate}")
    if duration is not None and not 0 < duration < float("inf"):
        raise ConfigError(f"duration must be a number of seconds > 0, got {duration}")
    kafka.ensure_topic(settings)
    client = kafka.producer(settings)
    topic = settings.kafka_topic
    keys = messages.column("key").to_pylist()
    values = messages.column("value").to_pylist()
    tally = _Deliveries()
    paced = rate is not None or duration is not None
    started = time.monotonic()
    produced = 0
    for key, value in zip(keys, values, strict=True):
        if paced:
            elapsed = time.monotonic() - started
            if duration is not None and elapsed >= duration:
                break
            if rate is not None and produced / rate > elapsed:
                client.poll(0)
                time.sleep(produced / rate - elapsed)
        while True:
            try:
                client.produce(topic, value=value, key=key, on_delivery=tally)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                client.poll(0.1)
        produced += 1
        if produced % POLL_EVERY == 0:
            client.poll(0)
    timeout = settings.stream_broker_timeout_s
    left = int(client.flush(timeout))
    result = PublishResult(
        tally.delivered, tally.bytes, time.monotonic() - started, tally.failed + left
    )
    if result.failed:
        why = tally.first_error or f"not acknowledged within {timeout:g} s"
        raise StreamError(
            f"{result.failed:,} of {produced:,} messages were not delivered to topic {topic!r} "
            f"at {redact_url(settings.kafka_bootstrap_servers)}: {why} "
            f"({result.sent:,} were; is the broker up?)"
        )
    log.debug("published %d messages to %s in %.2f s", result.sent, topic, result.seconds)
    return result
