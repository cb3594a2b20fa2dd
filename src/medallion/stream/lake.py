"""The review stream's lake tables, and Silver from Bronze.

``bronze/review_events`` holds every message as received; each micro-batch is one append
whose commit also records, per partition, the next offset to read (app transaction
``medallion.stream.<topic>.<partition>``): rows and offsets land together or not at all, and
a consumer starts from those offsets, never from Kafka's group offsets.

``silver/review_events`` and ``quarantine/review_events`` follow from Bronze like every Silver
table: the Silver commit records the Bronze version merged through, so a crash between the two
commits is caught up by the next micro-batch (or the next consumer start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import TableRef
from medallion.engine import Engine, default_engine
from medallion.sql import quote
from medallion.storage import CDF, DeltaHandle, Lake, MergePlan, app_id
from medallion.stream.contract import FIELDS, validate_sql

NAME = "review_events"
BRONZE = TableRef("bronze", NAME)
SILVER = TableRef("silver", NAME)
QUARANTINE = TableRef("quarantine", NAME)
UNKNOWN_ORDER = "order_id: unknown order"
BRONZE_KEY = ("topic", "partition", "offset")  # a message, once
SILVER_KEY = ("review_id", "order_id")  # a review, its newest event

BRONZE_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), False),
        pa.field("partition", pa.int32(), False),
        pa.field("offset", pa.int64(), False),
        pa.field("timestamp", pa.timestamp("ms")),  # the broker's or producer's time
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("_run_id", pa.string(), False),
        pa.field("_ingested_at", pa.timestamp("us"), False),
    ]
)
_EVENT_COLUMNS = ", ".join(quote(f.name) for f in FIELDS if f.name != "schema_version")


def offset_id(topic: str, partition: int) -> str:
    """The app transaction holding the next offset to read of one partition."""
    return f"medallion.stream.{topic}.{partition}"


def handle(lake: Lake, ref: TableRef) -> DeltaHandle:
    return lake.table(ref.layer, ref.name)


@dataclass(frozen=True)
class SilverResult:
    bronze_version: int | None  # merged through
    events: int  # Bronze rows read
    merged: int  # rows inserted or updated in Silver
    quarantined: int
    duplicates: int  # redelivered or superseded within the batch
    released: int  # unknown-order events whose order has arrived since


def append_bronze(
    bronze: DeltaHandle,
    rows: pa.Table,
    offsets: dict[str, int],
    expected: dict[str, int | None],
    run_id: str,
) -> int:
    """One commit: the messages and, per partition, the next offset to read."""
    return bronze.append(
        rows,
        transactions=offsets,
        expected=expected,
        metadata={"run_id": run_id, "step": "stream", "table": NAME, "rows": rows.num_rows},
        configuration=CDF,
        key=BRONZE_KEY,
    )


def _checked_sql(retrying: bool) -> str:
    retry = (
        'UNION ALL SELECT topic, "partition", "offset", key, value, TRUE AS _retry FROM retry'
        if retrying
        else ""
    )
    return f"""
    WITH raw AS (
        SELECT topic, "partition", "offset", key, value, FALSE AS _retry FROM new {retry}
    ),
    validated AS ({validate_sql("raw")})
    SELECT *, CASE
        WHEN _reason IS NULL AND order_id NOT IN (SELECT order_id FROM orders)
            THEN '{UNKNOWN_ORDER}'
        ELSE _reason END AS reason
    FROM validated
    """


_LATEST = f"""
    SELECT {_EVENT_COLUMNS}, event_time AS updated_at, FALSE AS is_deleted,
        topic AS _topic, "partition" AS _partition, "offset" AS _offset,
        $run_id AS _run_id
    FROM checked WHERE reason IS NULL
    QUALIFY row_number() OVER (PARTITION BY review_id, order_id
        ORDER BY event_time DESC, event_id DESC) = 1
"""


def _merge_plan(columns: list[str]) -> MergePlan:
    """A review's newest event wins (ties: the larger event id, so replays change nothing)."""
    everything = {c: f"s.{c}" for c in columns}
    newer = (
        "s.event_time > t.event_time OR (s.event_time = t.event_time AND s.event_id > t.event_id)"
    )
    return MergePlan(
        SILVER_KEY,
        ((newer, everything),),
        ((None, everything),),
    )


