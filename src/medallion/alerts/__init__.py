"""Alerts to Discord, Slack and a generic JSON webhook: on failure, on checks, per run.

- :mod:`~medallion.alerts.payloads`: the :class:`Alert` and each service's payload (pure);
- :mod:`~medallion.alerts.builders`: the alerts a run sends, built from its outcomes;
- :mod:`~medallion.alerts.delivery`: HTTP (httpx), retries (tenacity), one deadline;
- :mod:`~medallion.alerts.alerter`: the destinations and the hooks a run calls.

Sending is bounded in time and never raises: a webhook that is down or slow never fails or
stalls a run. Webhook URLs carry their secret token, so no log line, result or repr shows one.
"""

from __future__ import annotations

from medallion.alerts.alerter import (
    Alerter,
    AlertListener,
    Destination,
    alert_failure,
    alert_run_summary,
)
from medallion.alerts.builders import checks_alert, failure_alert, report_link, summary_alert
from medallion.alerts.delivery import (
    MAX_RETRY_AFTER_S,
    RETRY_BACKOFF_S,
    TIMED_OUT,
    Outcome,
    post,
    post_once,
    retry_after,
)
from medallion.alerts.payloads import (
    CHANNELS,
    DISCORD_LIMITS,
    ERROR_CHARS,
    FIELDS,
    GENERIC_ERROR_CHARS,
    GREEN,
    ORANGE,
    RED,
    SLACK_LIMITS,
    Alert,
    Channel,
    Payload,
    PayloadFn,
    colour,
    cut,
    discord_payload,
    generic_payload,
    is_link,
    slack_payload,
)

__all__ = [
    "CHANNELS",
    "DISCORD_LIMITS",
    "ERROR_CHARS",
    "FIELDS",
    "GENERIC_ERROR_CHARS",
    "GREEN",
    "MAX_RETRY_AFTER_S",
    "ORANGE",
    "RED",
    "RETRY_BACKOFF_S",
    "SLACK_LIMITS",
    "TIMED_OUT",
    "Alert",
    "AlertListener",
    "Alerter",
    "Channel",
    "Destination",
    "Outcome",
    "Payload",
    "PayloadFn",
    "alert_failure",
    "alert_run_summary",
    "checks_alert",
    "colour",
    "cut",
    "discord_payload",
    "failure_alert",
    "generic_payload",
    "is_link",
    "post",
    "post_once",
    "report_link",
    "retry_after",
    "slack_payload",
    "summary_alert",
]
