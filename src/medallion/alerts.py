"""Alerts to Discord, Slack and a generic JSON webhook: on failure, on checks, per run.

Payloads are pure functions of an :class:`Alert`. Sending uses the standard library, is
bounded in time and never raises: a webhook that is down or slow never fails or stalls a run.
Webhook URLs carry their secret token, so no log line, result or repr ever shows one.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from typing import Any, Final

from pydantic import SecretStr

from medallion import __version__
from medallion.runner import RunContext, RunReport, Status, Task, TaskOutcome
from medallion.settings import ALERT_KINDS, AlertKind, Settings

log = logging.getLogger(__name__)

Payload = dict[str, Any]
PayloadFn = Callable[["Alert"], Payload]

RED: Final = 0xE74C3C
ORANGE: Final = 0xF39C12
GREEN: Final = 0x2ECC71

ERROR_CHARS: Final = 1000  # error text shown in Discord and Slack
GENERIC_ERROR_CHARS: Final = 4000
RETRY_BACKOFF_S: Final = 0.5  # before retrying a connection error or a 5xx
MAX_RETRY_AFTER_S: Final = 2.0  # longest Retry-After honoured on a 429
_GRACE_S: Final = 0.5  # slack on the overall deadline before giving up on a worker
TIMED_OUT: Final = "timed out"

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

_HEADERS: Final = {
    "Content-Type": "application/json",
    "User-Agent": f"medallion/{__version__} (alerts)",  # Discord rejects urllib's default
}


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


# ---------------------------------------------------------------- payloads (pure)


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


def _counts_text(counts: Mapping[str, int]) -> str:
    return " · ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


def _counts_label(alert: Alert) -> str:
    return _counts_text(alert.counts)


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


# ---------------------------------------------------------------- building alerts


def report_link(settings: Settings, run_id: str, given: str | None = None) -> str | None:
    """The report link for a run: ``given``, else ``settings.report_url`` with ``{run_id}``."""
    url = given or settings.report_url.replace("{run_id}", run_id)
    return url or None


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp or time.time(), UTC)


def failure_alert(ctx: RunContext, outcome: TaskOutcome, report_url: str | None = None) -> Alert:
    """The alert for a task whose last attempt failed."""
    task: Task = outcome.task
    tries = f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
    return Alert(
        kind="failure",
        title=f"{ctx.job}: task {task.name} failed",
        text=f"Task {task.name} ({task.layer} {task.table}) failed after {tries}.",
        run_id=ctx.run_id,
        job=ctx.job,
        task=task.name,
        table=task.table,
        layer=task.layer,
        error=outcome.error or "unknown error",
        report_url=report_url,
        at=_at(outcome.ended_at),
    )


def checks_alert(
    kind: AlertKind, ctx: RunContext, names: Sequence[str], at: datetime, report_url: str | None
) -> Alert:
    """The alert for checks that failed (``check_failed``) or warned (``check_warned``)."""
    verb = "failed" if kind == "check_failed" else "warned"
    return Alert(
        kind=kind,
        title=f"{ctx.job}: {len(names)} data-quality check(s) {verb}",
        text=f"Checks that {verb}: {', '.join(names)}.",
        run_id=ctx.run_id,
        job=ctx.job,
        checks=tuple(names),
        report_url=report_url,
        ok=kind == "check_warned",
        at=at,
    )


def summary_alert(
    ctx: RunContext,
    report: RunReport,
    checks_failed: Sequence[str],
    checks_warned: Sequence[str],
    report_url: str | None = None,
) -> Alert:
    """The end-of-run summary: task counts, failed tasks with their errors, check counts."""
    counts = {
        "succeeded": len(report.by_status(Status.SUCCESS)),
        "failed": len(report.by_status(Status.FAILED)),
        "skipped": len(report.by_status(Status.SKIPPED)),
        "checks_failed": len(checks_failed),
        "checks_warned": len(checks_warned),
    }
    ok = report.ok and not checks_failed
    state = "failed" if not ok else "succeeded with warnings" if checks_warned else "succeeded"
    lines = [f"Run {ctx.run_id} {state}: {_counts_text(counts)}."]
    lines += [
        f"• {o.task.name}: {cut(o.error or '', 200)}" for o in report.by_status(Status.FAILED)
    ]
    ended = max((o.ended_at for o in report.outcomes), default=0.0)
    return Alert(
        kind="summary",
        title=f"{ctx.job}: run {state}",
        text="\n".join(lines),
        run_id=ctx.run_id,
        job=ctx.job,
        checks=tuple(checks_failed),
        report_url=report_url,
        ok=ok,
        counts=counts,
        at=_at(ended),
    )


# ---------------------------------------------------------------- sending (I/O)


@dataclass(frozen=True)
class _Attempt:
    delivered: bool
    reason: str  # never the URL nor exception text (urllib's may embed the URL)
    retry_in: float | None = None  # seconds before a retry; None: do not retry


def retry_after(value: str | None) -> float:
    """Seconds to wait as a 429's ``Retry-After`` says, at most ``MAX_RETRY_AFTER_S``."""
    try:
        seconds = float(value) if value is not None else RETRY_BACKOFF_S
    except ValueError:  # an HTTP date: not worth parsing for a two-second cap
        seconds = RETRY_BACKOFF_S
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 0.0


