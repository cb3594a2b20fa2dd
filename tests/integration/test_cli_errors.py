"""The command line as a user runs it (a fresh process each time): bad input of every kind is
one red line and a non-zero exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def medallion(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medallion", *args, "--home", str(home)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("source", "generate", "--scale", "-1"), "scale must be a number > 0"),
        (("source", "load-csv", "/no/such/dir"), "CSV directory /no/such/dir does not exist"),
        (("source", "stats", "--source-url", "postgresql://postgres@127.0.0.1:1/x"),
         "cannot connect to source postgresql://postgres@127.0.0.1:1/x"),
        (("source", "stats", "--source-url", "oracle://u@h/db"), "unsupported source URL scheme"),
        (("source", "stats"), "does not exist; run `medallion source init`"),
        (("query", "nope"), "unknown query 'nope'"),
        (("run", "--layer", "platinum"), "unknown layer(s) platinum"),
        (("run", "--table", "widgets"), "unknown table 'widgets'"),
        (("report",), "no run in the audit log yet"),
    ],
)  # fmt: skip
def test_bad_input_is_one_red_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    result = medallion(*args, home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("source", "generate", "--scale", "1e9"), "needs about"),
        (("source", "change", "--new-orders", "1000000000"), "needs about"),
        (("sql", "SELECT * FROM [/x]"), "[/x]"),
        (("sql", "COPY (SELECT 1) TO '/tmp/x.csv'"), "only one SELECT statement"),
    ],
)  # fmt: skip
def test_sizes_sql_and_markup_are_one_line(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = medallion(*args, home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("home", ["FILE", "FILE/below", "/proc/medallion", "/dev/null"])
def test_a_home_that_cannot_be_a_folder_is_one_line(tmp_path: Path, home: str) -> None:
    (tmp_path / "FILE").write_text("not a folder")
    path = Path(home.replace("FILE", str(tmp_path / "FILE")))
    result = medallion("source", "init", home=path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
