"""Delivery over real HTTP when webhooks misbehave: down, slow, failing, rate-limited,
redirecting, refusing, trickling. Always bounded by one deadline, never a URL in a note.

The receivers are real local servers (``webhook_receiver``); timeouts are tenths of a second.
"""

from __future__ import annotations

import logging
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from webhook_receiver import TOKEN, Hook, Reply, refused_url, trickling

from medallion.alerts import Alert, Alerter, Destination, generic_payload
from medallion.settings import Settings

ALERT = Alert("failure", "silver.orders failed", "boom", "R1", "job", error="boom")


def settings(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("alert_timeout_s", 0.3)
    return Settings(home=tmp_path, **values)


def webhook(url: str, *, timeout_s: float, retries: int, **kwargs: Any) -> Alerter:
    """An Alerter with one generic webhook at ``url``."""
    dest = Destination("webhook", SecretStr(url), generic_payload)
    return Alerter([dest], timeout_s=timeout_s, retries=retries, **kwargs)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_dead_slow_and_failing_webhooks_are_bounded_quiet_and_secret(
    hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="medallion.alerts")
    alerter = Alerter.from_settings(
        settings(
            tmp_path,
            discord_webhook_url=refused_url(),
            slack_webhook_url=hook.reply(f"/slow/{TOKEN}", Reply(200, delay=2.0)),
            webhook_url=hook.reply(f"/fail/{TOKEN}", Reply(500)),
        )
    )

    results = []
    for _ in range(2):
        started = time.monotonic()
        results.append(alerter.send(ALERT))
        assert time.monotonic() - started < 0.3 * 2 + 0.5  # timeout * (retries + 1) + grace

    assert results == [{"discord": False, "slack": False, "webhook": False}] * 2
    assert len(hook.bodies(f"/fail/{TOKEN}")) == 4  # one retry per send on a 500
    assert len(hook.bodies(f"/slow/{TOKEN}")) == 1  # timed out: not retried, then skipped
    assert warnings(caplog) == [
        "failure alert not delivered to discord: connection failed (ConnectionRefusedError)",
        "failure alert not delivered to slack: timed out",
        "failure alert not delivered to webhook: HTTP 500",
    ]
    shown = caplog.text + repr(results) + repr(alerter) + repr(alerter.destinations)
    assert TOKEN not in shown
    assert "127.0.0.1" not in shown


def test_connection_refused_gives_a_clear_note_without_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slept: list[float] = []
    alerter = webhook(refused_url(), timeout_s=1.0, retries=2, sleep=slept.append)

    assert alerter.send(ALERT) == {"webhook": False}
    assert warnings(caplog) == [
        "failure alert not delivered to webhook: connection failed (ConnectionRefusedError)"
    ]
    assert len(slept) == 2  # refused is a network error: retried, with back-off
    assert all(0.25 <= s <= 1.0 for s in slept)  # 0.25 s doubling, plus up to 0.25 s jitter
    assert TOKEN not in caplog.text
    assert "127.0.0.1" not in caplog.text


def test_rate_limited_webhook_is_delivered_after_retry_after(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    url = hook.reply("/w", Reply(429, {"Retry-After": "1"}), Reply(200))
    slept: list[float] = []
    alerter = webhook(url, timeout_s=1.0, retries=1, sleep=slept.append)

    assert alerter.send(Alert("summary", "run ok", "fine", "R1", "job", ok=True)) == {
        "webhook": True
    }
    assert len(hook.bodies("/w")) == 2
    assert slept == [1.0]
    assert not caplog.records


def test_retry_after_is_honoured_but_capped_by_the_deadline(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    url = hook.reply("/w", Reply(429, {"Retry-After": "1"}))
    alerter = webhook(url, timeout_s=0.75, retries=3)  # one deadline: 4 x 0.75 = 3 s

    started = time.monotonic()
    assert alerter.send(ALERT) == {"webhook": False}
    took = time.monotonic() - started

    arrived = hook.times("/w")
    assert len(arrived) == 3  # at 0, 1 and 2 s; a fourth at 3 s would be past the deadline
    assert all(b - a >= 1.0 for a, b in pairwise(arrived))  # honoured
    assert 2.0 <= took < 2.5  # gave up at once instead of sleeping into the deadline
    assert warnings(caplog) == [
        "failure alert not delivered to webhook: HTTP 429 (no time left to retry)"
    ]


def test_a_retry_after_longer_than_the_deadline_is_not_waited_for(hook: Hook) -> None:
    url = hook.reply("/w", Reply(429, {"Retry-After": "30"}))  # honoured up to 2 s
    slept: list[float] = []
    alerter = webhook(url, timeout_s=0.5, retries=3, sleep=slept.append)  # 2 s in all

    assert alerter.send(ALERT) == {"webhook": False}
    assert len(hook.bodies("/w")) == 1
    assert slept == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413])
def test_a_4xx_other_than_429_is_not_retried(
    hook: Hook, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    slept: list[float] = []
    alerter = webhook(hook.reply("/w", Reply(status)), timeout_s=1.0, retries=3, sleep=slept.append)

    assert alerter.send(ALERT) == {"webhook": False}
    assert len(hook.bodies("/w")) == 1
    assert slept == []
    assert warnings(caplog) == [f"failure alert not delivered to webhook: HTTP {status}"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_is_not_followed(
    hook: Hook, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = hook.reply(f"/w/{TOKEN}", Reply(status, {"Location": hook.url(f"/elsewhere/{TOKEN}")}))
    alerter = webhook(url, timeout_s=1.0, retries=3)

    assert alerter.send(ALERT) == {"webhook": False}
    assert [r.path for r in hook.server.received] == [f"/w/{TOKEN}"]  # no GET nor POST there
    assert warnings(caplog) == [
        f"failure alert not delivered to webhook: HTTP {status} (redirects are not followed)"
    ]
    assert TOKEN not in caplog.text


def test_a_trickling_server_is_bounded_by_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a byte every 0.1 s: each read succeeds well within the 0.3 s read timeout, so only the
    # overall deadline (0.3 s x 2 attempts) can end the delivery
    with trickling(0.1) as url:
        alerter = webhook(url, timeout_s=0.3, retries=1)
        started = time.monotonic()
        results = alerter.send(ALERT)
        took = time.monotonic() - started
        again = alerter.send(ALERT)  # a destination that timed out is skipped for the run

    print(f"trickle: delivery gave up after {took:.3f} s; deadline 0.600 s")
    assert results == again == {"webhook": False}
    assert 0.59 <= took < 0.6 + 0.1  # the deadline, not a moment more
    assert warnings(caplog) == ["failure alert not delivered to webhook: timed out"]
    assert TOKEN not in caplog.text
