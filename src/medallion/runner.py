"""A small task graph executor: dependencies, a thread pool, retries, skip-on-failure.

Tasks share nothing in memory: each one is a function of the run context, so any single task
can also be run on its own in a fresh process (as an Airflow task does).
"""

from __future__ import annotations

import graphlib
import heapq
import logging
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from medallion.catalog import SourceTable
from medallion.errors import EngineMemoryError, MedallionError, TaskError, TransientError
from medallion.settings import Settings

log = logging.getLogger(__name__)


PIPELINE_JOB = "medallion_pipeline"  # `medallion run`
STREAM_JOB = "medallion_stream"  # `medallion stream consume`: one attempt per micro-batch
EXPORT_JOB = "medallion_export"  # `medallion export`: one attempt per table
MAINTAIN_JOB = "medallion_maintain"  # `medallion maintain`: one attempt per table
NOT_STARTED = "not started: the run was stopped"  # the reason of tasks a signal kept from starting
TRANSIENT: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)


class Status(StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    ABANDONED = "ABANDONED"  # in the audit log only: the attempt's process died under it


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares: ids, logical time and settings (never data)."""

    run_id: str
    settings: Settings
    job: str = PIPELINE_JOB
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    full_refresh: bool = False
    full_checks: bool = False  # evaluate every check in full (``medallion check --full``)
    # who started the run when not `medallion run`, e.g. {"airflow_dag_id": ...,
    # "airflow_run_id": ...}; every audit row of the run keeps it (metrics key "origin")
    origin: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskResult:
    """What a task reports back: the audit row's columns, and ``metrics``, the task's own
    details (JSON in the audit row)."""

    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    delta_version: int | None = None  # the table's version after the task
    watermark_before: str | None = None  # Bronze: the source watermark read from
    watermark_after: str | None = None  # Bronze: the watermark recorded with the commit


TaskFn = Callable[[RunContext], TaskResult]


@dataclass(frozen=True)
class Task:
    name: str
    layer: str
    table: str
    fn: TaskFn
    upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layer:
    """A layer: its name and the tasks it runs for a set of source tables. Each layer module
    exports one (``LAYER``); the pipeline lists them."""

    name: str
    make_tasks: Callable[[Sequence[SourceTable]], list[Task]]


def per_table(
    make_task: Callable[[SourceTable], Task | None],
) -> Callable[[Sequence[SourceTable]], list[Task]]:
    """A task factory for layers with one task per source table."""

    def make_tasks(tables: Sequence[SourceTable]) -> list[Task]:
        return [t for t in (make_task(table) for table in tables) if t is not None]

    return make_tasks


@dataclass
class TaskOutcome:
    task: Task
    status: Status
    attempts: int = 0
    error: str | None = None
    result: TaskResult | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    will_retry: bool = False  # a failed attempt that the runner is about to retry
    # ran out of the engine's memory, which the tasks beside it share: retried once alone
    needs_alone: bool = False

    @property
    def is_final(self) -> bool:
        """True unless this is a failed attempt that will be retried."""
        return not self.will_retry

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended_at - self.started_at)


@dataclass
class RunReport:
    run_id: str
    outcomes: list[TaskOutcome]
    stopped_by: str | None = None  # the signal that stopped the run before its end

    @property
    def ok(self) -> bool:
        return all(o.status is Status.SUCCESS for o in self.outcomes)

    def by_status(self, status: Status) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.status is status]


class RunListener(Protocol):
    """Hooks the runner calls; the audit store and the console implement them."""

    def task_started(self, ctx: RunContext, task: Task, attempt: int) -> None: ...

    def task_finished(self, ctx: RunContext, outcome: TaskOutcome) -> None: ...


def order_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Topological order, stable (in waves, each in the given order); unknown upstream names
    and cycles are errors."""
    by_name = {t.name: t for t in tasks}
    if len(by_name) != len(tasks):
        raise TaskError("duplicate task names in the graph")
    for task in tasks:
        unknown = [u for u in task.upstream if u not in by_name]
        if unknown:
            raise TaskError(f"task {task.name} depends on unknown task(s): {', '.join(unknown)}")
    graph = _graph(tasks)
    ordered: list[Task] = []
    while graph.is_active():
        ready = _in_order(graph.get_ready(), tasks)
        ordered += [by_name[name] for name in ready]
        graph.done(*ready)
    return ordered


def _graph(tasks: Sequence[Task]) -> graphlib.TopologicalSorter[str]:
    graph = graphlib.TopologicalSorter({t.name: t.upstream for t in tasks})
    try:
        graph.prepare()
    except graphlib.CycleError as exc:
        raise TaskError(f"dependency cycle among: {', '.join(exc.args[1])}") from None
    return graph


def _in_order(names: Iterable[str], tasks: Sequence[Task]) -> list[str]:
    position = {t.name: i for i, t in enumerate(tasks)}
    return sorted(names, key=position.__getitem__)


def run_tasks(
    tasks: Sequence[Task],
    ctx: RunContext,
    listeners: Iterable[RunListener] = (),
    *,
    expected: Mapping[str, float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """Run every task once its upstream tasks succeeded; skip those whose upstream did not.

    Of the tasks ready to start, the one heading the longest chain of work still to do
    starts first (:func:`critical_path`, from ``expected``: each task's seconds last time):
    with two workers, a task nothing waits for (RFM) started before a fact table's build
    delays every table after that fact by its whole duration.

    A task whose query ran out of the engine's memory (which the tasks side by side share)
    runs again once the running tasks have finished, with nothing started beside it.

    SIGINT or SIGTERM stops the run cleanly: running tasks finish (each commits whole or not
    at all), no new task starts, and those never started are recorded as skipped with the
    reason. A second signal stops at once.
    """
    ordered = order_tasks(tasks)
    by_name = {t.name: t for t in ordered}
    rank = critical_path(ordered, expected or {})
    graph = _graph(ordered)
    hooks = list(listeners)
    outcomes: dict[str, TaskOutcome] = {}
    running: dict[Future[TaskOutcome], Task] = {}
    waiting: list[tuple[float, int, str]] = []  # ready to start: (-rank, position, name)
    alone: list[TaskOutcome] = []  # attempts that ran out of memory: each runs again alone
    solo: set[Future[TaskOutcome]] = set()  # such a run: nothing starts beside it
    workers = ctx.settings.parallelism
    with StopSignals() as stop, ThreadPoolExecutor(max_workers=workers) as pool:
        while graph.is_active():
            for name in _in_order(graph.get_ready(), ordered):
                task = by_name[name]
                failed = any(outcomes[u].status is not Status.SUCCESS for u in task.upstream)
                if stop.by is None and not failed:
                    heapq.heappush(waiting, (-rank[name][0], rank[name][1], name))
                    continue
                outcome = _not_started(task, stop.by) if stop.by else _skipped(task, outcomes)
                _settle(outcome, outcomes, hooks, ctx, graph)
            if alone and not running:  # the others have finished: nothing starts beside it
                last = alone.pop(0)
                attempt = partial(_attempt_task, first=last.attempts + 1, started=last.started_at)
                future = pool.submit(attempt, last.task, ctx, hooks, sleep)
                running[future] = last.task
                solo.add(future)
            while waiting and not (alone or solo) and (stop.by or len(running) < workers):
                task = by_name[heapq.heappop(waiting)[2]]
                if stop.by is not None:
                    _settle(_not_started(task, stop.by), outcomes, hooks, ctx, graph)
                    continue
                running[pool.submit(_attempt_task, task, ctx, hooks, sleep)] = task
            if not running:
                continue
            finished, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                solo.discard(future)
                outcome = future.result()
                if outcome.needs_alone:  # running already, so run again even when stopping
                    log.warning("%s: %s; running it again alone", task.name, outcome.error)
                    alone.append(outcome)
                    continue
                outcomes[task.name] = outcome
                graph.done(task.name)
    return RunReport(ctx.run_id, [outcomes[t.name] for t in ordered], stop.by)


def _settle(
    outcome: TaskOutcome,
    outcomes: dict[str, TaskOutcome],
    hooks: list[RunListener],
    ctx: RunContext,
    graph: graphlib.TopologicalSorter[str],
) -> None:
    """Record the outcome of a task that does not run (skipped, or not started)."""
    outcomes[outcome.task.name] = outcome
    _notify_finished(hooks, ctx, outcome)
    graph.done(outcome.task.name)


def critical_path(
    tasks: Sequence[Task], expected: Mapping[str, float]
) -> dict[str, tuple[float, int]]:
    """Each task's rank: the seconds of the longest chain of tasks it heads (itself and
    whatever waits on it, each at ``expected`` seconds plus :data:`TASK_FLOOR_S`; a task
    never timed at the mean of those timed), and its position in ``tasks`` (ties)."""
    timed = [s for s in expected.values() if s >= 0]
    unknown = sum(timed) / len(timed) if timed else 0.0
    below: dict[str, list[str]] = {t.name: [] for t in tasks}
    for task in tasks:
        for upstream in task.upstream:
            below[upstream].append(task.name)
    chain: dict[str, float] = {}
    for task in reversed(order_tasks(tasks)):  # every task after those waiting on it
        own = max(expected.get(task.name, unknown), 0.0) + TASK_FLOOR_S
        chain[task.name] = own + max((chain[d] for d in below[task.name]), default=0.0)
    return {t.name: (chain[t.name], i) for i, t in enumerate(tasks)}


TASK_FLOOR_S = 0.05  # what any task costs: with nothing timed, the chain's length decides


class StopSignals:
    """While a run is on (in the main thread), SIGINT and SIGTERM ask it to stop."""

    def __init__(self) -> None:
        self.by: str | None = None
        self.stopped = threading.Event()  # for loops that wait (the stream consumer)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.by is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.by = signal.Signals(signum).name
        self.stopped.set()
        log.warning("%s: finishing the running work, starting nothing new", self.by)

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _not_started(task: Task, signal_name: str) -> TaskOutcome:
    now = time.time()
    reason = f"{NOT_STARTED} by {signal_name}; run again to continue"
    return TaskOutcome(task, Status.SKIPPED, error=reason, started_at=now, ended_at=now)


def _skipped(task: Task, outcomes: dict[str, TaskOutcome]) -> TaskOutcome:
    bad = [u for u in task.upstream if u in outcomes and outcomes[u].status is not Status.SUCCESS]
    now = time.time()
    reason = f"upstream {', '.join(bad)} did not succeed"
    return TaskOutcome(task, Status.SKIPPED, error=reason, started_at=now, ended_at=now)


def _attempt_task(
    task: Task,
    ctx: RunContext,
    hooks: list[RunListener],
    sleep: Callable[[float], None],
    *,
    first: int = 1,
    started: float | None = None,
) -> TaskOutcome:
    """Attempts of ``task`` from number ``first`` until one succeeds, fails for good, or runs
    out of memory (returned for the scheduler to run again alone, once: attempts from
    ``first`` above 1 are that run)."""
    started = started if started is not None else time.time()
    max_attempts = ctx.settings.retries + 1
    for attempt in range(first, max_attempts + 1):
        outcome, _ = attempt_once(
            task,
            ctx,
            hooks,
            attempt,
            may_retry=attempt < max_attempts,
            started_at=started,
            may_rerun_alone=first == 1,
        )
        if not outcome.will_retry or outcome.needs_alone:
            return outcome
        delay = retry_delay(ctx.settings, attempt)
        log.warning(
            "%s: transient failure, retry %d in %.1fs: %s", task.name, attempt, delay, outcome.error
        )
        sleep(delay)
    raise AssertionError("unreachable: the last attempt never retries")  # pragma: no cover


_ATTEMPT_ENDS: list[Callable[[], None]] = []


def at_attempt_end(release: Callable[[], None]) -> None:
    """Call ``release`` in a task attempt's thread when the attempt ends, whatever its end:
    what lives for one attempt in that thread (an engine's connection and the memory it
    holds) goes with it."""
    _ATTEMPT_ENDS.append(release)


def _end_attempt() -> None:
    for release in _ATTEMPT_ENDS:
        try:
            release()
        except Exception:  # a resource that cannot be released never fails the task
            log.debug("releasing after a task attempt failed", exc_info=True)


def attempt_once(
    task: Task,
    ctx: RunContext,
    hooks: Sequence[RunListener],
    attempt: int,
    *,
    may_retry: bool,
    started_at: float | None = None,
    may_rerun_alone: bool = False,
) -> tuple[TaskOutcome, Exception | None]:
    """One attempt of ``task``: the listeners hear its start and its end, and a transient
    failure is reported as one that will be retried when ``may_retry``, as is running out of
    the engine's memory when ``may_rerun_alone`` too (:attr:`TaskOutcome.needs_alone`).
    Returns the outcome and the exception that failed it (for a scheduler that runs one
    attempt at a time)."""
    outcome = TaskOutcome(
        task, Status.RUNNING, attempts=attempt, started_at=started_at or time.time()
    )
    error: Exception | None = None
    try:
        for hook in hooks:  # an audit store that cannot record the start fails the task
            hook.task_started(ctx, task, attempt)
        try:
            outcome.result = task.fn(ctx)
        finally:
            _end_attempt()
        outcome.status = Status.SUCCESS
    except Exception as exc:
        error = exc
        outcome.status, outcome.error = Status.FAILED, describe_error(exc)
        alone = may_rerun_alone and isinstance(exc, EngineMemoryError)
        outcome.will_retry = may_retry and (is_transient(exc) or alone)
        outcome.needs_alone = outcome.will_retry and alone
        if not isinstance(exc, MedallionError) and not outcome.will_retry:
            log.debug("%s failed:\n%s", task.name, traceback.format_exc())
    outcome.ended_at = time.time()
    _notify_finished(list(hooks), ctx, outcome)
    return outcome, error


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying (a busy lease, a lost connection, a timeout)."""
    return isinstance(exc, TRANSIENT)


def retry_delay(settings: Settings, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt``: ``retry_backoff_s``, doubling."""
    return settings.retry_backoff_s * 2.0 ** (attempt - 1)


def describe_error(exc: BaseException) -> str:
    """The one-line error text of a failed task."""
    if isinstance(exc, MedallionError):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]


def _notify_finished(hooks: list[RunListener], ctx: RunContext, outcome: TaskOutcome) -> None:
    for hook in hooks:
        try:
            hook.task_finished(ctx, outcome)
        except Exception as exc:  # a listener must never take the run down
            log.error("%s could not record %s: %s", type(hook).__name__, outcome.task.name, exc)
