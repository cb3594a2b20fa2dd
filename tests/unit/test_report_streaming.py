"""The Streaming section's view model from hand-written audit rows: runs and totals from their
micro-batches (events per second while writing, commit latency percentiles), quarantined events
from the lake by run and reason, and the empty state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from medallion.errors import StorageError
from medallion.report.model import Cell
from medallion.report.run import LakeViews, RunData
from medallion.report.streaming import (
    LAST_RUNS,
    Stream,
    percentile,
    stream_runs,
    stream_section,
    summarise,
)

T0 = datetime(2024, 5, 1, 12, 0, 0)


def batch(
    i: int,
    run_id: str,
    events: int | None,
    seconds: float | None,
    commit: float | None,
    *,
    status: str = "SUCCESS",
) -> dict[str, Any]:
    metrics: dict[str, Any] = {"holder": "host:1"}
    if seconds is not None:
        metrics = {"bytes": 10 * (events or 0), "seconds": seconds, "commit_seconds": commit}
    return {
        "id": i,
        "run_id": run_id,
        "status": status,
        "started_at": T0 + timedelta(seconds=i),
        "ended_at": None if status == "RUNNING" else T0 + timedelta(seconds=i + 1),
        "rows_read": events,
        "metrics": json.dumps(metrics),
    }


def no_query(name: str) -> pa.Table:
    raise AssertionError(f"the Streaming section runs no query ({name})")


def views(rows: list[dict[str, Any]]) -> LakeViews:
    return LakeViews(lambda: [], no_query, lambda: rows)


def data(stream: list[dict[str, Any]]) -> RunData:
    return RunData("r", [], None, [], stream)


def texts(cells: tuple[Cell, ...]) -> list[str]:
    return [c.text for c in cells]


# -- figures ----------------------------------------------------------------------------------
def test_percentiles_are_nearest_rank() -> None:
    values = [0.4, 0.1, 0.3, 0.2]
    assert percentile(values, 50) == 0.2
    assert percentile(values, 99) == 0.4
    assert percentile([0.7], 50) == percentile([0.7], 99) == 0.7
    hundred = [i / 1000 for i in range(100, 0, -1)]  # 0.001 .. 0.100, shuffled order
    assert percentile(hundred, 50) == 0.050
    assert percentile(hundred, 99) == 0.099
    assert percentile([], 50) is None


def test_a_run_from_its_micro_batches() -> None:
    batches = [
        batch(1, "a", 400, 0.5, 0.05),
        batch(2, "a", 300, 1.0, 0.20),
        batch(3, "a", None, None, None, status="SKIPPED"),  # fenced off: nothing kept
        batch(4, "a", 300, 0.5, 0.10),
        batch(5, "a", 200, 0.5, 0.01),
    ]
    run = summarise("a", batches, 7)
    assert run.batches == 4
    assert run.events == 1_200
    assert run.events_per_s == 1_200 / 2.5  # the time spent writing, not the wall time
    assert (run.commit_p50, run.commit_p99) == (0.05, 0.20)
    assert run.quarantined == 7
    assert run.started == T0 + timedelta(seconds=1)
    assert run.ended == "SUCCESS"


def test_a_run_still_writing_its_first_batch_has_no_rate() -> None:
    run = summarise("b", [batch(1, "b", None, None, None, status="RUNNING")], 0)
    assert (run.batches, run.events, run.events_per_s) == (0, 0, None)
    assert (run.commit_p50, run.commit_p99) == (None, None)
    assert run.ended == "RUNNING"


def test_runs_and_totals_over_every_run() -> None:
    batches = [
        batch(1, "a", 100, 0.5, 0.02),
        batch(2, "a", 100, 0.5, 0.04),
        batch(3, "b", 50, 0.25, 0.01),
        batch(4, "b", None, None, None, status="FAILED"),
    ]
    runs, total = stream_runs(batches, {"a": 3, "b": 1, "not-in-the-audit-log": 9})
    assert [(r.run_id, r.batches, r.events, r.quarantined, r.ended) for r in runs] == [
        ("a", 2, 200, 3, "SUCCESS"),
        ("b", 1, 50, 1, "FAILED"),
    ]
    assert runs[0].events_per_s == 200.0 and runs[1].events_per_s == 200.0
    assert total.run_id == "all 2 runs"
    assert (total.batches, total.events, total.quarantined, total.ended) == (3, 250, 4, None)
    assert total.events_per_s == 250 / 1.25
    assert (total.commit_p50, total.commit_p99) == (0.02, 0.04)
    assert total.started == T0 + timedelta(seconds=1)


# -- the section ------------------------------------------------------------------------------
def test_the_section_shows_the_last_runs_newest_first_and_the_reasons() -> None:
    batches = [batch(i, f"run{i:02d}", 10 * i, 0.5, i / 1000) for i in range(1, 13)]
    quarantine = [
        {"run_id": "run12", "reason": "not JSON", "rows": 2, "released": 0},
        {"run_id": "run12", "reason": "order_id: unknown order", "rows": 3, "released": 1},
        {"run_id": "run01", "reason": "not JSON", "rows": 4, "released": 0},
    ]
    view = stream_section(views(quarantine), data(batches)).view
    assert isinstance(view, Stream) and view.runs is not None and view.reasons is not None
    assert view.runs.columns == ("run", "started", "batches", "events", "quarantined",
                                 "events/s writing", "commit p50 (ms)", "commit p99 (ms)",
                                 "ended")  # fmt: skip
    shown = [texts(row) for row in view.runs.rows]
    assert len(shown) == LAST_RUNS + 1
    assert [row[0] for row in shown[:-1]] == [f"run{i:02d}" for i in range(12, 2, -1)]
    assert shown[0] == ["run12", "2024-05-01 12:00:12 UTC", "1", "120", "5", "240", "12", "12",
                        "SUCCESS"]  # fmt: skip
    assert shown[-1] == ["all 12 runs", "2024-05-01 12:00:01 UTC", "12", "780", "9", "130", "6",
                         "12", "\u2014"]  # fmt: skip
    assert view.shown.startswith("The last 10 of 12 consume runs")
    assert [texts(row) for row in view.reasons.rows] == [
        ["not JSON", "6", "0"],
        ["order_id: unknown order", "3", "1"],
    ]


def test_an_unreadable_quarantine_is_said_and_the_runs_still_shown() -> None:
    def broken() -> list[dict[str, Any]]:
        raise StorageError("cannot read s3://k:secret@lake/quarantine/review_events")

    view = stream_section(LakeViews(lambda: [], no_query, broken), data([batch(1, "a", 5, 1, 1)]))
    assert isinstance(view.view, Stream) and view.view.runs is not None
    assert view.view.reasons is None and view.view.error is not None
    assert "secret" not in view.view.error
    assert texts(view.view.runs.rows[0])[4] == "\u2014"  # quarantined: unknown


@pytest.mark.parametrize("quarantine", [[], [{"run_id": "x", "reason": "r", "rows": 1}]])
def test_no_stream_yet_is_the_empty_state(quarantine: list[dict[str, Any]]) -> None:
    section = stream_section(views(quarantine), data([]))
    assert (section.id, section.title) == ("streaming", "Streaming")
    assert section.view == Stream(None, "", None, None)
