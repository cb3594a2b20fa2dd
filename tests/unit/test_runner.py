"""The task runner: ordering, parallelism, retries with backoff, skip-on-failure."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from medallion.errors import EngineMemoryError, TaskError
from medallion.runner import (
    TASK_FLOOR_S,
    RunContext,
    Status,
    Task,
    TaskOutcome,
    TaskResult,
    TransientError,
    critical_path,
    new_run_id,
    order_tasks,
    run_tasks,
)
from medallion.settings import Settings


def ctx(tmp_path: Path, **kw: object) -> RunContext:
    return RunContext(run_id="r1", settings=Settings(home=tmp_path, **kw))


def ok(rows: int = 1):
    return lambda _ctx: TaskResult(rows_written=rows)


def test_order_respects_dependencies_and_rejects_cycles() -> None:
    a, b, c = (
        Task("a", "l", "t", ok()),
        Task("b", "l", "t", ok(), ("a",)),
        Task("c", "l", "t", ok(), ("b",)),
    )
    assert [t.name for t in order_tasks([c, b, a])] == ["a", "b", "c"]
    with pytest.raises(TaskError, match="cycle"):
        order_tasks([Task("x", "l", "t", ok(), ("y",)), Task("y", "l", "t", ok(), ("x",))])
    with pytest.raises(TaskError, match="unknown task"):
        order_tasks([Task("x", "l", "t", ok(), ("nope",))])


def test_downstream_runs_after_upstream_and_tasks_run_in_parallel(tmp_path: Path) -> None:
    log: list[str] = []
    both_running = threading.Barrier(2, timeout=5)

    def parallel(name: str):
        def fn(_ctx: RunContext) -> TaskResult:
            both_running.wait()  # deadlocks (times out) unless two tasks run at once
            log.append(name)
            return TaskResult()

        return fn

    def last(_ctx: RunContext) -> TaskResult:
        log.append("last")
        return TaskResult()

    tasks = [
        Task("p1", "l", "t", parallel("p1")),
        Task("p2", "l", "t", parallel("p2")),
        Task("last", "l", "t", last, ("p1", "p2")),
    ]
    report = run_tasks(tasks, ctx(tmp_path, parallelism=2))
    assert report.ok
    assert sorted(log[:2]) == ["p1", "p2"] and log[2] == "last"


def _started(tmp_path: Path, tasks: list[Task], **kw: object) -> list[str]:
    """The order in which ``tasks`` start with one worker."""
    report = run_tasks(tasks, ctx(tmp_path, parallelism=1), **kw)  # type: ignore[arg-type]
    return [o.task.name for o in sorted(report.outcomes, key=lambda o: o.started_at)]


def test_of_the_ready_tasks_the_head_of_the_longest_chain_starts_first(tmp_path: Path) -> None:
    """With a worker free, the ready task heading the most work still to do (its own
    seconds last time and those of what waits on it) starts before one declared earlier;
    untimed, the longer chain of tasks goes first; equal chains keep the declared order."""
    tasks = [
        Task("leaf", "l", "t", ok()),
        Task("head", "l", "t", ok()),
        Task("tail", "l", "t", ok(), ("head",)),
    ]
    assert _started(tmp_path, tasks) == ["head", "leaf", "tail"]
    timed = {"leaf": 5.0, "head": 2.0, "tail": 4.0}
    assert _started(tmp_path, tasks, expected=timed) == ["head", "leaf", "tail"]
    timed = {"leaf": 10.0, "head": 2.0, "tail": 4.0}
    assert _started(tmp_path, tasks, expected=timed) == ["leaf", "head", "tail"]
    twins = [Task("b", "l", "t", ok()), Task("a", "l", "t", ok())]
    assert _started(tmp_path, twins) == ["b", "a"]


def test_critical_path_sums_the_longest_chain_below_each_task() -> None:
    tasks = [
        Task("a", "l", "t", ok()),
        Task("b", "l", "t", ok(), ("a",)),
        Task("c", "l", "t", ok(), ("a",)),
        Task("d", "l", "t", ok(), ("b", "c")),
    ]
    rank = critical_path(tasks, {"a": 1.0, "b": 5.0, "c": 1.0})  # d untimed: the mean, 7/3
    floor = TASK_FLOOR_S
    d = 7 / 3 + floor
    assert rank["d"] == pytest.approx((d, 3))
    assert rank["b"][0] == pytest.approx(5.0 + floor + d)
    assert rank["a"][0] == pytest.approx(1.0 + floor + 5.0 + floor + d)


def test_no_more_tasks_run_at_once_than_workers(tmp_path: Path) -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def counted(_ctx: RunContext) -> TaskResult:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return TaskResult()

    tasks = [Task(f"t{i}", "l", "t", counted) for i in range(8)]
    assert run_tasks(tasks, ctx(tmp_path, parallelism=3)).ok
    assert most[0] == 3


def test_transient_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    calls = {"n": 0}
    sleeps: list[float] = []

    def flaky(_ctx: RunContext) -> TaskResult:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("connection dropped")
        return TaskResult(rows_written=5)

    report = run_tasks(
        [Task("f", "l", "t", flaky)],
        ctx(tmp_path, retries=2, retry_backoff_s=0.5),
        sleep=sleeps.append,
    )
    assert report.ok and report.outcomes[0].attempts == 3
    assert sleeps == [0.5, 1.0]


def test_a_task_out_of_memory_beside_others_runs_again_alone_once(tmp_path: Path) -> None:
    """The engine's memory is shared by the tasks side by side: a task that ran out of it
    runs again once the others have finished, with nothing started beside it, and fails
    for good if it runs out alone too."""
    lock, running = threading.Lock(), set[str]()
    beside: dict[tuple[str, int], set[str]] = {}  # (task, call): what ran beside that call
    calls = {"big": 0, "huge": 0, "small": 0, "after": 0}
    together = threading.Barrier(2, timeout=5)  # big's and small's first calls overlap

    def task(name: str, fails: int = 0):
        def fn(_ctx: RunContext) -> TaskResult:
            with lock:
                calls[name] += 1
                call = (name, calls[name])
                running.add(name)
                for other in running - {name}:  # each sees the other, whichever came first
                    beside.setdefault((other, calls[other]), set()).add(name)
                beside.setdefault(call, set()).update(running - {name})
            try:
                if call in (("big", 1), ("small", 1)):
                    together.wait()
                time.sleep(0.05)
                if call[1] <= fails:
                    raise EngineMemoryError("query ran out of memory")
                return TaskResult()
            finally:
                with lock:
                    running.discard(name)

        return fn

    seen: list[tuple[str, int, Status, bool]] = []

    class Listener:
        def task_started(self, _c: RunContext, task: Task, attempt: int) -> None:
            pass

        def task_finished(self, _c: RunContext, outcome: TaskOutcome) -> None:
            seen.append((outcome.task.name, outcome.attempts, outcome.status, outcome.will_retry))

    tasks = [
        Task("big", "l", "t", task("big", fails=1)),
        Task("small", "l", "t", task("small")),
        Task("after", "l", "t", task("after")),
        Task("huge", "l", "t", task("huge", fails=9)),
    ]
    report = run_tasks(tasks, ctx(tmp_path, parallelism=2, retries=3), [Listener()])
    status = {o.task.name: (o.status, o.attempts) for o in report.outcomes}
    assert status == {
        "big": (Status.SUCCESS, 2),
        "small": (Status.SUCCESS, 1),
        "after": (Status.SUCCESS, 1),
        "huge": (Status.FAILED, 2),  # alone it ran out again: not retried a third time
    }
    assert calls == {"big": 2, "huge": 2, "small": 1, "after": 1}
    assert ("big", 1, Status.FAILED, True) in seen and ("big", 2, Status.SUCCESS, False) in seen
    assert ("huge", 1, Status.FAILED, True) in seen and ("huge", 2, Status.FAILED, False) in seen
    assert "small" in beside[("big", 1)]
    assert beside.get(("big", 2), set()) == beside.get(("huge", 2), set()) == set()


def test_a_task_out_of_memory_is_not_run_again_without_retries(tmp_path: Path) -> None:
    def short(_ctx: RunContext) -> TaskResult:
        raise EngineMemoryError("query ran out of memory")

    report = run_tasks([Task("m", "l", "t", short)], ctx(tmp_path, retries=0))
    assert report.outcomes[0].status is Status.FAILED and report.outcomes[0].attempts == 1


def test_permanent_failure_is_not_retried_and_downstream_is_skipped(tmp_path: Path) -> None:
    calls = {"n": 0}

    def broken(_ctx: RunContext) -> TaskResult:
        calls["n"] += 1
        raise ValueError("bad data")

    seen: list[tuple[str, Status]] = []

    class Listener:
        def task_started(self, _c: RunContext, task: Task, attempt: int) -> None:
            seen.append((task.name, Status.RUNNING))

        def task_finished(self, _c: RunContext, outcome: TaskOutcome) -> None:
            seen.append((outcome.task.name, outcome.status))

    tasks = [
        Task("broken", "l", "t", broken),
        Task("child", "l", "t", ok(), ("broken",)),
        Task("grandchild", "l", "t", ok(), ("child",)),
        Task("other", "l", "t", ok()),
    ]
    report = run_tasks(
        tasks, ctx(tmp_path, retries=3, parallelism=1), [Listener()], sleep=lambda _s: None
    )
    status = {o.task.name: o.status for o in report.outcomes}
    assert status == {
        "broken": Status.FAILED,
        "child": Status.SKIPPED,
        "grandchild": Status.SKIPPED,
        "other": Status.SUCCESS,
    }
    assert calls["n"] == 1 and not report.ok
    errors = {o.task.name: o.error for o in report.outcomes}
    assert errors["broken"] == "ValueError: bad data"
    assert errors["child"] == "upstream broken did not succeed"
    assert ("child", Status.SKIPPED) in seen and ("child", Status.RUNNING) not in seen


def test_a_failing_listener_does_not_take_the_run_down(tmp_path: Path) -> None:
    class Broken:
        def task_started(self, _c: RunContext, task: Task, attempt: int) -> None: ...

        def task_finished(self, _c: RunContext, outcome: TaskOutcome) -> None:
            raise RuntimeError("boom")

    assert run_tasks([Task("a", "l", "t", ok())], ctx(tmp_path), [Broken()]).ok


def test_run_ids_sort_by_time_and_are_unique() -> None:
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    first = new_run_id()
    time.sleep(1.01)
    assert new_run_id() > first
