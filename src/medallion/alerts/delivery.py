"""Delivering a JSON body to webhooks: httpx for HTTP, tenacity for retries, one deadline.

A delivery never raises, and its caller never waits past the deadline. httpx's timeouts bound
each network operation, not the request: a server that trickles its answer a byte at a time
completes read after read and would hold a request for as long as it likes. So each delivery
runs in a daemon thread and :func:`deliver_all` stops waiting at the deadline, abandoning a
thread still stuck on such a server (a daemon thread never holds the process at exit, where a
thread pool's workers would be joined).

Outcomes name what went wrong by HTTP status or exception *type* only: a webhook URL carries
its secret token, and the text of an exception may embed the URL.

httpx is imported by the functions that send, on the first alert: importing it costs 0.1 s,
which every command would otherwise pay at start, alerts configured or not.
"""

from __future__ import annotations

import functools
import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from medallion import __version__

if TYPE_CHECKING:
    import httpx

TIMED_OUT: Final = "timed out"
RETRY_BACKOFF_S: Final = 0.5  # the wait on a 429 without a usable Retry-After
MAX_RETRY_AFTER_S: Final = 2.0  # longest Retry-After honoured on a 429
BACKOFF_S: Final = 0.25  # first wait after a network error or a 5xx; doubles, plus jitter
MAX_BACKOFF_S: Final = 2.0
MIN_ATTEMPT_S: Final = 0.01  # no attempt starts with less time than this before the deadline
REPORT_S: Final = 0.05  # a delivery ends its attempts this long before the deadline, to report

HEADERS: Final = {
    "Content-Type": "application/json",
    "User-Agent": f"medallion/{__version__} (alerts)",  # Discord rejects anonymous clients
}


@dataclass(frozen=True)
class Outcome:
    """How a delivery, or one attempt of it, went."""

    delivered: bool
    reason: str  # an HTTP status or an exception type: never the URL, nor exception text
    retry: bool = False  # worth another attempt: a network error, a 429 or a 5xx
    wait_s: float | None = None  # the wait a Retry-After asks for (429, 503)


def retry_after(value: str | None) -> float:
    """Seconds to wait as a ``Retry-After`` says, at most ``MAX_RETRY_AFTER_S``."""
    try:
        seconds = float(value) if value is not None else RETRY_BACKOFF_S
    except ValueError:  # an HTTP date: not worth parsing for a two-second cap
        seconds = RETRY_BACKOFF_S
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 0.0


def from_status(code: int, retry_after_header: str | None = None) -> Outcome:
    """The outcome of an HTTP answer: 2xx delivered; 429 and 5xx worth a retry, after the
    wait a Retry-After asks for (a 429 without one waits ``RETRY_BACKOFF_S``, a 5xx backs
    off); a redirect and any other 4xx are not retried. A redirect is not followed: it would
    send the alert somewhere nobody configured, or turn the POST into a bodiless GET."""
    if 200 <= code < 300:
        return Outcome(True, f"HTTP {code}")
    if 300 <= code < 400:
        return Outcome(False, f"HTTP {code} (redirects are not followed)")
    if code == 429 or (code >= 500 and retry_after_header is not None):
        return Outcome(False, f"HTTP {code}", retry=True, wait_s=retry_after(retry_after_header))
    return Outcome(False, f"HTTP {code}", retry=code >= 500)


