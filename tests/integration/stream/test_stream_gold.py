"""Gold unifies batch reviews and streamed review events, one row per review: the version
updated last wins (a batch row's ``updated_at``, an event's ``event_time``); on a tie the
stream wins, being the fresher channel for the same instant."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path

from tests.support import put, read, run_ok

from medallion import api
from medallion.catalog import SOURCE_TABLES
from medallion.settings import Settings
from medallion.source.db import open_source
from medallion.stream import kafka
from medallion.stream.contract import example

T = datetime(2018, 3, 1, 9, 0, 0)


def hx(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


ORDER, CUSTOMER = hx("order"), hx("customer")
R1, R2, R3, R4 = hx("r1"), hx("r2"), hx("r3"), hx("r4")


def review(review_id: str, score: int, day: int) -> dict[str, object]:
    at = T.replace(day=day)
    return {"review_id": review_id, "order_id": ORDER, "review_score": score,
            "review_creation_date": T, "review_answer_timestamp": at, "updated_at": at}  # fmt: skip


def event(review_id: str, score: int, day: int) -> bytes:
    at = T.replace(day=day).isoformat()
    body = example(event_id=hx(f"{review_id}{day}"), review_id=review_id, order_id=ORDER,
                   review_score=score, review_creation_date=T.isoformat(),
                   review_answer_timestamp=at, event_time=at)  # fmt: skip
    return json.dumps(body).encode()


def test_the_version_updated_last_wins_and_a_tie_goes_to_the_stream(
    tmp_path: Path, kafka_broker: str
) -> None:
    s = Settings(home=tmp_path / "home", retries=0, report_on_run=False,
                 kafka_bootstrap_servers=kafka_broker, kafka_topic=f"r-{uuid.uuid4().hex[:8]}",
                 stream_silver_interval_s=0)  # fmt: skip
    with open_source(s.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    put(s, "customers", [{"customer_id": CUSTOMER, "customer_unique_id": hx("person"),
                          "customer_zip_code_prefix": "01037", "updated_at": T}])  # fmt: skip
    put(s, "orders", [{"order_id": ORDER, "customer_id": CUSTOMER, "order_status": "delivered",
                       "order_purchase_timestamp": T, "updated_at": T}])  # fmt: skip
    put(s, "order_reviews", [review(R1, 3, 2), review(R2, 4, 9), review(R4, 2, 5)])
    run_ok(s)
    producer = kafka.producer(s)
    kafka.ensure_topic(s)
    for value in (event(R1, 5, 4), event(R2, 1, 6), event(R3, 4, 7), event(R4, 1, 5)):
        producer.produce(s.kafka_topic, key=ORDER.encode(), value=value)
    assert producer.flush(10) == 0
    assert api.stream_consume(s, idle_timeout_s=2).messages == 4
    run_ok(s, ["gold"])
    rows = {
        r["review_id"]: (r["review_score"], r["source"])
        for r in read(s, "gold", "fact_review").to_pylist()
    }
    assert rows == {
        R1: (5, "stream"),  # the event is newer than the batch row
        R2: (4, "batch"),  # the batch row is newer than the event
        R3: (4, "stream"),  # only streamed
        R4: (1, "stream"),  # same instant: the stream wins
    }
    orders = read(s, "gold", "fact_order").to_pylist()
    assert [o["review_score"] for o in orders] == [4]  # the order's latest answered review (R2)
