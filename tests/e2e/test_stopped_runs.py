"""A run stopped by SIGTERM finishes its running tasks and records the rest as not started; a
run killed by SIGKILL leaves RUNNING rows that the next run marks ABANDONED. Either way no
attempt stays RUNNING without an end, and the report of the stopped run says what happened."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medallion import api
from medallion.settings import Settings

pytestmark = pytest.mark.slow  # whole runs: `make test-fast` leaves them out

MEDALLION = [sys.executable, "-m", "medallion"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    api.generate_source(Settings(home=home), scale=0.05, seed=3)
    return home


def start_run(home: Path, run_id: str, **env_extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEDALLION_PARALLELISM": "1", "MEDALLION_RETRIES": "0", **env_extra}
    return subprocess.Popen(
        [*MEDALLION, "run", "--home", str(home), "--run-id", run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def wait_for_tasks(home: Path, run_id: str, done: int, timeout: float = 60) -> None:
    """Until ``done`` tasks of the run have ended (read straight from the audit store)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(home / "audit.db") as con:
                (n,) = con.execute(
                    "SELECT count(*) FROM run_logs WHERE run_id = ? AND ended_at IS NOT NULL",
                    (run_id,),
                ).fetchone()
            if n >= done:
                return
        except sqlite3.OperationalError:
            pass  # the tables are not there yet
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not get to {done} finished tasks")


def wait_for_a_running_task(home: Path, run_id: str, layer: str, timeout: float = 60) -> None:
    """Until an attempt of the run in ``layer`` has started and not ended."""
    deadline = time.monotonic() + timeout
    sql = "SELECT count(*) FROM run_logs WHERE run_id = ? AND layer = ? AND ended_at IS NULL"
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(home / "audit.db") as con:
                (n,) = con.execute(sql, (run_id, layer)).fetchone()
            if n:
                return
        except sqlite3.OperationalError:
            pass  # the tables are not there yet
        time.sleep(0.02)
    raise AssertionError(f"no {layer} task of run {run_id} was seen running")


def unended(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "audit.db") as con:
        return con.execute(
            "SELECT run_id, task, status FROM run_logs WHERE ended_at IS NULL"
        ).fetchall()


def statuses(home: Path, run_id: str) -> dict[str, str]:
    with sqlite3.connect(home / "audit.db") as con:
        rows = con.execute(
            "SELECT status, error FROM run_logs WHERE run_id = ?", (run_id,)
        ).fetchall()
    return dict(rows)


def test_sigterm_finishes_running_tasks_and_records_the_rest(home: Path) -> None:
    run = start_run(home, "stopped-by-term")
    wait_for_tasks(home, "stopped-by-term", 3)
    run.send_signal(signal.SIGTERM)
    _out, err = run.communicate(timeout=120)
    assert run.returncode == 130
    lines = [line for line in err.decode().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0], err.decode()[-2000:]
    assert unended(home) == []
    got = statuses(home, "stopped-by-term")
    assert "SUCCESS" in got and "not started: the run was stopped by SIGTERM" in got["SKIPPED"]
    settings = Settings(home=home)
    page = api.report(settings, "stopped-by-term").read_text()
    assert "STOPPED" in page and "stopped by SIGTERM" in page
    assert api.run(settings).ok  # the next run finishes the work


def test_sigkill_leaves_attempts_that_the_next_run_marks_abandoned(home: Path) -> None:
    # the first Silver task holds still after its commit, so the kill lands inside it
    run = start_run(home, "killed", MEDALLION_PAUSE_AT="silver.after_commit")
    wait_for_a_running_task(home, "killed", "silver")
    run.kill()
    run.wait(timeout=30)
    assert [r[0] for r in unended(home)] == ["killed"]  # the attempt it was in
    settings = Settings(home=home)
    assert api.run(settings).ok
    assert unended(home) == []
    assert "ended before the task did" in statuses(home, "killed")["ABANDONED"]
    page = api.report(settings, "killed").read_text()
    assert "ABANDONED" in page