def _http_failure(code: int, retry_after_header: str | None) -> _Attempt:
    if code == 429:
        return _Attempt(False, "HTTP 429", retry_after(retry_after_header))
    return _Attempt(False, f"HTTP {code}", RETRY_BACKOFF_S if code >= 500 else None)


def _network_failure(exc: BaseException) -> _Attempt:
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, TimeoutError):  # it may have arrived: a retry would double the stall
        return _Attempt(False, TIMED_OUT)
    name = type(cause).__name__ if isinstance(cause, BaseException) else type(exc).__name__
    return _Attempt(False, f"connection failed ({name})", RETRY_BACKOFF_S)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would turn the POST into a bodiless GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_once(url: str, body: bytes, timeout: float) -> _Attempt:
    """POST ``body`` as JSON once; the outcome says whether and when to retry."""
    request = urllib.request.Request(url, data=body, headers=_HEADERS, method="POST")
    opener = urllib.request.build_opener(_NoRedirect())  # proxies from the environment, now
    try:
        with opener.open(request, timeout=timeout) as response:
            return _Attempt(True, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        exc.close()
        return _http_failure(exc.code, exc.headers.get("Retry-After"))
    except (OSError, HTTPException) as exc:  # URLError, TimeoutError, resets, bad status
        return _network_failure(exc)
    except Exception as exc:  # an alert must never raise
        return _Attempt(False, f"unexpected {type(exc).__name__}")


@dataclass(frozen=True, repr=False)
class Destination:
    """A configured webhook: the URL stays a ``SecretStr`` until the request is made."""

    name: str
    url: SecretStr
    payload: PayloadFn

    def __repr__(self) -> str:
        return f"Destination({self.name})"


class Alerter:
    """Sends alerts of the enabled kinds to every configured destination, at once.

    ``send`` takes at most ``timeout_s * (retries + 1)`` (plus a little grace) whatever the
    number of destinations, and never raises. A failed delivery is logged once per destination
    per run at WARNING, by destination name; a destination that timed out is not tried again
    in the same run.
    """

    def __init__(
        self,
        destinations: Sequence[Destination],
        kinds: Iterable[AlertKind] = ALERT_KINDS,
        *,
        timeout_s: float = 5.0,
        retries: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.destinations = tuple(destinations)
        self.kinds = frozenset(kinds)
        self.timeout_s = timeout_s
        self.retries = retries
        self._sleep = sleep
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()  # (run_id, destination)
        self._stalled: set[tuple[str, str]] = set()  # (run_id, destination) that timed out
        self._once: set[tuple[str, str]] = set()  # (run_id, subject) already alerted

    @classmethod
    def from_settings(cls, settings: Settings) -> Alerter:
        """The destinations whose URL setting is set, and the kinds ``alert_on`` enables."""
        found = []
        for channel in CHANNELS:
            secret: SecretStr | None = getattr(settings, channel.setting)
            if not secret or not secret.get_secret_value():
                continue
            if not is_link(secret.get_secret_value()):
                log.warning("setting %s is not an http(s) URL; no alerts go there", channel.setting)
                continue
            found.append(Destination(channel.name, secret, channel.payload))
        return cls(
            found,
            settings.alert_on,
            timeout_s=settings.alert_timeout_s,
            retries=settings.alert_retries,
        )

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self.destinations)
        return f"Alerter(destinations=[{names}], kinds={sorted(self.kinds)})"

    def enabled(self, kind: AlertKind) -> bool:
        """Whether an alert of ``kind`` would go anywhere."""
        return kind in self.kinds and bool(self.destinations)

    def once(self, run_id: str, subject: str) -> bool:
        """True the first time ``subject`` is claimed in ``run_id`` (no duplicate alerts)."""
        with self._lock:
            first = (run_id, subject) not in self._once
            self._once.add((run_id, subject))
        return first

    def send(self, alert: Alert) -> dict[str, bool]:
        """Deliver ``alert``; destination name → delivered. Empty when the kind is off."""
        if not self.enabled(alert.kind):
            return {}
        results = self._deliver_all(alert)
        for name, attempt in results.items():
            if not attempt.delivered:
                self._note_failure(alert, name, attempt.reason)
        return {name: attempt.delivered for name, attempt in results.items()}

    def _deliver_all(self, alert: Alert) -> dict[str, _Attempt]:
        """Every destination at once, with one deadline for the lot. Each delivery runs in a
        daemon thread: one still stuck on a server that trickles its answer is abandoned at
        the deadline and never holds the run, nor the process at exit (a thread pool's
        workers would be joined when the interpreter exits)."""
        budget = self.timeout_s * (self.retries + 1)
        deadline = time.monotonic() + budget
        futures: dict[str, Future[_Attempt]] = {}
        for dest in self.destinations:
            future: Future[_Attempt] = Future()
            futures[dest.name] = future
            threading.Thread(
                target=_run_into,
                args=(future, self._deliver, dest, alert, deadline),
                name=f"medallion-alert-{dest.name}",
                daemon=True,
            ).start()
        wait(futures.values(), timeout=budget + _GRACE_S)
        return {name: _result(future) for name, future in futures.items()}

    def _deliver(self, dest: Destination, alert: Alert, deadline: float) -> _Attempt:
        if (alert.run_id, dest.name) in self._stalled:
            return _Attempt(False, "skipped: timed out earlier in this run")
        try:
            body = json.dumps(dest.payload(alert)).encode()
        except Exception as exc:
            return _Attempt(False, f"cannot build the payload ({type(exc).__name__})")
        return self._post(dest.url.get_secret_value(), body, deadline)

    def _post(self, url: str, body: bytes, deadline: float) -> _Attempt:
        attempt = _Attempt(False, TIMED_OUT)
        for n in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0.01:
                break
            attempt = post_once(url, body, min(self.timeout_s, left))
            if attempt.delivered or attempt.retry_in is None or n == self.retries:
                break
            self._sleep(min(attempt.retry_in, max(0.0, deadline - time.monotonic())))
        return attempt

    def _note_failure(self, alert: Alert, name: str, reason: str) -> None:
        key = (alert.run_id, name)
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
            if reason == TIMED_OUT:
                self._stalled.add(key)
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "%s alert not delivered to %s: %s", alert.kind, name, reason)


