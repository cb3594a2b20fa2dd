"""`medallion maintain` on a lake built by many small incremental runs: fewer files, the same
rows, the same app transactions; the next run writes nothing, and a later incremental run
gives the same lake as one that was never maintained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support import file_layout, run_ok
from typer.testing import CliRunner

from medallion import api
from medallion.api.maintenance import lake_tables_with_keys
from medallion.catalog import TableRef
from medallion.cli import app
from medallion.errors import ConfigError
from medallion.settings import Settings
from medallion.source.changes import ChangeSpec
from medallion.storage import ROW_GROUP_ROWS, Lake

pytestmark = pytest.mark.slow


def change(settings: Settings, seed: int) -> None:
    spec = ChangeSpec(seed=seed, new_orders=5, status_updates=5, customer_moves=2,
                      product_updates=2, soft_deletes=1)  # fmt: skip
    api.change_source(settings, spec)


def rows(settings: Settings) -> dict[str, list[str]]:
    """Every existing table's rows (lineage columns left out), sorted, by ``layer.table``."""
    lake, out = Lake.from_settings(settings), {}
    for ref in lake_tables_with_keys():
        data = lake.read(ref.layer, ref.name)
        if data is not None:
            keep = [c for c in data.column_names if not c.startswith("_")]
            lines = (json.dumps(r, default=str) for r in data.select(keep).to_pylist())
            out[str(ref)] = sorted(lines)
    return out


def badly_laid_out(settings: Settings) -> dict[str, set[tuple[int, frozenset[str]]]]:
    """Tables with a row group of more than ROW_GROUP_ROWS rows, or without a bloom filter of
    the first column of the key their lookups filter by (only of it), by ``layer.table``:
    every writer of the pipeline lays its files out for the lookups (``file_layout``)."""
    lake, out = Lake.from_settings(settings), {}
    for ref, key in lake_tables_with_keys().items():
        if not lake.table(ref.layer, ref.name).exists:
            continue
        wanted = frozenset(key[:1])
        groups = file_layout(lake.table_uri(ref.layer, ref.name))
        bad = {(rows, bloom) for rows, bloom in groups if rows > ROW_GROUP_ROWS or bloom != wanted}
        if bad:
            out[str(ref)] = bad
    return out


def app_transactions(settings: Settings) -> dict[str, dict[str, int | None]]:
    """Every app transaction of every table (ids read from the Delta log) and its version."""
    lake, out = Lake.from_settings(settings), {}
    for ref in lake_tables_with_keys():
        log = Path(lake.table_uri(ref.layer, ref.name)) / "_delta_log"
        ids = {json.loads(line)["txn"]["appId"] for f in log.glob("*.json")
               for line in f.read_text().splitlines() if '"txn"' in line}  # fmt: skip
        handle = lake.table(ref.layer, ref.name)
        out[str(ref)] = {i: handle.app_version(i) for i in sorted(ids)}
    return out


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Settings, Settings]:
    """Two lakes fed by one SQLite source: one to maintain, one as the control."""
    source = str(tmp_path / "source.db")
    made = [Settings(home=tmp_path / name, source_url=source, retries=0, checks=False,
                     report_on_run=False) for name in ("maintained", "control")]  # fmt: skip
    api.init_source(made[0])
    api.generate_source(made[0], scale=0.005, seed=3)
    return made[0], made[1]


def test_maintain_compacts_and_keeps_what_the_pipeline_depends_on(
    homes: tuple[Settings, Settings],
) -> None:
    maintained, control = homes
    for seed in (0, 1, 2, 3):
        if seed:
            change(maintained, seed)
        run_ok(maintained)
        run_ok(control)
    assert badly_laid_out(maintained) == {}
    lake = Lake.from_settings(maintained)
    files_before = lake.table("bronze", "orders").files()[0]
    data, txns = rows(maintained), app_transactions(maintained)
    report = api.maintain(maintained, retention_hours=0, force=True)

    orders = next(t for t in report.tables if t.ref == TableRef("bronze", "orders"))
    assert files_before >= 4 and orders.files_before == files_before and orders.files_after == 1
    assert orders.z_order and orders.version_after > orders.version_before
    assert orders.vacuumed >= files_before
    assert rows(maintained) == data
    assert app_transactions(maintained) == txns
    assert badly_laid_out(maintained) == {}
    audit = [r for r in api.audit_log(maintained, last=None) if r["job"] == "medallion_maintain"]
    assert len(audit) == len(report.tables) and {r["status"] for r in audit} == {"SUCCESS"}

    quiet = run_ok(maintained)  # nothing changed at the source: nothing is written
    written = {o.task.name: o.result.rows_written for o in quiet.outcomes if o.result}
    assert set(written.values()) == {0}, written
    assert rows(maintained) == data

    change(maintained, 9)  # one more batch: both lakes end up with the same rows
    run_ok(maintained)
    run_ok(control)
    assert rows(maintained) == rows(control)


def test_a_short_retention_needs_force(homes: tuple[Settings, Settings]) -> None:
    maintained, _ = homes
    with pytest.raises(ConfigError, match="at least 1 h"):
        api.maintain(maintained, retention_hours=0)
    result = CliRunner().invoke(
        app, ["maintain", "--retention-hours", "0", "--home", str(maintained.home)]
    )
    assert result.exit_code == 1 and "--force" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_table_lists_the_valid_ones(homes: tuple[Settings, Settings]) -> None:
    with pytest.raises(ConfigError, match=r"unknown table nope; choose from .*orders"):
        api.maintain(homes[0], tables=["nope"])


def test_the_cli_prints_files_before_and_after(homes: tuple[Settings, Settings]) -> None:
    settings = homes[0]
    run_ok(settings, ["bronze"])
    result = CliRunner().invoke(
        app,
        ["maintain", "--layer", "bronze", "--home", str(settings.home)],
        env={"MEDALLION_SOURCE_URL": settings.source_url},
    )
    assert result.exit_code == 0, result.output
    assert "bronze.orders" in result.output and "table(s) maintained" in result.output
