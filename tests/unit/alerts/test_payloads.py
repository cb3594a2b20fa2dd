"""Alert payloads are pure: colours, and each service's limits (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from medallion.alerts import (
    GREEN,
    ORANGE,
    RED,
    Alert,
    colour,
    discord_payload,
    generic_payload,
    slack_payload,
)

REPORT = "https://reports.example/runs/R1.html"


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
