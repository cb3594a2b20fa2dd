"""The exactly-once consumer: micro-batches from the review topic into the lake.

Each micro-batch is one Bronze commit holding the messages and, per partition, the next offset
to read; on (re)assignment a partition is sought to the offset its last commit recorded, so a
crash anywhere (between poll, write and commit) loses nothing and duplicates nothing. Before a
rebalance takes partitions away, the buffered messages are committed. Silver and the quarantine
then follow Bronze (``stream.lake.merge_silver``). Kafka's group offsets are committed too, for
monitoring tools only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from medallion.audit import AuditStore
from medallion.engine import default_engine, release_thread_connections
from medallion.errors import StorageError, StreamError, one_line
from medallion.faults import crash_point
from medallion.runner import RunContext, Status, Task, TaskOutcome, TaskResult
from medallion.settings import Settings
from medallion.storage import Lake
from medallion.stream import kafka
from medallion.stream.lake import (
    BRONZE,
    BRONZE_SCHEMA,
    NAME,
    SILVER,
    SilverResult,
    append_bronze,
    handle,
    merge_silver,
    offset_id,
)

log = logging.getLogger(__name__)
LINGER_S = 1.0  # a partial batch is written after this long
TASK = "stream.review_events"


@dataclass(frozen=True)
class Limits:
    """When a consume stops (besides a signal): whichever comes first."""

    max_messages: int | None = None
    max_batches: int | None = None
    idle_timeout_s: float | None = None  # no message for this long


@dataclass
class BatchResult:
    number: int
    messages: int
    bytes: int
    seconds: float
    commit_seconds: float  # the Bronze commit: rows and offsets
    bronze_version: int
    silver: SilverResult | None  # None: Silver catches up at a later batch


@dataclass
class ConsumeResult:
    batches: list[BatchResult] = field(default_factory=list)
    silver: list[SilverResult] = field(default_factory=list)
    stopped_by: str = ""  # max_messages, max_batches, idle_timeout, or a signal name
    busy_s: float = 0.0  # writing batches and merging Silver: not joining, not waiting

    @property
    def messages(self) -> int:
        return sum(b.messages for b in self.batches)

    @property
    def events_per_s(self) -> float | None:
        """From the topic into Silver, while there was something to do."""
        return self.messages / self.busy_s if self.busy_s else None

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.silver)


class Consumer:
    """One member of the consumer group, writing its partitions' messages to the lake. Each
    micro-batch is an attempt in the audit log (job ``medallion_stream``)."""

    def __init__(self, settings: Settings, ctx: RunContext, audit: AuditStore):
        self.settings = settings
        self.ctx = ctx
        self.audit = audit
        self.lake = Lake.from_settings(settings)
        self.buffer: list[Any] = []
        self._merged_at = time.monotonic()
        self.positions: dict[int, int | None] = {}  # partition -> next offset recorded in Delta
        self.result = ConsumeResult()
        self._down_since: float | None = None
        self._assigned_at = 0.0
        self._client: Any = None

    # -- group membership ---------------------------------------------------------------------
    def _on_assign(self, client: Any, partitions: list[Any]) -> None:
        """Start each partition where the lake says, not where Kafka's group offsets say."""
        bronze = handle(self.lake, BRONZE)
        topic = self.settings.kafka_topic
        for p in partitions:
            stored = bronze.app_version(offset_id(topic, p.partition))
            self.positions[p.partition] = stored
            p.offset = stored if stored is not None else kafka.OFFSET_BEGINNING
        client.assign(partitions)
        self._assigned_at = time.monotonic()  # idle time counts from here, not from joining
        log.debug("assigned %s", {p.partition: p.offset for p in partitions})

    def _on_revoke(self, client: Any, partitions: list[Any]) -> None:
        """Commit what was read from the partitions before another member takes them."""
        if self.buffer:
            self._write()
        for p in partitions:
            self.positions.pop(p.partition, None)
        client.unassign()

    def _on_error(self, error: Any) -> None:
        if kafka.is_broker_down(error):
            self._down_since = self._down_since or time.monotonic()
        log.debug("kafka: %s", error)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, limits: Limits, stop: threading.Event | None = None) -> ConsumeResult:
        kafka.ensure_topic(self.settings)
        self._client = kafka.consumer(
            self.settings, on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_error=self._on_error,
        )  # fmt: skip
        try:
            self._loop(limits, stop or threading.Event())
            if self.buffer:
                self._write()
        finally:
            self._client.close()
        self._final_merge()
        return self.result

    def _final_merge(self) -> None:
        """Silver holds everything this member committed; an attempt of its own in the log."""
        task = Task(f"{TASK}#silver", "stream", NAME, _no_task)
        self.audit.task_started(self.ctx, task, 1)
        outcome = TaskOutcome(task, Status.FAILED, attempts=1, started_at=time.time())
        began = time.monotonic()
        try:
            silver = self._merge_silver()
            self.result.busy_s += time.monotonic() - began
        except BaseException as exc:
            outcome.error, outcome.ended_at = f"{type(exc).__name__}: {one_line(exc)}", time.time()
            self.audit.task_finished(self.ctx, outcome)
            raise
        outcome.status, outcome.ended_at = Status.SUCCESS, time.time()
        outcome.result = TaskResult(
            rows_read=silver.events,
            rows_written=silver.merged,
            rows_quarantined=silver.quarantined,
            metrics={
                "duplicates": silver.duplicates,
                "released": silver.released,
                "silver_bronze_version": silver.bronze_version,
            },
        )
        self.audit.task_finished(self.ctx, outcome)

    def _loop(self, limits: Limits, stop: threading.Event) -> None:
        size = self.settings.stream_batch_size
        last_message = started = time.monotonic()
        while not stop.is_set():
            room = size - len(self.buffer)
            if limits.max_messages is not None:
                room = min(room, limits.max_messages - self.result.messages - len(self.buffer))
            messages = self._client.consume(num_messages=room, timeout=0.2) if room > 0 else []
            now = time.monotonic()
            good = [m for m in messages if not m.error()]
            if good:
                self._down_since = None
                last_message = now
                if not self.buffer:
                    started = now
                self.buffer += good
            if self.buffer and (len(self.buffer) >= size or now - started >= LINGER_S or not good):
                self._write()
            if not self._assigned_at:  # still joining the group: not idle yet
                self._check_joined(now - started)
                last_message = now
            reason = self._stop_reason(limits, now - max(last_message, self._assigned_at))
            if reason:
                self.result.stopped_by = reason
                return
        self.result.stopped_by = "signal"

    def _check_joined(self, waited: float) -> None:
        # a member killed earlier holds its partitions until its session times out
        limit = self.settings.stream_broker_timeout_s + 2 * kafka.SESSION_TIMEOUT_S
        if waited >= limit:
            raise StreamError(
                f"no partition of {self.settings.kafka_topic!r} was assigned within "
                f"{limit:g} s (group "
                f"{self.settings.kafka_group_id!r}: are all partitions taken by other members?)"
            )

    def _stop_reason(self, limits: Limits, idle: float) -> str:
        if limits.max_messages is not None and self.result.messages >= limits.max_messages:
            return "max_messages"
        if limits.max_batches is not None and len(self.result.batches) >= limits.max_batches:
            return "max_batches"
        if limits.idle_timeout_s is not None and idle >= limits.idle_timeout_s:
            return "idle_timeout"
        down = self._down_since
        if down is not None and time.monotonic() - down >= self.settings.stream_broker_timeout_s:
            if self.buffer:
                self._write()
            raise StreamError(
                f"lost the Kafka broker at {self.settings.kafka_bootstrap_servers} for "
                f"{self.settings.stream_broker_timeout_s:g} s; everything read was committed, "
                "run again to continue"
            )
        return ""

    # -- one micro-batch ----------------------------------------------------------------------
    def _write(self) -> None:
        messages, self.buffer = self.buffer, []
        number = len(self.result.batches) + 1
        task = Task(f"{TASK}#{number}", "stream", NAME, _no_task)
        self.audit.task_started(self.ctx, task, 1)
        outcome = TaskOutcome(task, Status.FAILED, attempts=1, started_at=time.time())
        try:
            batch = self._commit(messages, number)
        except BaseException as exc:
            outcome.error, outcome.ended_at = f"{type(exc).__name__}: {one_line(exc)}", time.time()
            self.audit.task_finished(self.ctx, outcome)
            raise
        outcome.ended_at = time.time()
        if batch is None:  # fenced off: another member wrote these partitions meanwhile
            outcome.status, outcome.error = Status.SKIPPED, "partitions moved to another member"
        else:
            outcome.status, outcome.result = Status.SUCCESS, _task_result(batch)
        self.audit.task_finished(self.ctx, outcome)

    def _commit(self, messages: list[Any], number: int) -> BatchResult | None:
        began = time.monotonic()
        rows = _as_rows(messages, self.ctx.run_id)
        topic = self.settings.kafka_topic
        offsets: dict[str, int] = {}
        expected: dict[str, int | None] = {}
        for part, (first, last) in _ranges(rows).items():
            offsets[offset_id(topic, part)] = last + 1
            expected[offset_id(topic, part)] = self.positions.get(part)
            if self.positions.get(part) not in (None, first):
                log.warning(
                    "partition %s: expected offset %s, got %s",
                    part,
                    self.positions.get(part),
                    first,
                )
        try:
            version = append_bronze(
                handle(self.lake, BRONZE), rows, offsets, expected, self.ctx.run_id
            )
        except StorageError:
            # another member wrote these partitions meanwhile (a rebalance): re-read from
            # what the lake recorded, nothing of this batch is kept
            self._reseek()
            return None
        commit_s = time.monotonic() - began
        crash_point("stream.after_bronze")
        for part, (_first, last) in _ranges(rows).items():
            self.positions[part] = last + 1
        self._commit_group_offsets(offsets)
        silver = None
        if time.monotonic() - self._merged_at >= self.settings.stream_silver_interval_s:
            silver = self._merge_silver()
        batch = BatchResult(
            number, rows.num_rows, _bytes(rows), time.monotonic() - began, commit_s, version,
            silver,
        )  # fmt: skip
        self.result.batches.append(batch)
        self.result.busy_s += batch.seconds
        return batch

    def _merge_silver(self) -> SilverResult:
        """Silver catches up with Bronze; members of a group take turns (a lease)."""
        resource = self.lake.table_uri(SILVER.layer, SILVER.name)
        with self.audit.lease(resource, self.ctx.run_id, wait_s=120):
            try:
                silver = merge_silver(self.lake, self.ctx.run_id, default_engine())
            finally:  # a consumer runs for hours: its merges keep no DuckDB memory between them
                release_thread_connections()
        crash_point("stream.after_silver")
        self._merged_at = time.monotonic()
        self.result.silver.append(silver)
        return silver

    def _reseek(self) -> None:
        assigned = self._client.assignment()
        if assigned:
            self._on_assign(self._client, assigned)

    def _commit_group_offsets(self, offsets: dict[str, int]) -> None:
        topic = self.settings.kafka_topic
        parts = [kafka.partition(topic, int(k.rsplit(".", 1)[1]), v) for k, v in offsets.items()]
        try:
            self._client.commit(offsets=parts, asynchronous=True)
        except Exception as exc:  # informational only; the lake holds the truth
            log.debug("group offset commit failed: %s", exc)


