"""The fixed cost of every command: the CLI starts without the libraries only some commands
need (they load inside the command that uses them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "adbc_driver_manager",
    "airflow",
    "confluent_kafka",
    "deltalake",
    "duckdb",
    "google",
    "httpx",
    "jinja2",
    "pyarrow",
    "pydantic_settings",
    "sqlalchemy",
)


def loaded_after(*args: str) -> list[str]:
    """The heavy top-level packages loaded once the CLI has handled ``args``."""
    probe = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "import medallion.cli\n"
        f"result = CliRunner().invoke(medallion.cli.app, {list(args)!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import sys, medallion.cli; print(sorted(set({HEAVY!r}) & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_of_every_command_loads_no_heavy_library() -> None:
    assert loaded_after("--help") == []
    assert loaded_after("run", "--help") == []
    assert loaded_after("maintain", "--help") == []


def test_config_show_loads_the_settings_only(tmp_path: Path) -> None:
    assert loaded_after("config", "show", "--home", str(tmp_path)) == ["pydantic_settings"]
