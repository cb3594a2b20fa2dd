"""Alerts over real HTTP: the exact payloads each service receives, and what triggers them.

The receiver is an in-process ``ThreadingHTTPServer`` on 127.0.0.1 (``webhook_receiver``);
timeouts are tenths of a second so the whole file runs in a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from webhook_receiver import TOKEN, Hook

from medallion.alerts import (
    RED,
    Alerter,
    AlertListener,
    alert_run_summary,
    failure_alert,
)
from medallion.runner import RunContext, RunReport, Status, Task, TaskOutcome, TaskResult, run_tasks
from medallion.settings import Settings

ENDED = 1_700_000_000.0  # 2023-11-14T22:13:20Z
STAMP = "2023-11-14T22:13:20+00:00"
REPORT = "https://reports.example/runs/R1.html"


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
