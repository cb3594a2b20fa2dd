"""The report's Streaming section after real consumes from the broker: per run and in total the
batches, events and quarantined events, the quarantined events by reason (one held for an
unknown order and released once the order arrived), all as the audit log and the lake hold
them, and the page still one offline file that a browser renders."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest
from tests.integration.test_report import EXTERNAL, run_chromium, section

from medallion import api
from medallion.settings import Settings
from medallion.storage import Lake
from medallion.stream import kafka
from medallion.stream.contract import example
from medallion.stream.lake import UNKNOWN_ORDER

ORDERS = [hashlib.md5(f"order{i}".encode()).hexdigest() for i in range(50)]
LATE_ORDER = hashlib.md5(b"an order that arrives later").hexdigest()
BAD_SCORE = json.dumps(example(review_score=9)).encode()
BAD_ORDER = json.dumps(example(order_id="XYZ")).encode()


def valid(number: int, order: str | None = None) -> bytes:
    body = example(event_id=hashlib.md5(f"event{number}".encode()).hexdigest(),
                   review_id=hashlib.md5(f"review{number}".encode()).hexdigest(),
                   order_id=order or ORDERS[number % len(ORDERS)])  # fmt: skip
    return json.dumps(body).encode()


# the first consume: 300 messages, 10 of them quarantined (one only for its unknown order)
FIRST = [
    *(valid(i) for i in range(290)),
    *[b"{not json"] * 4,
    *[BAD_SCORE] * 3,
    *[BAD_ORDER] * 2,
    valid(1_000, LATE_ORDER),
]
# the second: 200 messages, 2 of them empty
SECOND = [*(valid(i) for i in range(2_000, 2_198)), b"", b""]
REASONS = [  # reason, events, released to Silver since (the late order arrived between runs)
    ["not JSON", "4", "0"],
    ["review_score: out of range 1..5", "3", "0"],
    ["empty message", "2", "0"],
    ["order_id: malformed", "2", "0"],
    [UNKNOWN_ORDER, "1", "1"],
]


class Tables(HTMLParser):
    """The text of every cell of every table, row by row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def tables_of(html: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(html)
    return parser.tables


@dataclass(frozen=True)
class Streamed:
    settings: Settings
    run_ids: list[str]  # oldest first
    batches: list[int]  # committed micro-batches per run
    report: Path


def publish(settings: Settings, values: list[bytes]) -> None:
    producer = kafka.producer(settings)
    for value in values:
        producer.produce(settings.kafka_topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def set_orders(settings: Settings, orders: list[str]) -> None:
    table = Lake.from_settings(settings).table("silver", "orders")
    table.overwrite(pa.table({"order_id": orders}), transactions={}, metadata={})


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory, kafka_broker: str) -> Streamed:
    """Two consumes of a fresh topic, with the default Silver interval (so a consume's last
    Silver merge may come after its last micro-batch), then the report."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        home=tmp_path_factory.mktemp("stream-report") / "home", report_on_run=False,
        kafka_bootstrap_servers=kafka_broker, kafka_topic=f"reviews-{tag}",
        kafka_group_id=f"g-{tag}", stream_batch_size=100, stream_broker_timeout_s=10,
    )  # fmt: skip
    set_orders(settings, ORDERS)
    kafka.ensure_topic(settings)
    publish(settings, FIRST)
    first = api.stream_consume(settings, idle_timeout_s=2)
    set_orders(settings, [*ORDERS, LATE_ORDER])
    publish(settings, SECOND)
    second = api.stream_consume(settings, idle_timeout_s=2)
    assert (first.messages, second.messages) == (len(FIRST), len(SECOND))
    assert (first.quarantined, second.quarantined) == (10, 2)
    rows = [r for r in api.audit_log(settings) if r["job"] == "medallion_stream"]
    run_ids = list(dict.fromkeys(r["run_id"] for r in rows))
    assert len(run_ids) == 2
    batches = [len(first.batches), len(second.batches)]
    api.init_source(settings)  # a report is a pipeline run's page: one run on an empty source
    assert api.run(settings, ["bronze"]).ok
    return Streamed(settings, run_ids, batches, api.report(settings))


@pytest.fixture(scope="module")
def streaming(streamed: Streamed) -> str:
    return section(streamed.report.read_text(encoding="utf-8"), "streaming")


def expected_speed(settings: Settings, run_ids: list[str]) -> list[str]:
    """Events/s while writing and commit p50/p99 (ms, nearest rank) over these runs' batches,
    as the report formats them, straight from the audit rows."""
    rows = [
        r
        for r in api.audit_log(settings)
        if r["run_id"] in run_ids and not r["task"].endswith("#silver")  # not a micro-batch
    ]
    metrics = [json.loads(r["metrics"]) for r in rows if r["status"] == "SUCCESS"]
    events = sum(r["rows_read"] for r in rows if r["status"] == "SUCCESS")
    commits = sorted(m["commit_seconds"] for m in metrics)

    def ms(percent: int) -> str:
        value = round(commits[math.ceil(percent * len(commits) / 100) - 1] * 1000, 1)
        return f"{value:,.3f}".rstrip("0").rstrip(".")

    return [f"{round(events / sum(m['seconds'] for m in metrics)):,}", ms(50), ms(99)]


def test_every_consume_run_and_the_totals(streamed: Streamed, streaming: str) -> None:
    runs, _reasons = tables_of(streaming)
    assert runs[0] == ["run", "started", "batches", "events", "quarantined", "events/s writing",
                       "commit p50 (ms)", "commit p99 (ms)", "ended"]  # fmt: skip
    first, second = streamed.run_ids
    newest, oldest, total = runs[1:]
    assert [newest[0], newest[2:5], newest[8]] == [second, [str(streamed.batches[1]), "200", "2"],
                                                   "SUCCESS"]  # fmt: skip
    assert [oldest[0], oldest[2:5], oldest[8]] == [first, [str(streamed.batches[0]), "300", "10"],
                                                   "SUCCESS"]  # fmt: skip
    assert total[:1] + total[2:5] + total[8:] == ["all 2 runs", str(sum(streamed.batches)), "500",
                                                  "12", "\u2014"]  # fmt: skip
    assert streamed.batches[0] >= 3 and streamed.batches[1] >= 2  # 100 messages a batch at most
    assert total[1] == oldest[1] <= newest[1]
    assert newest[5:8] == expected_speed(streamed.settings, [second])
    assert oldest[5:8] == expected_speed(streamed.settings, [first])
    assert total[5:8] == expected_speed(streamed.settings, streamed.run_ids)


def test_quarantined_events_by_reason(streaming: str) -> None:
    _runs, reasons = tables_of(streaming)
    assert reasons == [["reason", "events", "released to Silver since"], *REASONS]


def test_the_page_stays_one_offline_file(streamed: Streamed) -> None:
    html = streamed.report.read_text(encoding="utf-8")
    assert '<a href="#streaming">Streaming</a>' in html
    assert not EXTERNAL.search(html)
    for banned in ("<script", "<link", "@import", "url(", "<img", "<iframe"):
        assert banned not in html.lower()


@pytest.mark.browser
def test_chromium_renders_the_streaming_tables(streamed: Streamed, tmp_path: Path) -> None:
    dom = run_chromium(tmp_path, "--dump-dom", streamed.report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    runs, reasons = tables_of(section(dom.stdout, "streaming"))
    assert [row[0] for row in runs[1:]] == [*streamed.run_ids[::-1], "all 2 runs"]
    assert reasons[1:] == REASONS
