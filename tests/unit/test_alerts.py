"""Alerts: exact payloads, triggers, and delivery to a real local HTTP server.

The receiver is an in-process ``ThreadingHTTPServer`` on 127.0.0.1; timeouts are tenths of
a second so the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from medallion.alerts import (
    GREEN,
    ORANGE,
    RED,
    Alert,
    Alerter,
    AlertListener,
    alert_run_summary,
    colour,
    discord_payload,
    failure_alert,
    generic_payload,
    retry_after,
    slack_payload,
)
from medallion.runner import RunContext, RunReport, Status, Task, TaskOutcome, TaskResult, run_tasks
from medallion.settings import Settings

TOKEN = "s3cr3t-T0KEN-xyz"
ENDED = 1_700_000_000.0  # 2023-11-14T22:13:20Z
STAMP = "2023-11-14T22:13:20+00:00"
REPORT = "https://reports.example/runs/R1.html"


# ---------------------------------------------------------------- the local receiver


@dataclass(frozen=True)
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.script: dict[str, list[Reply]] = {}  # path → replies in turn; the last repeats
        self.release = threading.Event()

    def next_reply(self, path: str) -> Reply:
        replies = self.script.get(path) or [Reply()]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the slow case) is expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.append(Received(self.path, dict(self.headers), body))
            reply = self.server.next_reply(self.path)
        if reply.delay:
            self.server.release.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@dataclass
class Hook:
    server: _Server

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def reply(self, path: str, *replies: Reply) -> str:
        self.server.script[path] = list(replies)
        return self.url(path)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [r.body for r in self.server.received if r.path == path]


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Hook(server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def refused_url() -> str:
    with socket.socket() as sock:  # bound, never listening, then closed: connections refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/webhooks/1/{TOKEN}"


# ---------------------------------------------------------------- helpers


def settings(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("alert_timeout_s", 0.3)
    return Settings(home=tmp_path, **values)


def context(tmp_path: Path, **values: Any) -> RunContext:
    return RunContext(run_id="R1", settings=settings(tmp_path, **values))


def ok_task(ctx: RunContext) -> TaskResult:
    return TaskResult()


def outcome(name: str, status: Status, error: str | None = None, attempts: int = 1) -> TaskOutcome:
    layer, table = name.split("_", 1)
    task = Task(name, layer, table, ok_task)
    return TaskOutcome(task, status, attempts, error, started_at=ENDED - 5, ended_at=ENDED)


# ---------------------------------------------------------------- payloads


def test_discord_failure_payload_is_the_documented_embed(hook: Hook, tmp_path: Path) -> None:
    url = hook.url(f"/api/webhooks/1/{TOKEN}")
    ctx = context(tmp_path, discord_webhook_url=url, report_url="https://reports.example/{run_id}")
    failed = outcome("silver_orders", Status.FAILED, "SchemaDriftError: column x vanished", 3)

    AlertListener(Alerter.from_settings(ctx.settings)).task_finished(ctx, failed)

    (got,) = hook.server.received
    assert got.path == f"/api/webhooks/1/{TOKEN}"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("medallion/")
    assert got.body == {
        "username": "medallion",
        "embeds": [
            {
                "title": "medallion_pipeline: task silver_orders failed",
                "description": "Task silver_orders (silver orders) failed after 3 attempts.",
                "color": 0xE74C3C,
                "url": "https://reports.example/R1",
                "timestamp": STAMP,
                "fields": [
                    {"name": "Run", "value": "R1", "inline": True},
                    {"name": "Task", "value": "silver_orders", "inline": True},
                    {"name": "Table", "value": "silver.orders", "inline": True},
                    {
                        "name": "Error",
                        "value": "SchemaDriftError: column x vanished",
                        "inline": False,
                    },
                ],
            }
        ],
    }


def test_discord_summary_payload_counts_tasks_and_names_checks(hook: Hook, tmp_path: Path) -> None:
    ctx = context(tmp_path, discord_webhook_url=hook.url("/d"), alert_on=["summary"])
    report = RunReport(
        "R1",
        [
            outcome("bronze_orders", Status.SUCCESS),
            outcome("silver_orders", Status.FAILED, "ValueError: bad"),
            outcome("gold_sales", Status.SKIPPED, "upstream silver_orders did not succeed"),
        ],
    )
    sent = alert_run_summary(
        Alerter.from_settings(ctx.settings),
        ctx,
        report,
        ["orders.unique_order_id"],
        ["orders.freshness"],
        report_url=REPORT,
    )

    assert [a.kind for a in sent] == ["summary"]  # failure and check alerts are off
    assert hook.bodies("/d") == [
        {
            "username": "medallion",
            "embeds": [
                {
                    "title": "medallion_pipeline: run failed",
                    "description": (
                        "Run R1 failed: 1 succeeded · 1 failed · 1 skipped · 1 checks failed"
                        " · 1 checks warned.\n• silver_orders: ValueError: bad"
                    ),
                    "color": RED,
                    "url": REPORT,
                    "timestamp": STAMP,
                    "fields": [
                        {"name": "Run", "value": "R1", "inline": True},
                        {
                            "name": "Tasks",
                            "value": "1 succeeded · 1 failed · 1 skipped · 1 checks failed"
                            " · 1 checks warned",
                            "inline": False,
                        },
                        {"name": "Checks", "value": "orders.unique_order_id", "inline": False},
                    ],
                }
            ],
        }
    ]


def test_slack_and_generic_payloads(hook: Hook, tmp_path: Path) -> None:
    ctx = context(tmp_path, slack_webhook_url=hook.url("/s"), webhook_url=hook.url("/w"))
    failed = outcome("silver_orders", Status.FAILED, "KeyError: <order_id> & more")
    alert = failure_alert(ctx, failed, "reports/latest.html")

    assert Alerter.from_settings(ctx.settings).send(alert) == {"slack": True, "webhook": True}

    assert hook.bodies("/s") == [
        {
            "text": "medallion_pipeline: task silver_orders failed: "
            "Task silver_orders (silver orders) failed after 1 attempt.",
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": ":red_circle: medallion_pipeline: task silver_orders failed",
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": "Task silver_orders (silver orders) failed after 1 attempt.",
                    },
                    "fields": [
                        {"type": "mrkdwn", "text": "*Run*\nR1"},
                        {"type": "mrkdwn", "text": "*Task*\nsilver_orders"},
                        {"type": "mrkdwn", "text": "*Table*\nsilver.orders"},
                        {
                            "type": "mrkdwn",
                            "text": "*Error*\nKeyError: &lt;order_id&gt; &amp; more",
                        },
                    ],
                },
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": "Report: reports/latest.html"}],
                },
            ],
        }
    ]
    assert hook.bodies("/w") == [
        {
            "event": "failure",
            "run_id": "R1",
            "job": "medallion_pipeline",
            "task": "silver_orders",
            "table": "orders",
            "layer": "silver",
            "ok": False,
            "error": "KeyError: <order_id> & more",
            "checks": [],
            "counts": {},
            "report_url": "reports/latest.html",
            "title": "medallion_pipeline: task silver_orders failed",
            "text": "Task silver_orders (silver orders) failed after 1 attempt.",
            "timestamp": STAMP,
        }
    ]


def test_colour_follows_kind_and_outcome() -> None:
    base = Alert("summary", "t", "x", "R1", "job", ok=True)
    assert colour(base) == GREEN
    assert colour(Alert("summary", "t", "x", "R1", "job", ok=True, counts={"checks_warned": 1}))
    assert colour(Alert("check_warned", "t", "x", "R1", "job", ok=True)) == ORANGE
    assert colour(Alert("summary", "t", "x", "R1", "job", ok=False)) == RED
    assert colour(Alert("check_failed", "t", "x", "R1", "job", ok=True)) == RED


def test_long_texts_are_cut_to_each_service_limits() -> None:
    alert = Alert(
        "failure",
        "T" * 500,
        "D" * 10_000,
        "R1",
        "job",
        task="t",
        table="orders",
        layer="silver",
        error="E" * 5000,
        checks=tuple(f"check_{i:03d}" for i in range(300)),
        report_url=REPORT,
        at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    embed = discord_payload(alert)["embeds"][0]
    error = next(f["value"] for f in embed["fields"] if f["name"] == "Error")
    assert len(error) == 1000
    assert error.endswith("…")
    assert len(embed["title"]) == 256
    assert len(embed["description"]) <= 4096
    assert len(embed["fields"]) <= 25
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    chars = len(embed["title"]) + len(embed["description"])
    assert chars + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"]) <= 6000

    slack = slack_payload(alert)
    header, section, _ = slack["blocks"]
    assert len(header["text"]["text"]) <= 150
    assert len(section["text"]["text"]) <= 3000
    assert all(len(f["text"]) <= 2000 for f in section["fields"]) and len(section["fields"]) <= 10
    assert len(slack["text"]) <= 3000
    assert len(generic_payload(alert)["error"]) == 4000


# ---------------------------------------------------------------- triggers


def test_only_final_failures_alert_once_and_summary_can_be_off(hook: Hook, tmp_path: Path) -> None:
    ctx = context(tmp_path, webhook_url=hook.url("/w"), retries=1, alert_on=["failure"])
    calls: list[str] = []

    def flaky(ctx: RunContext) -> TaskResult:  # fails once, then succeeds on the retry
        calls.append("flaky")
        if calls.count("flaky") == 1:
            raise ConnectionError("reset")
        return TaskResult()

    def down(ctx: RunContext) -> TaskResult:  # transient every time: fails after the retry
        raise ConnectionError("refused")

    def broken(ctx: RunContext) -> TaskResult:  # not transient: fails at once, no retry
        raise ValueError("bad column")

    tasks = [
        Task("bronze_flaky", "bronze", "flaky", flaky),
        Task("bronze_down", "bronze", "down", down),
        Task("bronze_broken", "bronze", "broken", broken),
        Task("silver_broken", "silver", "broken", ok_task, upstream=("bronze_broken",)),
    ]
    alerter = Alerter.from_settings(ctx.settings)
    report = run_tasks(tasks, ctx, [AlertListener(alerter)], sleep=lambda s: None)

    # final failures alert at once; the flaky task recovered on its retry
    assert sorted(b["task"] for b in hook.bodies("/w")) == ["bronze_broken", "bronze_down"]
    for _ in range(2):  # nothing more at the end of the run: no duplicates, summary is off
        alert_run_summary(alerter, ctx, report, ["c1"], ["c2"])
    bodies = hook.bodies("/w")
    assert sorted((b["event"], b["task"]) for b in bodies) == [
        ("failure", "bronze_broken"),
        ("failure", "bronze_down"),
    ]
    assert report.by_status(Status.SKIPPED)[0].task.name == "silver_broken"  # never alerted


def test_run_end_sends_enabled_check_alerts_then_the_summary(hook: Hook, tmp_path: Path) -> None:
    ctx = context(tmp_path, webhook_url=hook.url("/w"))
    alerter = Alerter.from_settings(ctx.settings)
    report = RunReport("R1", [outcome("bronze_orders", Status.SUCCESS)])

    alert_run_summary(alerter, ctx, report, [], ["orders.freshness"])

    bodies = hook.bodies("/w")
    assert [(b["event"], b["ok"], b["checks"]) for b in bodies] == [
        ("check_warned", True, ["orders.freshness"]),
        ("summary", True, []),
    ]
    assert bodies[1]["counts"] == {
        "succeeded": 1,
        "failed": 0,
        "skipped": 0,
        "checks_failed": 0,
        "checks_warned": 1,
    }


def test_from_settings_keeps_configured_http_destinations_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = f"file:///tmp/{TOKEN}"
    s = settings(tmp_path, slack_webhook_url=f"https://hooks.example/{TOKEN}", webhook_url=bad)
    alerter = Alerter.from_settings(s)
    assert [d.name for d in alerter.destinations] == ["slack"]
    assert TOKEN not in repr(alerter) + caplog.text
    assert "webhook_url is not an http(s) URL" in caplog.text
    assert Alerter.from_settings(settings(tmp_path)).enabled("failure") is False


# ---------------------------------------------------------------- delivery failures


def test_dead_slow_and_failing_webhooks_are_bounded_quiet_and_secret(
    hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="medallion.alerts")
    ctx = context(
        tmp_path,
        discord_webhook_url=refused_url(),
        slack_webhook_url=hook.reply(f"/slow/{TOKEN}", Reply(200, delay=2.0)),
        webhook_url=hook.reply(f"/fail/{TOKEN}", Reply(500)),
    )
    alerter = Alerter.from_settings(ctx.settings)
    alert = failure_alert(ctx, outcome("silver_orders", Status.FAILED, "boom"))

    results = []
    for _ in range(2):
        started = time.monotonic()
        results.append(alerter.send(alert))
        assert time.monotonic() - started < 0.3 * 2 + 0.5  # timeout * (retries + 1) + grace

    assert results == [{"discord": False, "slack": False, "webhook": False}] * 2
    assert len(hook.bodies(f"/fail/{TOKEN}")) == 4  # one retry per send on a 500
    assert len(hook.bodies(f"/slow/{TOKEN}")) == 1  # timed out: not retried, then skipped
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warnings) == [
        "failure alert not delivered to discord: connection failed (ConnectionRefusedError)",
        "failure alert not delivered to slack: timed out",
        "failure alert not delivered to webhook: HTTP 500",
    ]
    shown = caplog.text + repr(results) + repr(alerter) + repr(alerter.destinations)
    assert TOKEN not in shown
    assert "127.0.0.1" not in shown


def test_rate_limited_webhook_is_delivered_after_retry_after(
    hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = hook.reply("/w", Reply(429, {"Retry-After": "1"}), Reply(200))
    slept: list[float] = []
    configured = Alerter.from_settings(settings(tmp_path, webhook_url=url)).destinations
    alerter = Alerter(configured, timeout_s=1.0, retries=1, sleep=slept.append)
    alert = Alert("summary", "run ok", "fine", "R1", "job", ok=True)

    assert alerter.send(alert) == {"webhook": True}
    assert len(hook.bodies("/w")) == 2
    assert slept == [1.0]
    assert not caplog.records


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1.5", 1.5), ("0", 0.0), ("30", 2.0), ("-3", 0.0), ("nan", 0.0), ("soon", 0.5), (None, 0.5)],
)
def test_retry_after_is_capped(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


def test_a_redirect_is_not_followed(hook: Hook, tmp_path: Path) -> None:
    url = hook.reply("/w", Reply(302, {"Location": hook.url("/elsewhere")}))
    alerter = Alerter.from_settings(settings(tmp_path, webhook_url=url))

    assert alerter.send(Alert("summary", "t", "x", "R1", "job", ok=True)) == {"webhook": False}
    assert [r.path for r in hook.server.received] == ["/w"]  # no bodiless GET elsewhere
