"""The Alerter as configured: which destinations, which kinds, nothing secret shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medallion.alerts import Alert, Alerter
from medallion.settings import Settings

TOKEN = "s3cr3t-T0KEN-xyz"


def settings(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("alert_timeout_s", 0.3)
    return Settings(home=tmp_path, **values)


def test_from_settings_keeps_configured_http_destinations_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = f"file:///tmp/{TOKEN}"
    s = settings(tmp_path, slack_webhook_url=f"https://hooks.example/{TOKEN}", webhook_url=bad)
    alerter = Alerter.from_settings(s)
    assert [d.name for d in alerter.destinations] == ["slack"]
    assert TOKEN not in repr(alerter) + repr(alerter.destinations) + caplog.text
    assert "webhook_url is not an http(s) URL" in caplog.text
    assert Alerter.from_settings(settings(tmp_path)).enabled("failure") is False


def test_a_kind_that_is_off_sends_nothing_and_subjects_alert_once(tmp_path: Path) -> None:
    s = settings(tmp_path, webhook_url=f"https://hooks.example/{TOKEN}", alert_on=["failure"])
    alerter = Alerter.from_settings(s)
    assert alerter.enabled("failure") and not alerter.enabled("summary")
    assert alerter.send(Alert("summary", "t", "x", "R1", "job", ok=True)) == {}
    assert [alerter.once("R1", "bronze.orders") for _ in range(2)] == [True, False]
    assert alerter.once("R2", "bronze.orders") is True