def _run_into(future: Future[_Attempt], fn: Callable[..., _Attempt], *args: Any) -> None:
    """Run ``fn`` and put its outcome into ``future`` (the body of a delivery thread)."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # an alert must never raise into the run
        future.set_exception(exc)


def _result(future: Future[_Attempt]) -> _Attempt:
    if not future.done():
        return _Attempt(False, TIMED_OUT)
    if future.cancelled() or future.exception() is not None:
        return _Attempt(False, "not sent")
    return future.result()


# ---------------------------------------------------------------- run hooks


def alert_failure(
    alerter: Alerter, ctx: RunContext, outcome: TaskOutcome, report_url: str | None = None
) -> Alert | None:
    """Send the failure alert of ``outcome`` unless this run already did; the alert if sent."""
    if not alerter.enabled("failure") or not alerter.once(ctx.run_id, outcome.task.name):
        return None
    alert = failure_alert(ctx, outcome, report_link(ctx.settings, ctx.run_id, report_url))
    return alert if any(alerter.send(alert).values()) else None


class AlertListener:
    """A runner listener that alerts as soon as a task's last attempt has failed (a failed
    attempt that the runner will retry is not alerted)."""

    def __init__(self, alerter: Alerter) -> None:
        self.alerter = alerter

    def task_started(self, ctx: RunContext, task: Task, attempt: int) -> None:
        """Nothing to say when a task starts."""

    def task_finished(self, ctx: RunContext, outcome: TaskOutcome) -> None:
        if outcome.status is Status.FAILED and outcome.is_final:
            alert_failure(self.alerter, ctx, outcome)


def alert_run_summary(
    alerter: Alerter,
    ctx: RunContext,
    report: RunReport,
    checks_failed: Sequence[str] = (),
    checks_warned: Sequence[str] = (),
    *,
    report_url: str | None = None,
) -> list[Alert]:
    """End-of-run alerts: failures not yet alerted, failed and warned checks, the summary.

    Returns the alerts delivered to at least one destination.
    """
    link = report_link(ctx.settings, ctx.run_id, report_url)
    failures = [alert_failure(alerter, ctx, o, link) for o in report.by_status(Status.FAILED)]
    summary = summary_alert(ctx, report, checks_failed, checks_warned, link)
    lists: tuple[tuple[AlertKind, Sequence[str]], ...] = (
        ("check_failed", checks_failed),
        ("check_warned", checks_warned),
    )
    checks = [checks_alert(kind, ctx, names, summary.at, link) for kind, names in lists if names]
    sent = [a for a in (*checks, summary) if any(alerter.send(a).values())]
    return [a for a in failures if a is not None] + sent
