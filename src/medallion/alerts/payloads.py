"""What an alert says and how each chat shows it: Discord, Slack and a generic JSON webhook.

Everything here is pure: each payload is a function of an :class:`Alert` alone, cut to the
limits the receiving service documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from medallion.settings import AlertKind

Payload = dict[str, Any]
PayloadFn = Callable[["Alert"], Payload]

RED: Final = 0xE74C3C
ORANGE: Final = 0xF39C12
GREEN: Final = 0x2ECC71

ERROR_CHARS: Final = 1000  # error text shown in Discord and Slack
GENERIC_ERROR_CHARS: Final = 4000

# https://discord.com/developers/docs/resources/message#embed-object-embed-limits
DISCORD_LIMITS: Final = {
    "title": 256,
    "description": 4096,
    "field_name": 256,
    "field_value": 1024,
    "fields": 25,
    "total": 6000,
}
# https://api.slack.com/reference/block-kit/blocks
SLACK_LIMITS: Final = {"header": 150, "text": 3000, "field": 2000, "fields": 10, "fallback": 3000}


@dataclass(frozen=True)
class Alert:
    """One event worth telling a person about; every payload is built from it alone."""

    kind: AlertKind
    title: str
    text: str
    run_id: str
    job: str
    task: str | None = None
    table: str | None = None
    layer: str | None = None
    error: str | None = None
    checks: tuple[str, ...] = ()  # failing check names
    report_url: str | None = None
    ok: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def colour(alert: Alert) -> int:
    """Red for a failure, orange for a warning, green when all is well."""
    if alert.kind in ("failure", "check_failed") or not alert.ok:
        return RED
    if alert.kind == "check_warned" or alert.counts.get("checks_warned"):
        return ORANGE
    return GREEN


def _table_label(alert: Alert) -> str | None:
    if alert.table and alert.layer:
        return f"{alert.layer}.{alert.table}"
    return alert.table


def counts_text(counts: Mapping[str, int]) -> str:
    """Counts as one line: ``3 succeeded · 1 checks failed``."""
    return " · ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


def _counts_label(alert: Alert) -> str:
    return counts_text(alert.counts)


def _error_label(alert: Alert) -> str | None:
    return cut(alert.error, ERROR_CHARS) if alert.error else None


# Fields shared by Discord and Slack: (name, value of the alert, shown inline on Discord).
FIELDS: Final[tuple[tuple[str, Callable[[Alert], str | None], bool], ...]] = (
    ("Run", lambda a: a.run_id, True),
    ("Task", lambda a: a.task, True),
    ("Table", _table_label, True),
    ("Tasks", _counts_label, False),
    ("Error", _error_label, False),
    ("Checks", lambda a: ", ".join(a.checks), False),
)


def _fields(alert: Alert) -> list[tuple[str, str, bool]]:
    """The non-empty fields of ``alert`` (Discord rejects empty field values)."""
    found = [(name, get(alert), inline) for name, get, inline in FIELDS]
    return [(name, value, inline) for name, value, inline in found if value]


def is_link(url: str | None) -> bool:
    """Whether ``url`` is an http(s) link (a chat can link it; a file path it cannot)."""
    return bool(url) and str(url).lower().startswith(("http://", "https://"))


def discord_payload(alert: Alert) -> Payload:
    """A Discord webhook message with one embed, within Discord's embed limits."""
    lim = DISCORD_LIMITS
    fields = [
        {"name": name, "value": cut(value, lim["field_value"]), "inline": inline}
        for name, value, inline in _fields(alert)
    ]
    if alert.report_url and not is_link(alert.report_url):
        fields.append({"name": "Report", "value": cut(alert.report_url, lim["field_value"])})
    embed: Payload = {
        "title": cut(alert.title, lim["title"]),
        "color": colour(alert),
        "fields": fields[: lim["fields"]],
        "timestamp": alert.at.isoformat(),
    }
    if is_link(alert.report_url):
        embed["url"] = alert.report_url
    used = len(embed["title"]) + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    room = min(lim["description"], lim["total"] - used)
    if alert.text and room > 0:
        embed["description"] = cut(alert.text, room)
    return {"username": "medallion", "embeds": [embed]}


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_MARK: Final = {
    RED: ":red_circle:",
    ORANGE: ":large_orange_circle:",
    GREEN: ":white_check_mark:",
}


def slack_payload(alert: Alert) -> Payload:
    """A Slack message: header, a section with the text and fields, a context with the report."""
    lim = SLACK_LIMITS
    header = f"{_SLACK_MARK[colour(alert)]} {alert.title}"
    section: Payload = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": cut(_mrkdwn(alert.text or alert.title), lim["text"])},
    }
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{name}*\n{_mrkdwn(value)}", lim["field"])}
        for name, value, _ in _fields(alert)
    ]
    if fields:
        section["fields"] = fields[: lim["fields"]]
    blocks: list[Payload] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(header, lim["header"])}},
        section,
    ]
    if alert.report_url:
        blocks.append({"type": "context", "elements": [_slack_report(alert.report_url)]})
    fallback = f"{alert.title}: {alert.text}" if alert.text else alert.title
    return {"text": cut(fallback, lim["fallback"]), "blocks": blocks}


def _slack_report(url: str) -> Payload:
    if is_link(url):
        return {"type": "mrkdwn", "text": cut(f"<{url}|Run report>", SLACK_LIMITS["text"])}
    return {"type": "mrkdwn", "text": cut(f"Report: {_mrkdwn(url)}", SLACK_LIMITS["text"])}


def generic_payload(alert: Alert) -> Payload:
    """A flat JSON event for any other receiver."""
    return {
        "event": alert.kind,
        "run_id": alert.run_id,
        "job": alert.job,
        "task": alert.task,
        "table": alert.table,
        "layer": alert.layer,
        "ok": alert.ok,
        "error": cut(alert.error, GENERIC_ERROR_CHARS) if alert.error else None,
        "checks": list(alert.checks),
        "counts": dict(alert.counts),
        "report_url": alert.report_url,
        "title": alert.title,
        "text": alert.text,
        "timestamp": alert.at.isoformat(),
    }


@dataclass(frozen=True)
class Channel:
    """A kind of destination: its name, the setting holding its URL, its payload."""

    name: str
    setting: str
    payload: PayloadFn


CHANNELS: Final = (
    Channel("discord", "discord_webhook_url", discord_payload),
    Channel("slack", "slack_webhook_url", slack_payload),
    Channel("webhook", "webhook_url", generic_payload),
)
