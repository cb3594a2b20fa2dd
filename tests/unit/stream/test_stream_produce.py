"""The producer's messages without a broker: synthetic events (deterministic per seed, defects
as asked, updates later than what they update), the replay of source rows, and publish's
bookkeeping against a stand-in producer."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from medallion.catalog import source_table
from medallion.cli import app
from medallion.engine import default_engine
from medallion.errors import ConfigError, StreamError
from medallion.settings import Settings
from medallion.source.arrays import random_ids, timestamps
from medallion.stream import kafka
from medallion.stream.contract import ReviewEvent, json_schema, validate_sql
from medallion.stream.produce import DEFECTS, publish, replay_events, synthetic_events

START = datetime(2018, 10, 1)
ACCEPTED = {"valid", "unknown_order", "duplicate"}


def orders(n: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    purchased = rng.integers(1_470_000_000, 1_545_000_000, n)  # some after START
    return pa.table(
        {"order_id": random_ids(rng, n), "order_purchase_timestamp": timestamps(purchased)}
    )


ORDERS = orders()
PURCHASED = dict(
    zip(ORDERS["order_id"].to_pylist(), ORDERS["order_purchase_timestamp"].to_pylist(), strict=True)
)


def events(count: int = 2000, seed: int = 7, dirty_rate: float = 0.1) -> pa.Table:
    return synthetic_events(ORDERS, count=count, seed=seed, dirty_rate=dirty_rate, start=START)


def parsed(table: pa.Table, kinds: set[str]) -> list[ReviewEvent]:
    return [
        ReviewEvent.model_validate_json(v)
        for v, k in zip(table["value"].to_pylist(), table["kind"].to_pylist(), strict=True)
        if k in kinds
    ]


def test_the_same_seed_gives_the_same_messages() -> None:
    first = events()
    assert first.column_names == ["key", "value", "kind"]
    assert first.schema.field("key").type == pa.binary()
    assert first.schema.field("value").type == pa.binary()
    assert first.equals(events())
    assert not first.equals(events(seed=8))


@pytest.mark.parametrize(
    ("count", "dirty_rate", "each", "extra"),
    [(2000, 0.1, 40, 0), (1003, 0.02, 4, 0), (1000, 0.023, 4, 3), (500, 0.0, 0, 0)],
)
def test_counts_per_kind(count: int, dirty_rate: float, each: int, extra: int) -> None:
    table = events(count, dirty_rate=dirty_rate)
    kinds = Counter(table["kind"].to_pylist())
    assert table.num_rows == count
    # the defects split evenly; a remainder goes to the first kinds in DEFECTS order
    assert [kinds[d] for d in DEFECTS] == [each + (i < extra) for i in range(len(DEFECTS))]
    assert kinds["valid"] == count - each * len(DEFECTS) - extra


def test_every_kind_passes_or_fails_the_contract_as_named() -> None:
    table = events(3000, dirty_rate=0.5)
    values, kinds = table["value"].to_pylist(), table["kind"].to_pylist()
    reasons = default_engine().query(validate_sql(), {"raw": table})["_reason"].to_pylist()
    for value, kind, reason in zip(values, kinds, reasons, strict=True):
        try:
            ReviewEvent.model_validate_json(value)
            errors: list[Any] = []
        except ValidationError as exc:
            errors = exc.errors()
        assert (not errors) == (kind in ACCEPTED), (kind, value)
        assert (reason is None) == (kind in ACCEPTED), (kind, reason)  # the consumer's SQL too
        if kind == "not_json":
            with pytest.raises(ValueError):
                json.loads(value)
        elif kind == "wrong_type":
            assert [e["type"] for e in errors] in (["int_type"], ["datetime_type"]), errors
        elif kind == "score_out_of_range":
            assert [e["loc"] for e in errors] == [("review_score",)], errors
            assert json.loads(value)["review_score"] in {0, 6, 7, 8, 9}


def test_keys_orders_and_defects_point_where_they_should() -> None:
    table = events(3000, dirty_rate=0.2)
    known = set(PURCHASED)
    rows = list(zip(*(table[c].to_pylist() for c in ("key", "value", "kind")), strict=True))
    for key, value, kind in rows:
        if kind == "not_json":
            assert key.decode() in known
            continue
        event = json.loads(value)
        assert key == event["order_id"].encode()
        assert (event["order_id"] in known) == (kind != "unknown_order")
    seen: set[bytes] = set()
    for _, value, kind in rows:  # a duplicate repeats, byte for byte, a valid message sent before
        if kind == "duplicate":
            assert value in seen
        elif kind == "valid":
            seen.add(value)
    firsts = [v for _, v, k in rows if k != "duplicate"]
    assert len(set(firsts)) == len(firsts)
    ids = [json.loads(v)["event_id"] for _, v, k in rows if k in {"valid", "unknown_order"}]
    assert len(set(ids)) == len(ids)


def test_times_follow_the_purchase_and_each_other() -> None:
    for event in parsed(events(3000, dirty_rate=0.2), {"valid", "unknown_order"}):
        after = max(PURCHASED.get(event.order_id) or START, START)
        assert event.review_creation_date > after
        answer = event.review_answer_timestamp
        assert answer is None or answer > event.review_creation_date
        assert event.event_time == (answer or event.review_creation_date)


def test_updates_are_later_versions_of_a_review() -> None:
    table = events(3000, dirty_rate=0.0)
    versions: dict[str, list[ReviewEvent]] = defaultdict(list)
    for event in parsed(table, {"valid"}):
        versions[event.review_id].append(event)
    updated = [sorted(v, key=lambda e: e.event_time) for v in versions.values() if len(v) > 1]
    assert len(updated) == 300  # a tenth of the valid events update an earlier review
    for first, update in updated:  # one update per review
        assert (update.order_id, update.review_creation_date) == (
            first.order_id,
            first.review_creation_date,
        )
        assert update.event_id != first.event_id and update.review_score != first.review_score
        assert update.event_time > first.event_time
        assert update.review_answer_timestamp == update.event_time
    # messages come roughly in event-time order: within a day of it
    times = [e.event_time.timestamp() for e in parsed(table, {"valid"})]
    assert all(b - a > -2 * 86_400 for a, b in itertools.pairwise(times))


def test_orders_without_a_hex_id_are_never_reviewed() -> None:
    odd = pa.table(
        {
            "order_id": ["not-an-id", None, "A" * 32, "c" * 32],
            "order_purchase_timestamp": pa.array([None] * 4, pa.timestamp("us")),
        }
    )
    table = synthetic_events(odd, count=50, seed=1, dirty_rate=0.0, start=START)
    assert {k.decode() for k in table["key"].to_pylist()} == {"c" * 32}
    with pytest.raises(ConfigError, match="no order to review"):
        synthetic_events(odd.slice(0, 3), count=5, seed=1, dirty_rate=0.0, start=START)


@pytest.mark.parametrize("dirty_rate", [-0.1, 0.51, float("nan")])
def test_a_dirty_rate_out_of_range_is_refused(dirty_rate: float) -> None:
    with pytest.raises(ConfigError, match=r"dirty rate must be between 0 and 0\.5"):
        events(10, dirty_rate=dirty_rate)


# -- replay ------------------------------------------------------------------------------------
def review(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c.name: None for c in source_table("order_reviews").all_columns}
    return row | {"updated_at": datetime(2018, 9, 1)} | values


REVIEWS = [
    review(
        review_id="1" * 32,
        order_id="a" * 32,
        review_score=5,
        review_comment_title="Ótimo",
        review_comment_message='chegou "antes"\r\ndo prazo',
        review_creation_date=datetime(2018, 3, 1),
        review_answer_timestamp=datetime(2018, 3, 2, 10, 30, 5),
    ),
    review(  # not answered: the event time is the creation date; microseconds kept
        review_id="2" * 32,
        order_id="b" * 32,
        review_score=1,
        review_creation_date=datetime(2017, 1, 5, 0, 0, 0, 250),
    ),
    review(  # dirty in the source: replayed as it is, the consumer refuses it
        review_id="3" * 32,
        order_id="a" * 32,
        review_score=7,
        review_creation_date=datetime(2018, 4, 1),
        review_answer_timestamp=datetime(2018, 4, 3),
    ),
    review(  # soft-deleted: not a review any more
        review_id="4" * 32,
        order_id="c" * 32,
        review_score=3,
        review_creation_date=datetime(2018, 4, 1),
        deleted_at=datetime(2018, 5, 1),
    ),
]


def expected(row: dict[str, Any]) -> dict[str, Any]:
    def text(ts: datetime | None) -> str | None:
        return None if ts is None else ts.isoformat()

    ids = f"{row['review_id']}:{row['order_id']}"
    return {
        "schema_version": 1,
        "event_id": hashlib.md5(ids.encode()).hexdigest(),
        "review_id": row["review_id"],
        "order_id": row["order_id"],
        "review_score": row["review_score"],
        "review_comment_title": row["review_comment_title"],
        "review_comment_message": row["review_comment_message"],
        "review_creation_date": text(row["review_creation_date"]),
        "review_answer_timestamp": text(row["review_answer_timestamp"]),
        "event_time": text(row["review_answer_timestamp"] or row["review_creation_date"]),
    }


def test_replay_maps_source_rows_exactly() -> None:
    schema = source_table("order_reviews").arrow_schema()
    table = replay_events(pa.Table.from_pylist(REVIEWS, schema=schema), seed=3)
    assert table.column_names == ["key", "value", "kind"]
    got = sorted(
        (
            (k, json.loads(v))
            for k, v in zip(table["key"].to_pylist(), table["value"].to_pylist(), strict=True)
        ),
        key=lambda kv: kv[1]["review_id"],
    )
    want = [(r["order_id"].encode(), expected(r)) for r in REVIEWS[:3]]
    assert got == want
    assert set(table["kind"].to_pylist()) == {"replay"}
    accepted = []
    for value in table["value"].to_pylist():
        with contextlib.suppress(ValidationError):
            accepted.append(ReviewEvent.model_validate_json(value).review_id)
    assert sorted(accepted) == ["1" * 32, "2" * 32]
    again = replay_events(pa.Table.from_pylist(REVIEWS, schema=schema), seed=3)
    assert table.equals(again)


# -- publish against a stand-in producer ---------------------------------------------------------
class FakeError:
    def str(self) -> str:
        return "Local: Message timed out"


class FakeProducer:
    """Accepts ``room`` messages, then raises BufferError until polled; fails the ones listed."""

    def __init__(self, room: int, fail: set[int]) -> None:
        self.room, self.fail = room, fail
        self.queued: list[tuple[int, bytes, Any]] = []
        self.sent: list[tuple[bytes, bytes]] = []
        self.full = 0

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any) -> None:
        if len(self.queued) >= self.room:
            self.full += 1
            raise BufferError("Local: Queue full")
        self.queued.append((len(self.sent), value, on_delivery))
        self.sent.append((key, value))

    def poll(self, timeout: float = 0) -> int:
        served, self.queued = self.queued, []
        for n, value, callback in served:
            callback(FakeError() if n in self.fail else None, value)
        return len(served)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeProducer]:
    made: dict[str, FakeProducer] = {}

    def install(room: int, fail: set[int]) -> None:
        made["producer"] = FakeProducer(room, fail)

    monkeypatch.setattr(kafka, "ensure_topic", lambda settings, timeout_s=None: 3)
    monkeypatch.setattr(kafka, "producer", lambda settings: made["producer"])
    made["install"] = install  # type: ignore[assignment]
    return made


def messages(n: int) -> pa.Table:
    return pa.table(
        {
            "key": pa.array([b"k%d" % i for i in range(n)], pa.binary()),
            "value": pa.array([b"value %d" % i for i in range(n)], pa.binary()),
            "kind": ["valid"] * n,
        }
    )


def test_publish_waits_out_a_full_queue(fake: dict[str, Any], tmp_path: Any) -> None:
    fake["install"](room=10, fail=set())
    result = publish(Settings(home=tmp_path), messages(2500))
    producer = fake["producer"]
    assert producer.full > 0  # it met a full queue and polled until there was room
    assert [k for k, _ in producer.sent] == [b"k%d" % i for i in range(2500)]
    assert result.sent == 2500 and result.failed == 0
    assert result.bytes == sum(len(b"value %d" % i) for i in range(2500))


def test_undelivered_messages_fail_in_one_line(fake: dict[str, Any], tmp_path: Any) -> None:
    fake["install"](room=100_000, fail={3, 7})
    settings = Settings(home=tmp_path, kafka_bootstrap_servers="broker.example:9092")
    with pytest.raises(StreamError) as caught:
        publish(settings, messages(20))
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(
        "2 of 20 messages were not delivered to topic 'olist.reviews' at broker.example:9092: "
    )
    assert "Local: Message timed out" in line and "(18 were;" in line


@pytest.mark.parametrize(("rate", "duration"), [(0, None), (-1, None), (None, 0), (None, -2)])
def test_a_rate_or_duration_not_above_zero_is_refused(
    rate: float | None, duration: float | None, tmp_path: Any
) -> None:
    with pytest.raises(ConfigError, match="must be a number"):
        publish(Settings(home=tmp_path), messages(1), rate=rate, duration=duration)


def test_stream_schema_prints_the_contract() -> None:
    result = CliRunner().invoke(app, ["stream", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json_schema()
