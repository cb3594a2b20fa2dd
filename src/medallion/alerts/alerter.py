"""Who gets which alert: the configured destinations, and the hooks a run calls.

:class:`Alerter` sends each alert to every destination at once with one deadline for the lot
(see :mod:`medallion.alerts.delivery`), never raises, and warns once per destination and run,
by destination name: a webhook URL carries its secret token, so no log line, result or repr
shows one.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from medallion.alerts.builders import checks_alert, failure_alert, report_link, summary_alert
from medallion.alerts.delivery import TIMED_OUT, Outcome, deliver_all, post
from medallion.alerts.payloads import CHANNELS, Alert, PayloadFn, is_link
from medallion.runner import RunContext, RunReport, Status, Task, TaskOutcome
from medallion.settings import ALERT_KINDS, AlertKind, Settings

log = logging.getLogger(__name__)


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

    ``send`` takes at most ``timeout_s * (retries + 1)`` whatever the number of destinations
    and however slowly a server answers, and never raises. A failed delivery is logged once
    per destination per run at WARNING, by destination name; a destination that timed out is
    not tried again in the same run.
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
        for name, outcome in results.items():
            if not outcome.delivered:
                self._note_failure(alert, name, outcome.reason)
        return {name: outcome.delivered for name, outcome in results.items()}

    def _deliver_all(self, alert: Alert) -> dict[str, Outcome]:
        """Every destination at once, with one deadline for the lot."""
        deadline = time.monotonic() + self.timeout_s * (self.retries + 1)
        jobs = {d.name: functools.partial(self._deliver, d, alert) for d in self.destinations}
        return deliver_all(jobs, deadline)

    def _deliver(self, dest: Destination, alert: Alert, deadline: float) -> Outcome:
        with self._lock:
            stalled = (alert.run_id, dest.name) in self._stalled
        if stalled:
            return Outcome(False, "skipped: timed out earlier in this run")
        try:
            body = json.dumps(dest.payload(alert)).encode()
        except Exception as exc:
            return Outcome(False, f"cannot build the payload ({type(exc).__name__})")
        secret = dest.url.get_secret_value()
        return post(
            secret,
            body,
            deadline,
            timeout_s=self.timeout_s,
            retries=self.retries,
            sleep=self._sleep,
        )

    def _note_failure(self, alert: Alert, name: str, reason: str) -> None:
        key = (alert.run_id, name)
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
            if reason == TIMED_OUT:
                self._stalled.add(key)
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "%s alert not delivered to %s: %s", alert.kind, name, reason)


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
