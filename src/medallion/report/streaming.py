"""The Streaming section: the review stream's consume runs, from the audit log (one row per
micro-batch, job ``medallion_stream``), and its quarantined events by reason, from the lake
(handed in through ``LakeViews``).

A run's quarantined events are counted in the lake (by the run that quarantined them), not
from its micro-batches' audit rows: the Silver merge a consume makes after its last
micro-batch has no audit row of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from medallion.errors import MedallionError
from medallion.report.formats import fmt_time
from medallion.report.model import Badge, Section, Table, badge, table
from medallion.report.run import LakeViews, RunData, task_metrics
from medallion.report.style import Row
from medallion.settings import redact_url

LAST_RUNS = 10  # consume runs shown, newest first
RUN_COLUMNS = ("run", "started", "batches", "events", "quarantined", "events/s writing",
               "commit p50 (ms)", "commit p99 (ms)", "ended")  # fmt: skip
REASON_COLUMNS = ("reason", "events", "released to Silver since")


@dataclass(frozen=True)
class StreamRun:
    """One consume run, or all of them (the totals), summed from its micro-batches."""

    run_id: str
    started: datetime | None  # its first micro-batch's start
    batches: int  # micro-batches committed
    events: int  # messages committed to Bronze
    quarantined: int | None  # None: the lake's quarantine could not be read
    events_per_s: float | None  # events / seconds spent in micro-batches; None: no time
    commit_p50: float | None  # seconds of the Bronze commit (rows and offsets)
    commit_p99: float | None
    ended: str | None  # its last micro-batch's status (RUNNING while one is being written)


@dataclass(frozen=True)
class Stream:
    """``runs`` None: no stream was ever consumed (the rest is then empty)."""

    runs: Table | None  # the last LAST_RUNS runs, newest first, then the totals
    shown: str  # which runs the table shows
    error: str | None  # why the quarantine could not be read
    reasons: Table | None  # None: no event quarantined (or the error)


def percentile(values: Sequence[float], percent: int) -> float | None:
    """The nearest-rank percentile: the smallest value with ``percent`` % of the values at or
    below it (always one of the values); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent * len(ordered) / 100))
    return ordered[rank - 1]


def _number(value: Any) -> float | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) else None


def summarise(run_id: str, batches: Sequence[Row], quarantined: int | None) -> StreamRun:
    """One run (or several, for the totals) from its micro-batch rows, oldest first.

    A batch that was not committed (fenced off, failed, still running) adds no event and no
    time; events per second divide the events by the time spent writing micro-batches (their
    ``seconds``), so a consumer waiting for messages does not lower it.
    """
    committed = [b for b in batches if b["status"] == "SUCCESS"]
    metrics = [task_metrics(b) for b in committed]
    seconds = [s for m in metrics if (s := _number(m.get("seconds"))) is not None]
    commits = [s for m in metrics if (s := _number(m.get("commit_seconds"))) is not None]
    events = sum(int(b["rows_read"] or 0) for b in committed)
    busy = sum(seconds)
    return StreamRun(
        run_id=run_id,
        started=min((b["started_at"] for b in batches), default=None),
        batches=len(committed),
        events=events,
        quarantined=quarantined,
        events_per_s=events / busy if busy > 0 else None,
        commit_p50=percentile(commits, 50),
        commit_p99=percentile(commits, 99),
        ended=str(batches[-1]["status"]) if batches else None,
    )


def stream_runs(
    batches: Sequence[Row], quarantined: Mapping[str, int] | None
) -> tuple[list[StreamRun], StreamRun]:
    """Every consume run, oldest first, and the totals over all of them; ``quarantined`` is
    the events each run quarantined (None: unknown)."""
    by_run: dict[str, list[Row]] = {}
    for b in sorted(batches, key=lambda b: b["id"]):
        by_run.setdefault(str(b["run_id"]), []).append(b)

    def count(run_ids: Sequence[str]) -> int | None:
        return None if quarantined is None else sum(quarantined.get(r, 0) for r in run_ids)

    runs = [summarise(run_id, rows, count([run_id])) for run_id, rows in by_run.items()]
    everything = [b for rows in by_run.values() for b in rows]
    label = f"all {len(runs):,} run{'s' if len(runs) != 1 else ''}"
    total = summarise(label, everything, count(list(by_run)))
    return runs, replace(total, ended=None)


def _sum_by(rows: Sequence[Row], key: str, value: str) -> dict[str, int]:
    sums: dict[str, int] = {}
    for r in rows:
        sums[str(r[key])] = sums.get(str(r[key]), 0) + int(r[value] or 0)
    return sums


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _cells(run: StreamRun) -> tuple[Any, ...]:
    rate = None if run.events_per_s is None else round(run.events_per_s)
    ended: Badge | None = None if run.ended is None else badge(run.ended)
    return (run.run_id, fmt_time(run.started), run.batches, run.events, run.quarantined, rate,
            _ms(run.commit_p50), _ms(run.commit_p99), ended)  # fmt: skip


def stream_section(views: LakeViews, data: RunData) -> Section:
    if not data.stream:
        return Section("streaming", "Streaming", Stream(None, "", None, None))
    error: str | None = None
    reasons: Table | None = None
    by_run: dict[str, int] | None = None
    try:
        rows = views.stream_quarantine()
    except MedallionError as exc:
        error = redact_url(str(exc))
    else:
        by_run = _sum_by(rows, "run_id", "rows")
        events, released = _sum_by(rows, "reason", "rows"), _sum_by(rows, "reason", "released")
        ordered = sorted(events, key=lambda reason: (-events[reason], reason))
        cells = [(reason, events[reason], released[reason]) for reason in ordered]
        reasons = table(REASON_COLUMNS, cells) if cells else None
    runs, total = stream_runs(data.stream, by_run)
    shown = runs[-LAST_RUNS:][::-1]
    which = (
        f"The last {len(shown):,} of {len(runs):,} consume runs, newest first"
        if len(runs) > len(shown)
        else "Every consume run, newest first"
    )
    runs_table = table(RUN_COLUMNS, [_cells(r) for r in (*shown, total)], "totalled")
    view = Stream(runs_table, which, error, reasons)
    return Section("streaming", "Streaming", view)
