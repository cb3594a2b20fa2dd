"""Publishing to a real Kafka-protocol broker (the bundled Tansu): every message arrives byte
for byte, pacing holds, a broker that is down is one line, and the command line works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import confluent_kafka as ck
import numpy as np
import pyarrow as pa
import pytest
from tests.support import put

from medallion import api
from medallion.errors import StreamError
from medallion.settings import Settings
from medallion.source.arrays import random_ids, timestamps
from medallion.stream.kafka import free_port
from medallion.stream.produce import publish, synthetic_events

ORDERS = pa.table(
    {
        "order_id": random_ids(np.random.default_rng(0), 2000),
        "order_purchase_timestamp": timestamps(np.full(2000, 1_520_000_000)),
    }
)


def settings_for(broker: str, home: Path, **extra: object) -> Settings:
    return Settings(
        kafka_topic=f"t-{uuid4().hex}", kafka_bootstrap_servers=broker, home=home, **extra
    )


def read_back(settings: Settings, expected: int, timeout_s: float = 60) -> list[ck.Message]:
    """Every message of the topic from the start of each partition, until ``expected`` are in
    (the broker's high watermark is not to be trusted on Tansu, so no end offset is asked)."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"g-{uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        topic = settings.kafka_topic
        consumer.assign(
            [
                ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING)
                for p in range(settings.stream_partitions)
            ]
        )
        got: list[ck.Message] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                assert message.error() is None, message.error()
                got.append(message)
        extra = consumer.consume(num_messages=100, timeout=1.0)  # nothing beyond them
        assert [m for m in extra if m.error() is None] == []
        return got
    finally:
        consumer.close()


def test_every_message_arrives_byte_for_byte(kafka_broker: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_broker, tmp_path)
    messages = synthetic_events(
        ORDERS, count=20_000, seed=5, dirty_rate=0.02, start=datetime(2018, 3, 1)
    )
    result = publish(settings, messages)
    sent = list(zip(messages["key"].to_pylist(), messages["value"].to_pylist(), strict=True))
    assert result.sent == 20_000 and result.failed == 0
    assert result.bytes == sum(len(v) for _, v in sent)

    got = read_back(settings, 20_000)
    assert len(got) == 20_000
    assert Counter((m.key(), m.value()) for m in got) == Counter(sent)
    # one key, one partition, in the order sent (the idempotent producer keeps it)
    by_key_sent: dict[bytes, list[bytes]] = defaultdict(list)
    by_key_got: dict[bytes, list[bytes]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for key, value in sent:
        by_key_sent[key].append(value)
    for m in sorted(got, key=lambda m: (m.partition(), m.offset())):
        by_key_got[m.key()].append(m.value())
        partitions[m.key()].add(m.partition())
    assert by_key_got == by_key_sent
    assert all(len(p) == 1 for p in partitions.values())
    assert len({m.partition() for m in got}) == settings.stream_partitions


def test_rate_and_duration_pace_the_sending(kafka_broker: str, tmp_path: Path) -> None:
    messages = synthetic_events(
        ORDERS, count=400, seed=1, dirty_rate=0.0, start=datetime(2018, 3, 1)
    )
    paced = publish(settings_for(kafka_broker, tmp_path), messages, rate=1000)
    assert paced.sent == 400
    assert 0.35 <= paced.seconds < 10  # 400 messages at 1000/s take at least 0.4 s
    stopped = publish(settings_for(kafka_broker, tmp_path), messages, rate=200, duration=0.5)
    assert 80 <= stopped.sent <= 101  # 0.5 s at 200/s
    assert stopped.seconds < 10


def test_a_broker_that_is_down_is_one_line_quickly(tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1", stream_broker_timeout_s=2, home=tmp_path
    )
    messages = synthetic_events(
        ORDERS, count=10, seed=1, dirty_rate=0.0, start=datetime(2018, 3, 1)
    )
    started = time.monotonic()
    with pytest.raises(StreamError) as caught:
        publish(settings, messages)
    assert time.monotonic() - started < 8
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("cannot reach the Kafka broker at 127.0.0.1:1")


def test_replay_sends_the_source_reviews(kafka_broker: str, tmp_path: Path) -> None:
    settings = settings_for(kafka_broker, tmp_path)
    api.init_source(settings)
    put(
        settings,
        "order_reviews",
        [
            {
                "review_id": f"{i:032x}",
                "order_id": "a" * 32,
                "review_score": 1 + i % 5,
                "review_creation_date": datetime(2018, 3, 1),
                "updated_at": datetime(2018, 3, 1),
            }
            for i in range(30)
        ],
    )
    result = api.stream_produce(settings, replay=True)
    assert result.sent == 30
    assert sorted(m.value() for m in read_back(settings, 30))[0].startswith(b'{"schema_version"')


# -- the command line --------------------------------------------------------------------------
def medallion(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medallion", *args],
        capture_output=True, text=True, check=False, timeout=timeout, env={**os.environ, **env},
    )  # fmt: skip


@pytest.fixture
def source_home(tmp_path: Path) -> Path:
    settings = Settings(home=tmp_path)
    api.init_source(settings)
    rows = [
        {"order_id": f"{i:032x}", "order_purchase_timestamp": datetime(2018, 3, 1, i % 24)}
        for i in range(1, 60)
    ]
    put(settings, "orders", [r | {"updated_at": datetime(2018, 3, 1)} for r in rows])
    return tmp_path


def test_cli_produce_prints_its_summary(kafka_broker: str, source_home: Path) -> None:
    topic = f"t-{uuid4().hex}"
    env = {"MEDALLION_KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "MEDALLION_KAFKA_TOPIC": topic}
    args = ("--count", "500", "--dirty-rate", "0.1", "--home", str(source_home))
    result = medallion("stream", "produce", *args, env=env)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("sent 500 messages (") and f"bytes) to {topic} in " in line
    assert line.endswith(" messages/s")
    settings = Settings(kafka_topic=topic, kafka_bootstrap_servers=kafka_broker, home=source_home)
    assert len(read_back(settings, 500)) == 500


def test_cli_produce_with_the_broker_down_is_one_line(source_home: Path) -> None:
    env = {
        "MEDALLION_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MEDALLION_STREAM_BROKER_TIMEOUT_S": "2",
    }
    result = medallion("stream", "produce", "--count", "10", "--home", str(source_home), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if line.startswith("error:")
    ]
    assert len(result.stderr.splitlines()) == 1
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in result.stderr


def test_cli_produce_without_orders_says_so(tmp_path: Path) -> None:
    api.init_source(Settings(home=tmp_path))
    result = medallion("stream", "produce", "--home", str(tmp_path), env={})
    assert result.returncode == 1
    assert "has no orders to review" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_cli_broker_runs_until_stopped(stop: signal.Signals) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "medallion", "stream", "broker", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in first
        assert process.stdout.readline().strip() == (
            f"use: MEDALLION_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
        )
        settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", home=Path("/nonexistent"))
        assert publish(settings, synthetic_events(
            ORDERS, count=5, seed=1, dirty_rate=0.0, start=datetime(2018, 3, 1)
        )).sent == 5  # fmt: skip
        process.send_signal(stop)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "broker stopped" in out and "Traceback" not in err


def test_cli_broker_on_a_busy_port_is_one_line(kafka_broker: str) -> None:
    port = kafka_broker.rsplit(":", 1)[1]
    result = medallion("stream", "broker", "--port", port, env={}, timeout=30)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_starts_without_the_kafka_client() -> None:
    code = "import sys, medallion.cli; assert 'confluent_kafka' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
