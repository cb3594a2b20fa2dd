"""The command line: every command has help, the README lists every command, and bad input
gets one red line and a non-zero exit code (no traceback)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from medallion.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def commands(group: typer.Typer, prefix: str = "") -> list[str]:
    names = [f"{prefix}{c.name or c.callback.__name__}" for c in group.registered_commands]
    for sub in group.registered_groups:
        names += commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return names


ALL = commands(app)


def test_there_are_commands() -> None:
    assert {"run", "demo", "check", "report", "source init", "source load-csv"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_command_has_help(name: str) -> None:
    result = runner.invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output.splitlines()) > 4


def test_readme_lists_every_command() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    missing = [n for n in ALL if not re.search(rf"medallion {re.escape(n)}\b", section)
               and not re.search(rf"\| {re.escape(n.split()[-1])}\b", section)]  # fmt: skip
    assert missing == []


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


def test_secrets_never_reach_config_show(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["config", "show", "--home", str(tmp_path)],
        env={"MEDALLION_SLACK_WEBHOOK_URL": "https://hooks.example/T0/B0/xyzzy",
             "MEDALLION_SOURCE_URL": "postgresql://me:hunter22@db/olist"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "xyzzy" not in result.output and "hunter22" not in result.output


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


def test_an_infinite_look_back_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["config", "show", "--home", str(tmp_path)], env={"MEDALLION_EXTRACT_LAG_S": "inf"}
    )
    assert result.exit_code == 1 and "extract_lag_s" in result.output
