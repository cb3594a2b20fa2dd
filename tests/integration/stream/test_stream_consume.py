"""The exactly-once consumer against a real Kafka-protocol broker: the lake ends with exactly
the distinct valid events (newest per review) and every invalid one quarantined with its
reason, whatever happens to the consumer (killed, stopped, rebalanced) or the broker."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest

from medallion import api
from medallion.audit import AuditStore
from medallion.errors import StreamError
from medallion.settings import Settings
from medallion.storage import Lake
from medallion.stream import kafka
from medallion.stream.contract import example
from medallion.stream.lake import UNKNOWN_ORDER

MEDALLION = [sys.executable, "-m", "medallion"]
ORDERS = [hashlib.md5(f"order{i}".encode()).hexdigest() for i in range(500)]


def hx(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass
class Expected:
    """The reference model: what the lake must hold after every message is consumed."""

    silver: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # one reason per invalid message
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    reasons: dict[bytes, str | None] = field(default_factory=dict)  # value -> its reason

    def event(self, number: int, review: int, minute: int, score: int) -> None:
        order = ORDERS[review % len(ORDERS)]
        stamp = f"2018-03-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00"
        event = example(
            event_id=hx(f"event{number}"), review_id=hx(f"review{review}"), order_id=order,
            review_score=score, event_time=stamp,
        )  # fmt: skip
        self.add(order.encode(), json.dumps(event).encode(), None)
        key = (event["review_id"], order)
        new = (stamp, event["event_id"], score)
        if key not in self.silver or new[:2] > self.silver[key][:2]:
            self.silver[key] = new

    def add(self, key: bytes, value: bytes, reason: str | None) -> None:
        if reason is not None:
            self.quarantined.append(reason)
        self.reasons[value] = reason
        self.messages.append((key, value))


MALFORMED = [
    (b"{not json", "not JSON"),
    (json.dumps(example(review_score=9)).encode(), "review_score: out of range 1..5"),
    (json.dumps(example(order_id="XYZ")).encode(), "order_id: malformed"),
    (b"", "empty message"),
]


def workload(n: int, seed: int = 7) -> Expected:
    """n messages: 2 % malformed, 5 % byte-identical redeliveries, reviews updated by later
    events, and a few events for orders that do not exist."""
    rng = random.Random(seed)
    model = Expected()
    for number in range(n):
        roll = rng.random()
        if roll < 0.02:
            model.add(b"bad", *rng.choice(MALFORMED))
        elif roll < 0.07 and model.messages:
            key, value = rng.choice(model.messages)
            model.add(key, value, model.reasons[value])  # a redelivery: same bytes
        elif roll < 0.075:
            event = example(event_id=hx(f"event{number}"), review_id=hx(f"lost{number}"),
                            order_id=hx(f"no-such-order{number}"))  # fmt: skip
            model.add(b"lost", json.dumps(event).encode(), UNKNOWN_ORDER)
        else:
            review, minute = rng.randrange(n // 3 + 1), rng.randrange(20_000)
            model.event(number, review, minute, rng.randint(1, 5))
    return model


def publish(settings: Settings, model: Expected) -> None:
    kafka.ensure_topic(settings)
    producer = kafka.producer(settings)
    for i, (key, value) in enumerate(model.messages):
        producer.produce(settings.kafka_topic, key=key, value=value)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


@pytest.fixture
def settings(tmp_path: Path, kafka_broker: str) -> Settings:
    s = Settings(
        home=tmp_path / "home", kafka_bootstrap_servers=kafka_broker,
        kafka_topic=f"reviews-{uuid.uuid4().hex[:8]}", kafka_group_id=f"g-{uuid.uuid4().hex[:8]}",
        stream_batch_size=2_000, stream_silver_interval_s=0, stream_broker_timeout_s=10,
    )  # fmt: skip
    orders = pa.table({"order_id": ORDERS})
    Lake.from_settings(s).table("silver", "orders").overwrite(orders, transactions={}, metadata={})
    return s


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEDALLION_HOME": str(settings.home),
        "MEDALLION_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MEDALLION_KAFKA_TOPIC": settings.kafka_topic,
        "MEDALLION_KAFKA_GROUP_ID": settings.kafka_group_id,
        "MEDALLION_STREAM_BATCH_SIZE": str(settings.stream_batch_size),
        "MEDALLION_STREAM_SILVER_INTERVAL_S": "0",
        "MEDALLION_STREAM_BROKER_TIMEOUT_S": str(settings.stream_broker_timeout_s),
        **extra,
    }


def consume_cli(settings: Settings, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*MEDALLION, "stream", "consume", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_of(settings, **env),
    )  # fmt: skip


def assert_lake_matches(settings: Settings, model: Expected) -> None:
    lake = Lake.from_settings(settings)
    bronze = lake.read("bronze", "review_events", ["partition", "offset"])
    assert bronze is not None and bronze.num_rows == len(model.messages)
    pairs = set(zip(bronze["partition"].to_pylist(), bronze["offset"].to_pylist(), strict=True))
    assert len(pairs) == len(model.messages), "a message was written twice"
    silver = lake.read("silver", "review_events")
    assert silver is not None
    got = {
        (r["review_id"], r["order_id"]): (
            r["event_time"].isoformat(),
            r["event_id"],
            r["review_score"],
        )
        for r in silver.to_pylist()
    }
    assert silver.num_rows == len(got) == len(model.silver)
    assert got == model.silver
    quarantine = lake.read("quarantine", "review_events", ["reason"])
    reasons = sorted(quarantine["reason"].to_pylist()) if quarantine is not None else []
    assert reasons == sorted(model.quarantined)


def test_exactly_the_distinct_valid_events_and_every_invalid_one(settings: Settings) -> None:
    model = workload(100_000)
    publish(settings, model)
    result = api.stream_consume(settings, idle_timeout_s=3)
    assert result.stopped_by == "idle_timeout" and result.messages == 100_000
    assert_lake_matches(settings, model)
    again = api.stream_consume(settings, idle_timeout_s=1)  # nothing new: nothing written
    assert again.messages == 0


@pytest.mark.slow
def test_a_consumer_killed_anywhere_and_restarted_ends_the_same(settings: Settings) -> None:
    model = workload(30_000, seed=11)
    publish(settings, model)
    rng = random.Random(5)
    points = ["stream.after_bronze", "stream.after_silver", "silver.after_quarantine"]
    # every named point, then random moments: 3 in `make test`, 7 in `make test-all`
    for kill in range(10 if os.environ.get("MEDALLION_PROPERTY_EXAMPLES") else 6):
        if kill < len(points):  # at a named point inside the micro-batch
            done = consume_cli(settings, "--idle-timeout", "5", MEDALLION_CRASH_AT=points[kill])
            done.wait(120)
        else:  # at a random moment
            running = consume_cli(settings, "--idle-timeout", "5")
            time.sleep(rng.uniform(3.5, 6.0))
            running.send_signal(signal.SIGKILL)
            running.wait(30)
    finished = consume_cli(settings, "--idle-timeout", "3")
    _out, err = finished.communicate(timeout=180)
    assert finished.returncode == 0, err.decode()
    assert_lake_matches(settings, model)


def wait_for_bronze(settings: Settings, timeout: float = 60) -> None:
    lake = Lake.from_settings(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and lake.table("bronze", "review_events").version is None:
        time.sleep(0.1)


def test_two_consumers_in_one_group_split_the_partitions(settings: Settings) -> None:
    """The second member joins while the first is consuming: the rebalance takes partitions
    from the first in the middle of its work, and nothing is written twice."""
    model = workload(40_000, seed=13)
    publish(settings, model)
    first = consume_cli(settings, "--idle-timeout", "6")
    wait_for_bronze(settings)
    second = consume_cli(settings, "--idle-timeout", "6")
    for member in (first, second):
        _out, err = member.communicate(timeout=180)
        assert member.returncode == 0, err.decode()
    assert_lake_matches(settings, model)
    with AuditStore(settings.audit_location) as audit:
        runs = {r["run_id"] for r in audit.run_logs() if r["job"] == "medallion_stream"}
    assert len(runs) == 2  # both members wrote micro-batches


def test_sigterm_finishes_the_batch_and_exits_cleanly(settings: Settings) -> None:
    model = workload(20_000, seed=17)
    publish(settings, model)
    running = consume_cli(settings)  # no limit: runs until told to stop
    wait_for_bronze(settings)
    running.send_signal(signal.SIGTERM)
    out, err = running.communicate(timeout=60)
    assert running.returncode == 0, err.decode()
    assert "stopped by SIGTERM" in out.decode()
    api.stream_consume(settings, idle_timeout_s=3)  # the rest, from where it stopped
    assert_lake_matches(settings, model)


def test_a_broker_down_at_start_is_one_line(settings: Settings) -> None:
    down = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1",
                                       "stream_broker_timeout_s": 2.0})  # fmt: skip
    with pytest.raises(StreamError, match=r"cannot reach the Kafka broker at 127\.0\.0\.1:1"):
        api.stream_consume(down, idle_timeout_s=1)
    cli = consume_cli(down, "--idle-timeout", "1", MEDALLION_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
                      MEDALLION_STREAM_BROKER_TIMEOUT_S="2")  # fmt: skip
    _out, err = cli.communicate(timeout=60)
    assert cli.returncode == 1
    assert len(err.decode().strip().splitlines()) == 1 and "Traceback" not in err.decode()


@pytest.fixture
def own_broker() -> Iterator[kafka.Broker]:
    broker = kafka.start_broker()
    yield broker
    broker.stop()


def test_a_broker_lost_mid_run_fails_clearly_with_nothing_half_written(
    settings: Settings, own_broker: kafka.Broker
) -> None:
    s = settings.model_copy(update={"kafka_bootstrap_servers": own_broker.bootstrap,
                                    "stream_broker_timeout_s": 3.0})  # fmt: skip
    model = workload(10_000, seed=19)
    publish(s, model)
    running = consume_cli(s)
    lake = Lake.from_settings(s)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and lake.table("bronze", "review_events").version is None:
        time.sleep(0.1)
    own_broker.stop()
    _out, err = running.communicate(timeout=60)
    assert running.returncode == 1
    assert "lost the Kafka broker" in err.decode() and "Traceback" not in err.decode()
    bronze = lake.read("bronze", "review_events", ["partition", "offset"])
    assert bronze is not None
    for part in set(bronze["partition"].to_pylist()):  # every partition: 0..n-1, no gap
        offsets = sorted(
            o for p, o in zip(bronze["partition"].to_pylist(), bronze["offset"].to_pylist(),
                              strict=True) if p == part
        )  # fmt: skip
        assert offsets == list(range(len(offsets)))


def test_a_missing_topic_is_created_or_named(settings: Settings) -> None:
    strict = settings.model_copy(update={"stream_create_topic": False})
    with pytest.raises(StreamError, match=f"topic '{settings.kafka_topic}' does not exist"):
        api.stream_consume(strict, idle_timeout_s=1)
    assert kafka.ensure_topic(settings) == settings.stream_partitions  # created
    assert kafka.ensure_topic(strict) == settings.stream_partitions  # now it exists
