"""What delivery makes of an answer or an error, and the one deadline over every delivery.

No server here: outcomes are pure functions of a status or an exception, and the deadline is
exercised with jobs that hang in a thread. Real HTTP is in tests/integration/alerts.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import httpx
import pytest

from medallion.alerts import TIMED_OUT, Outcome, post, retry_after
from medallion.alerts.delivery import REPORT_S, deliver_all, from_error, from_status

URL = "https://hooks.example/api/webhooks/1/s3cr3t-T0KEN-xyz"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1.5", 1.5), ("0", 0.0), ("30", 2.0), ("-3", 0.0), ("nan", 0.0), ("soon", 0.5), (None, 0.5)],
)
def test_retry_after_is_capped(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


@pytest.mark.parametrize(
    ("status", "delivered", "retry"),
    [
        (200, True, False),
        (204, True, False),
        (301, False, False),
        (302, False, False),
        (307, False, False),
        (308, False, False),
        (400, False, False),
        (401, False, False),
        (403, False, False),
        (404, False, False),
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
    ],
)
def test_only_429_and_5xx_are_retried(status: int, delivered: bool, retry: bool) -> None:
    outcome = from_status(status)
    assert (outcome.delivered, outcome.retry) == (delivered, retry)
    assert outcome.reason.startswith(f"HTTP {status}")


def test_a_redirect_says_it_was_not_followed_and_429_keeps_its_wait() -> None:
    assert from_status(302).reason == "HTTP 302 (redirects are not followed)"
    assert from_status(429, "1.5") == Outcome(False, "HTTP 429", retry=True, wait_s=1.5)
    assert from_status(503).wait_s is None  # back-off, not a wait the server asked for
    assert from_status(503, "1") == Outcome(False, "HTTP 503", retry=True, wait_s=1.0)
    assert from_status(404, "1") == Outcome(False, "HTTP 404")  # not retried, whatever it says


def _chain(*excs: Exception) -> Exception:
    """The first of ``excs`` raised from the next, itself from the next (as httpx chains)."""
    for outer, inner in pairwise(excs):
        outer.__cause__ = inner
    return excs[0]


def test_errors_are_named_by_type_never_by_text() -> None:
    refused = ConnectionRefusedError(111, f"Connection refused: {URL}")
    chained = _chain(httpx.ConnectError(f"cannot reach {URL}"), RuntimeError(URL), refused)
    assert from_error(chained) == Outcome(
        False, "connection failed (ConnectionRefusedError)", retry=True
    )
    assert from_error(httpx.RemoteProtocolError(URL)) == Outcome(
        False, "connection failed (RemoteProtocolError)", retry=True
    )
    assert from_error(httpx.ReadTimeout(URL)) == Outcome(False, TIMED_OUT)  # not retried
    assert from_error(httpx.ConnectTimeout(URL)) == Outcome(False, TIMED_OUT)
    assert from_error(httpx.InvalidURL(URL)) == Outcome(False, "cannot send (InvalidURL)")
    assert from_error(ValueError(URL)) == Outcome(False, "unexpected ValueError")


def test_a_url_httpx_cannot_send_to_fails_at_once_without_retries() -> None:
    slept: list[float] = []
    started = time.monotonic()
    outcome = post(
        URL.replace("https", "ftp"), b"{}", started + 5, timeout_s=1, retries=3, sleep=slept.append
    )
    assert outcome == Outcome(False, "cannot send (UnsupportedProtocol)")
    assert slept == []
    assert post(URL, b"{}", started - 1, timeout_s=1, retries=3) == Outcome(False, TIMED_OUT)


def test_every_delivery_shares_one_deadline_and_a_stuck_one_is_abandoned() -> None:
    release = threading.Event()
    given: list[float] = []

    def stuck(by: float) -> Outcome:  # as a thread reading a trickle would be
        given.append(by)
        release.wait(30)
        return Outcome(True, "HTTP 204")

    def broken(by: float) -> Outcome:
        raise RuntimeError(URL)

    def fine(by: float) -> Outcome:
        given.append(by)
        return Outcome(True, "HTTP 204")

    started = time.monotonic()
    deadline = started + 0.3
    try:
        results = deliver_all({"stuck": stuck, "broken": broken, "fine": fine}, deadline)
        took = time.monotonic() - started
    finally:
        release.set()
    assert results == {
        "stuck": Outcome(False, TIMED_OUT),
        "broken": Outcome(False, "not sent"),
        "fine": Outcome(True, "HTTP 204"),
    }
    assert given == [deadline - REPORT_S] * 2  # time to report before the caller stops waiting
    assert 0.29 <= took < 0.3 + 0.1  # the deadline, not a moment more
    stuck_threads = [t for t in threading.enumerate() if t.name == "medallion-alert-stuck"]
    assert all(t.daemon for t in stuck_threads)  # never holds the interpreter at exit