def from_error(exc: Exception) -> Outcome:
    """The outcome of an exception raised by a request, named by type only."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):  # it may have arrived: a retry would double it
        return Outcome(False, TIMED_OUT)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return Outcome(False, f"cannot send ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):  # refused, reset, DNS, proxy, a broken answer
        return Outcome(False, f"connection failed ({root_cause(exc)})", retry=True)
    return Outcome(False, f"unexpected {type(exc).__name__}")


def root_cause(exc: BaseException) -> str:
    """The type name of the innermost ``OSError`` behind ``exc`` (``ConnectionRefusedError``
    rather than httpx's ``ConnectError``), else of ``exc`` itself."""
    name, seen = type(exc).__name__, {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError):
            name = type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return name


def post_once(client: httpx.Client, url: str, body: bytes, timeout_s: float) -> Outcome:
    """POST ``body`` once; only the status and headers of the answer are read."""
    try:
        with client.stream("POST", url, content=body, timeout=timeout_s) as response:
            return from_status(response.status_code, response.headers.get("Retry-After"))
    except Exception as exc:  # an alert must never raise
        return from_error(exc)


class _WaitAsked(wait_base):
    """The server's Retry-After, else exponential back-off with jitter; never past the deadline.

    The server's wait is honoured or, when it leaves no time for an attempt, not waited at all
    (see :class:`_StopAt`); our own back-off takes at most half the time left, so that the
    retry it delays still has the other half.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.backoff = wait_exponential_jitter(
            multiplier=BACKOFF_S, max=MAX_BACKOFF_S, jitter=BACKOFF_S
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        left = self.deadline - time.monotonic()
        asked = _last(retry_state).wait_s
        seconds = min(self.backoff(retry_state), left / 2) if asked is None else asked
        return max(0.0, min(seconds, left))


class _StopAt(stop_base):
    """Stop when the coming wait leaves no time for another attempt before the deadline
    (tenacity computes the wait before it asks whether to stop)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep > self.deadline - MIN_ATTEMPT_S


def _last(retry_state: RetryCallState) -> Outcome:
    result = retry_state.outcome.result() if retry_state.outcome else None
    return result if isinstance(result, Outcome) else Outcome(False, "not sent")


def _gave_up(attempts: int, retry_state: RetryCallState) -> Outcome:
    """The last outcome, saying so when the deadline rather than the retries ended it."""
    last = _last(retry_state)
    if retry_state.attempt_number < attempts:
        return Outcome(False, f"{last.reason} (no time left to retry)")
    return last


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context, loaded once (loading the CA bundle takes tens of ms)."""
    import httpx

    return httpx.create_ssl_context()


def post(
    url: str,
    body: bytes,
    deadline: float,
    *,
    timeout_s: float,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """POST ``body`` as JSON to ``url`` until delivered: network errors, 429 and 5xx are
    retried up to ``retries`` times, never past ``deadline`` (a ``time.monotonic()`` value);
    each attempt's timeouts are ``timeout_s`` or the time left, whichever is shorter."""
    import httpx

    attempts = retries + 1
    retrying = Retrying(
        retry=retry_if_result(lambda outcome: bool(outcome.retry)),
        wait=_WaitAsked(deadline),
        stop=stop_after_attempt(attempts) | _StopAt(deadline),
        sleep=sleep,
        retry_error_callback=functools.partial(_gave_up, attempts),
    )

    def attempt(client: httpx.Client) -> Outcome:
        left = deadline - time.monotonic()
        if left < MIN_ATTEMPT_S:
            return Outcome(False, TIMED_OUT)
        return post_once(client, url, body, min(timeout_s, left))

    try:  # proxies come from the environment as it is now
        with httpx.Client(headers=HEADERS, follow_redirects=False, verify=_tls()) as client:
            return retrying(attempt, client)
    except Exception as exc:  # an alert must never raise
        return Outcome(False, f"unexpected {type(exc).__name__}")


def deliver_all(
    jobs: Mapping[str, Callable[[float], Outcome]], deadline: float
) -> dict[str, Outcome]:
    """Run every job at once, each in a daemon thread, and wait for them until ``deadline``
    (a ``time.monotonic()`` value), not a moment more. Each job is handed ``REPORT_S`` less,
    the time by which it must have ended its attempts so that its outcome is in by the
    deadline; a job still running at the deadline is abandoned and counts as timed out."""
    futures: dict[str, Future[Outcome]] = {}
    for name, job in jobs.items():
        future: Future[Outcome] = Future()
        futures[name] = future
        threading.Thread(
            target=_run_into,
            args=(future, functools.partial(job, deadline - REPORT_S)),
            name=f"medallion-alert-{name}",
            daemon=True,
        ).start()
    wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
    return {name: _result(future) for name, future in futures.items()}


def _run_into(future: Future[Outcome], job: Callable[[], Outcome]) -> None:
    """Run ``job`` and put its outcome into ``future`` (the body of a delivery thread)."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(job())
    except BaseException as exc:  # an alert must never raise into the run
        future.set_exception(exc)


def _result(future: Future[Outcome]) -> Outcome:
    if not future.done():
        return Outcome(False, TIMED_OUT)
    if future.cancelled() or future.exception() is not None:
        return Outcome(False, "not sent")
    return future.result()