def _no_task(_ctx: RunContext) -> TaskResult:  # pragma: no cover - never run by a runner
    raise AssertionError("a micro-batch is recorded, not run")


def _task_result(batch: BatchResult) -> TaskResult:
    silver = batch.silver
    metrics: dict[str, Any] = {
        "bytes": batch.bytes,
        "seconds": round(batch.seconds, 4),
        "commit_seconds": round(batch.commit_seconds, 4),
        "events_per_s": round(batch.messages / batch.seconds) if batch.seconds else None,
    }
    if silver is not None:
        metrics |= {
            "silver_merged": silver.merged,
            "duplicates": silver.duplicates,
            "released": silver.released,
            "silver_bronze_version": silver.bronze_version,
        }
    return TaskResult(
        rows_read=batch.messages,
        rows_written=batch.messages,
        rows_quarantined=silver.quarantined if silver is not None else 0,
        metrics=metrics,
        delta_version=batch.bronze_version,
    )


def _as_rows(messages: list[Any], run_id: str) -> pa.Table:
    now = datetime.now(UTC).replace(tzinfo=None)
    n = len(messages)
    return pa.table(
        {
            "topic": [m.topic() for m in messages],
            "partition": pa.array([m.partition() for m in messages], pa.int32()),
            "offset": pa.array([m.offset() for m in messages], pa.int64()),
            "timestamp": pa.array(
                [ts if kind else None for kind, ts in (m.timestamp() for m in messages)],
                pa.int64(),
            ).cast(pa.timestamp("ms")),
            "key": pa.array([m.key() for m in messages], pa.binary()),
            "value": pa.array([m.value() for m in messages], pa.binary()),
            "_run_id": pa.repeat(pa.scalar(run_id), n),
            "_ingested_at": pa.repeat(pa.scalar(now, pa.timestamp("us")), n),
        },
        schema=BRONZE_SCHEMA,
    )


def _ranges(rows: pa.Table) -> dict[int, tuple[int, int]]:
    """Per partition, the first and last offset in the batch."""
    grouped = rows.group_by("partition").aggregate([("offset", "min"), ("offset", "max")])
    return {
        p: (lo, hi)
        for p, lo, hi in zip(
            grouped["partition"].to_pylist(),
            grouped["offset_min"].to_pylist(),
            grouped["offset_max"].to_pylist(),
            strict=True,
        )
    }


def _bytes(rows: pa.Table) -> int:
    return int(rows["value"].nbytes + rows["key"].nbytes)
