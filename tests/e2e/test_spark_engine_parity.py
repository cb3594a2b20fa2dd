"""The Spark engine gives the tables DuckDB gives: the same source run through both engines
(a full run, two change batches with dirty rows, incremental runs) leaves every Silver,
quarantine and Gold table identical, row for row; on Sail in local and in local-cluster mode.
A re-run with nothing new writes nothing, and a run killed mid-way then re-run gives the same
tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support import run_ok

from medallion import api
from medallion.settings import Settings
from medallion.source.changes import ChangeSpec
from medallion.spark_engine import Wire
from medallion.storage import Lake

pytestmark = pytest.mark.slow

LAYERS = ("silver", "quarantine", "gold")
BATCHES = [
    ChangeSpec(
        seed=3, new_orders=20, status_updates=20, customer_moves=10, product_updates=10,
        seller_moves=5, soft_deletes=5, hard_deletes=5, late_updates=6, dirty=10,
    ),
    ChangeSpec(seed=4, new_orders=10, status_updates=10, customer_moves=5, dirty=5),
]  # fmt: skip


def _ignored(column: str) -> bool:
    """Columns that name the run or the moment a row was written, not what it holds."""
    return column.endswith("run_id") or column in {"_ingested_at", "_quarantined_at"}


def lake_tables(settings: Settings) -> dict[str, list[str]]:
    """Every Silver, quarantine and Gold table as sorted rows (JSON text, run columns out)."""
    root = Path(settings.lake_location)
    lake = Lake(settings.lake_location)
    tables = {}
    for layer in LAYERS:
        for folder in sorted(p for p in (root / layer).iterdir() if p.is_dir()):
            data = lake.read(layer, folder.name)
            assert data is not None
            kept = data.select([c for c in data.column_names if not _ignored(c)])
            rows = (json.dumps(r, default=str, sort_keys=True) for r in kept.to_pylist())
            tables[f"{layer}.{folder.name}"] = sorted(rows)
    return tables


def assert_same_tables(duck: Settings, spark: Settings) -> None:
    expected, got = lake_tables(duck), lake_tables(spark)
    assert sorted(got) == sorted(expected)
    for name, rows in expected.items():
        missing = [r for r in rows if r not in set(got[name])]
        extra = [r for r in got[name] if r not in set(rows)]
        assert not missing and not extra, (name, missing[:3], extra[:3])


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = str(tmp_path / "source.db")
    api.generate_source(Settings(home=tmp_path / "gen", source_url=url), scale=0.01, seed=11)
    return url


@pytest.mark.parametrize("server", ["spark_local", "spark_cluster"])
def test_both_engines_give_the_same_tables(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    source: str,
    server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote = request.getfixturevalue(server)
    duck = Settings(home=tmp_path / "duck", source_url=source, retries=0)
    spark = Settings(
        home=tmp_path / "spark", source_url=source, retries=0, engine="spark", spark_remote=remote
    )
    wire = _watch_the_wire(monkeypatch)
    run_ok(duck), run_ok(spark)
    assert_same_tables(duck, spark)
    assert wire.crossed(FULL_RUN_ROWS) == [], "table-sized rows crossed in a full run"
    for batch in BATCHES:
        api.change_source(duck, batch)
        run_ok(duck), run_ok(spark)
        assert_same_tables(duck, spark)
        assert wire.crossed(CHANGE_ROWS) == [], "more than the change crossed"
    versions = _versions(spark)
    again = run_ok(spark)
    assert _versions(spark) == versions  # nothing new: nothing written
    written = {o.task.name: o.result.rows_written for o in again.outcomes if o.result}
    assert not any(written.values()), written


# What may cross the wire between this process and the Spark server in a run: counts,
# versions, samples and the keys or rows of a change, never a table. The source holds about
# 1,000 orders and 10,000 geolocation points; each change batch touches at most about 150 rows
# of a table. The date dimension is built here, in Python, and sent: it is exempt.
FULL_RUN_ROWS, CHANGE_ROWS = 100, 150
BUILT_HERE = ("date_key, date, year",)


@dataclass
class _Wire:
    seen: list[tuple[str, int, str]] = field(default_factory=list)

    def crossed(self, limit: int) -> list[tuple[str, int, str]]:
        """The row sets over ``limit`` seen since the last call (rows built here exempt)."""
        seen, self.seen = self.seen, []
        return [s for s in seen if s[1] > limit and not s[2].startswith(BUILT_HERE)]


def _watch_the_wire(monkeypatch: pytest.MonkeyPatch) -> _Wire:
    """Every row set any Spark engine sends or receives, as (way, rows, what)."""
    wire = _Wire()
    note = Wire.note

    def seen(self: Wire, way: str, rows: int, what: str) -> None:
        wire.seen.append((way, rows, what[:120]))
        note(self, way, rows, what)

    monkeypatch.setattr(Wire, "note", seen)
    return wire


def _versions(settings: Settings) -> dict[str, int | None]:
    lake = Lake(settings.lake_location)
    root = Path(settings.lake_location)
    return {
        f"{layer}.{p.name}": lake.table(layer, p.name).version
        for layer in LAYERS
        for p in (root / layer).iterdir()
    }


# after a quarantine commit, after a table's commit, and after the server wrote a result's
# files but before this process committed them (they are left behind, and never read)
CRASH_AT = ["silver.after_quarantine", "silver.after_commit", "lake.before_adopt"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One source and one clean DuckDB run of it, shared by the crash tests (read only)."""
    folder = tmp_path_factory.mktemp("clean")
    source = str(folder / "source.db")
    api.generate_source(Settings(home=folder / "gen", source_url=source), scale=0.01, seed=11)
    duck = Settings(home=folder / "duck", source_url=source, retries=0)
    run_ok(duck)
    return duck


@pytest.mark.parametrize("point", CRASH_AT)
def test_a_crashed_spark_run_rerun_equals_a_clean_run(
    spark_local: str, tmp_path: Path, clean_run: Settings, point: str
) -> None:
    duck, source = clean_run, clean_run.source_location
    home = tmp_path / "spark"
    env = {
        **os.environ,
        "MEDALLION_ENGINE": "spark",
        "MEDALLION_SPARK_REMOTE": spark_local,
        "MEDALLION_RETRIES": "0",
    }
    args = [sys.executable, "-m", "medallion", "run", "--home", str(home), "--source-url", source]
    crashed = subprocess.run(
        args, env={**env, "MEDALLION_CRASH_AT": point}, capture_output=True, check=False
    )
    assert crashed.returncode == 86, crashed.stderr.decode()[-2000:]
    again = subprocess.run(args, env=env, capture_output=True, check=False)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    spark = Settings(home=home, source_url=source, engine="spark", spark_remote=spark_local)
    assert_same_tables(duck, spark)