def merge_silver(lake: Lake, run_id: str, engine: Engine) -> SilverResult:
    """Validate the Bronze rows Silver has not merged yet (and retry events held back for an
    unknown order), quarantine the invalid ones with their reason, and merge the newest event
    per review into Silver. Idempotent: a repeat after a crash merges nothing twice."""
    bronze, silver = handle(lake, BRONZE), handle(lake, SILVER)
    quarantine = handle(lake, QUARANTINE)
    after = silver.app_version(app_id("silver", NAME))
    new, through = bronze.changes(after)
    if through is None or through == after:
        return SilverResult(after, 0, 0, 0, 0, 0)
    new = new if new is not None else BRONZE_SCHEMA.empty_table()
    retry = _held_for_unknown_order(quarantine, silver)
    tables = {"new": new, "orders": _order_ids(lake), "retry": retry}
    checked = engine.query(_checked_sql(retry.num_rows > 0), tables)
    bad = engine.query(
        'SELECT topic, "partition", "offset", key, '
        "coalesce(try(decode(value)), '0x' || hex(value)) AS raw, reason "
        "FROM checked WHERE reason IS NOT NULL AND NOT _retry",
        {"checked": checked},
    )
    quarantined = _quarantine(quarantine, bad, through, run_id)
    latest = engine.query(_LATEST, {"checked": checked}, {"run_id": run_id})
    merged = _merge(silver, latest, through, run_id)
    valid = checked.num_rows - bad.num_rows - _still_held(checked)
    released = engine.query(
        "SELECT count(*) AS n FROM checked WHERE _retry AND reason IS NULL", {"checked": checked}
    )["n"][0].as_py()
    return SilverResult(
        through, new.num_rows, merged, quarantined, valid - latest.num_rows, released
    )


def _still_held(checked: pa.Table) -> int:
    retried = checked.filter(checked["_retry"])
    return int(retried.num_rows - retried["reason"].null_count)


def _order_ids(lake: Lake) -> pa.Table:
    orders = lake.table("silver", "orders").read(["order_id"])
    return orders if orders is not None else pa.table({"order_id": pa.array([], pa.string())})


def _held_for_unknown_order(quarantine: DeltaHandle, silver: DeltaHandle) -> pa.Table:
    """Quarantined events whose only fault was an unknown order, not yet in Silver."""
    empty = BRONZE_SCHEMA.empty_table().select(["topic", "partition", "offset", "key", "value"])
    held = quarantine.read(["topic", "partition", "offset", "key", "raw", "reason"])
    if held is None:
        return empty
    held = held.filter(pc.equal(held["reason"], UNKNOWN_ORDER))
    done = silver.read(["_topic", "_partition", "_offset"])
    if done is not None and held.num_rows:
        keys = ["topic", "partition", "offset"]
        done = done.rename_columns(keys)
        held = held.join(done, keys=keys, join_type="left anti")
    value = pc.cast(held["raw"], pa.binary())
    return pa.table(
        {
            "topic": held["topic"],
            "partition": held["partition"],
            "offset": held["offset"],
            "key": held["key"],
            "value": value,
        }
    )


def _quarantine(quarantine: DeltaHandle, bad: pa.Table, through: int, run_id: str) -> int:
    qid = app_id("quarantine", NAME)
    done = quarantine.app_version(qid)
    if bad.num_rows == 0 or (done is not None and done >= through):
        return 0 if done is not None and done >= through else int(bad.num_rows)
    now = pa.scalar(datetime.now(UTC).replace(tzinfo=None), pa.timestamp("us"))
    stamped = bad.append_column("_quarantine_run_id", pa.repeat(pa.scalar(run_id), bad.num_rows))
    stamped = stamped.append_column("_quarantined_at", pa.repeat(now, bad.num_rows))
    quarantine.append(
        stamped,
        transactions={qid: through},
        expected={qid: done},
        metadata={"run_id": run_id, "step": "quarantine", "table": NAME, "rows": bad.num_rows},
    )
    return int(bad.num_rows)


_CHANGED = """
    SELECT l.*, s.review_id IS NOT NULL AS _stored
    FROM latest l LEFT JOIN stored s ON s.review_id = l.review_id AND s.order_id = l.order_id
    WHERE s.review_id IS NULL OR l.event_time > s.event_time
        OR (l.event_time = s.event_time AND l.event_id > s.event_id)
"""


def _merge(silver: DeltaHandle, latest: pa.Table, through: int, run_id: str) -> int:
    """New reviews are appended; only reviews Silver holds an older event of are merged (a
    MERGE rewrites the files it touches, an append writes one new file). The last commit
    records the Bronze version; a repeat after a crash between the two finds the appended
    rows stored and not newer, so it writes nothing twice."""
    sid = app_id("silver", NAME)
    meta = {"run_id": run_id, "step": "silver", "table": NAME, "bronze_version": through}
    if not silver.exists:
        silver.overwrite(
            latest, transactions={sid: through}, metadata=meta, configuration=CDF, key=SILVER_KEY
        )
        return int(latest.num_rows)
    stored = silver.read(["review_id", "order_id", "event_time", "event_id"])
    changed = default_engine().query(_CHANGED, {"latest": latest, "stored": stored})
    new = changed.filter(pc.invert(changed["_stored"])).drop_columns(["_stored"])
    newer = changed.filter(changed["_stored"]).drop_columns(["_stored"])
    done = silver.app_version(sid)
    if newer.num_rows == 0:
        silver.append(
            new, transactions={sid: through}, expected={sid: done}, metadata=meta, key=SILVER_KEY
        )
        return int(new.num_rows)
    if new.num_rows:
        silver.append(new, transactions={}, expected={sid: done}, metadata=meta, key=SILVER_KEY)
    plan = _merge_plan(latest.column_names)
    result = silver.merge(newer, plan, transactions={sid: through}, metadata=meta)
    return int(new.num_rows) + result.updated
