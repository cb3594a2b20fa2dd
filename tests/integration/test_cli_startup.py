"""The fixed cost of every command: the CLI starts without the libraries only some commands
need (they load inside the command that uses them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medallion import __version__

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


def test_a_run_loads_no_module_only_other_commands_need() -> None:
    """What ``medallion run`` imports before its first task leaves out the source generator
    and change batches (the demo's), httpx (the first alert's) and holidays (dim_date's, when
    it generates days): each costs tens of milliseconds of every start."""
    code = (
        "import sys; from medallion import api; from medallion.cli import app; api.run; "
        "import medallion.pipeline; medallion.pipeline.build_tasks(None, None); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    unwanted = {"httpx", "holidays", "medallion.source.generator", "medallion.source.changes"}
    assert "medallion.api.runs" in loaded and "medallion.gold.layer" in loaded
    assert loaded & unwanted == set()


def medallion(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medallion", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MEDALLION_HOME": str(home)},
    )


def test_the_cli_leaves_with_each_command_s_exit_code_and_all_its_output(tmp_path: Path) -> None:
    """``main`` ends the process itself (no teardown of every loaded module): the exit code,
    the last line of output and the logged lines still come out."""
    assert (done := medallion("--version", home=tmp_path)).returncode == 0
    assert done.stdout.strip() == __version__
    shown = medallion("config", "show", home=tmp_path)
    assert shown.returncode == 0 and str(tmp_path) in shown.stdout
    assert shown.stdout.endswith("\n")
    missing = medallion("run", "--layer", "nope", home=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("error: unknown layer(s) nope")
    assert medallion("no-such-command", home=tmp_path).returncode == 2
    ran = medallion("source", "init", home=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "source.db").exists()


# ...nor, on a SQLite audit store, SQLAlchemy's PostgreSQL dialect (30 ms)
_READERS = (
    "pandas", "pyarrow.dataset", "adbc_driver_manager.dbapi", "duckdb",
    "sqlalchemy.dialects.postgresql",
)  # fmt: skip
# the CLI leaves without tearing down what it imported (`cli._leave`); a script that tears
# down DuckDB's and delta-rs' native threads was once killed by SIGABRT on its way out in CI
_EXIT_AS_THE_CLI = "import os, sys; sys.stdout.flush(); os._exit(0)"


def test_a_run_that_finds_no_change_loads_no_dataset_reader_engine_nor_source_driver(
    tmp_path: Path,
) -> None:
    """``pyarrow.dataset`` imports pandas, and so does the ADBC driver's DB-API module (0.2 s
    of a run that changed nothing, a fifth of it), and DuckDB's import costs 30-40 ms: a run
    whose source reports no write reads no table and makes no query (Bronze stands, Silver
    finds no Bronze commit, the rows quarantined for a missing parent need no new look while
    no table they refer to moved, the checks stand unchanged; the report's quarantine summary
    and business answers are the ones kept), so it loads none of them."""
    home = str(tmp_path)
    setup = (
        "from medallion import api; from medallion.settings import Settings; "
        f"s = Settings(home={home!r}); api.generate_source(s, scale=0.005, seed=4, "
        "dirty_rate=0.05); api.run(s); "
        "assert any('_exists_in_' in r['rule'] for r in api.quarantine_summary(s)); "  # rows wait
        + _EXIT_AS_THE_CLI
    )
    made = subprocess.run(
        [sys.executable, "-c", setup], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr
    probe = (
        "import sys; from medallion import api; from medallion.settings import Settings; "
        f"report = api.run(Settings(home={home!r})); assert report.ok; "
        f"print(sorted({set(_READERS)!r} & set(sys.modules))); " + _EXIT_AS_THE_CLI
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
