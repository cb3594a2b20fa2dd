"""The review stream: produce, consume, the event schema and the bundled broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medallion.errors import ConfigError, SourceError, StreamError

# Each function imports what it needs: `stream schema` and `stream broker` start without
# pyarrow, the source drivers or the Kafka client.
if TYPE_CHECKING:
    from medallion.settings import Settings
    from medallion.stream.consume import ConsumeResult
    from medallion.stream.kafka import Broker
    from medallion.stream.produce import PublishResult


def stream_produce(
    settings: Settings,
    *,
    count: int = 10_000,
    seed: int = 42,
    dirty_rate: float = 0.0,
    replay: bool = False,
    rate: float | None = None,
    duration: float | None = None,
) -> PublishResult:
    """Publish review events to the topic: ``count`` synthetic reviews of the source's live
    orders (``dirty_rate`` of them defects), or with ``replay`` the source's live reviews.

    Synthetic events start after the latest purchase in the source, so the same seed on the
    same source gives the same events (a consumer drops a re-sent event by its id); another
    seed gives new ones.
    """
    import pyarrow.compute as pc

    from medallion.api.source import utc_now
    from medallion.catalog import source_table
    from medallion.settings import redact_url
    from medallion.source.db import open_source
    from medallion.stream.produce import publish, replay_events, synthetic_events

    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    where = redact_url(settings.source_location)
    name = "order_reviews" if replay else "orders"
    with open_source(settings.source_location) as db:
        db.require_tables([source_table(name)])
        if replay:
            rows = db.read_table(source_table(name))
        else:
            columns = ["order_id", "order_purchase_timestamp", "deleted_at"]
            rows = db.read_table(source_table(name), columns)
    rows = rows.filter(pc.is_null(rows["deleted_at"]))
    if rows.num_rows == 0:
        raise SourceError(
            f"the source at {where} has no {'reviews to replay' if replay else 'orders to review'}"
            "; run `medallion source generate` (or load-csv) first"
        )
    if replay:
        messages = replay_events(rows, seed=seed)
    else:
        latest = pc.max(rows["order_purchase_timestamp"]).as_py()
        messages = synthetic_events(
            rows, count=count, seed=seed, dirty_rate=dirty_rate, start=latest or utc_now()
        )
    return publish(settings, messages, rate=rate, duration=duration)


def stream_schema() -> dict[str, Any]:
    """The review event contract as a JSON schema."""
    from medallion.stream.contract import json_schema

    return json_schema()


def start_stream_broker(port: int = 9092, storage: str = "memory://tansu/") -> Broker:
    """Start the bundled Kafka-protocol broker on 127.0.0.1:``port``; the caller stops it."""
    import socket

    from medallion.stream.kafka import start_broker

    if not 0 < port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, got {port}")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise StreamError(
                f"port {port} on 127.0.0.1 is in use (another broker?); choose one with --port"
            ) from None
    return start_broker(port, storage)


def stream_consume(
    settings: Settings,
    *,
    max_messages: int | None = None,
    max_batches: int | None = None,
    idle_timeout_s: float | None = None,
    run_id: str | None = None,
) -> ConsumeResult:
    """Consume review events into the lake until a limit, or SIGINT/SIGTERM (the current
    micro-batch is committed first). Each micro-batch is a row of the audit log, under
    ``run_id`` (a scheduler's) or a new one."""
    from medallion.audit import AuditStore
    from medallion.runner import STREAM_JOB, RunContext, StopSignals, new_run_id
    from medallion.storage import Lake
    from medallion.stream.consume import Consumer, Limits

    Lake.from_settings(settings).probe()  # unreachable: fail before joining the group
    ctx = RunContext(run_id=run_id or new_run_id(), settings=settings, job=STREAM_JOB)
    limits = Limits(max_messages, max_batches, idle_timeout_s)
    with AuditStore(settings.audit_location) as audit, StopSignals() as signals:
        audit.abandon_dead_attempts()
        result = Consumer(settings, ctx, audit).run(limits, signals.stopped)
    if signals.by:
        result.stopped_by = signals.by
    return result
