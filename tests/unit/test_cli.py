"""The command line: every command has help, the README lists every command, and bad input
gets one red line and a non-zero exit code (no traceback)."""

from __future__ import annotations

import re
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


def test_secrets_never_reach_config_show(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["config", "show", "--home", str(tmp_path)],
        env={"MEDALLION_SLACK_WEBHOOK_URL": "https://hooks.example/T0/B0/xyzzy",
             "MEDALLION_SOURCE_URL": "postgresql://me:hunter22@db/olist"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "xyzzy" not in result.output and "hunter22" not in result.output


def test_an_infinite_look_back_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["config", "show", "--home", str(tmp_path)], env={"MEDALLION_EXTRACT_LAG_S": "inf"}
    )
    assert result.exit_code == 1 and "extract_lag_s" in result.output
