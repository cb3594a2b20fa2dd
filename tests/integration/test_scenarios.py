"""Hand-written Gold scenarios, kept as data in ``tests/data/scenarios/<name>/``.

A scenario is a list of steps, each a folder of source rows: ``<table>.csv`` rows are upserted
(columns left out are NULL) and ``delete.<table>.csv`` keys are hard-deleted; the whole
pipeline runs after each step. ``expected/<gold table>.csv`` holds the exact rows of the
columns in its header after the last step (in any order), ``expected/query.<name>.csv`` a
named query's answer. The same must then hold after ``--full-refresh``.

``MEDALLION_UPDATE_SCENARIOS=1`` rewrites the expected files from what the code produces
(keeping each header's columns): review the diff before committing it.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from tests.support import read, run_ok

from medallion import api
from medallion.catalog import SOURCE_TABLES, source_table
from medallion.settings import Settings
from medallion.source.db import open_source

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"
UPDATE = os.environ.get("MEDALLION_UPDATE_SCENARIOS") == "1"


def _read_csv(path: Path, types: pa.Schema) -> pa.Table:
    """A CSV typed by ``types`` (the columns its header names); empty fields are NULL."""
    header = path.read_text().splitlines()[0].split(",")
    options = pacsv.ConvertOptions(
        column_types={c: types.field(c).type for c in header},
        strings_can_be_null=True,
        null_values=[""],
        true_values=["true"],
        false_values=["false"],
    )
    return pacsv.read_csv(path, convert_options=options)


def _apply_step(settings: Settings, step: Path) -> None:
    with open_source(settings.source_location) as db:
        for path in sorted(step.glob("*.csv")):
            deleting = path.name.startswith("delete.")
            table = source_table(path.stem.removeprefix("delete."))
            schema = table.arrow_schema()
            rows = _read_csv(path, schema)
            if deleting:
                db.delete_rows(table, rows.select(list(table.row_key)))
                continue
            missing = [f for f in schema if f.name not in rows.column_names]
            for f in missing:
                rows = rows.append_column(f, pa.nulls(rows.num_rows, f.type))
            db.upsert(table, rows.select(schema.names))


def _actual(settings: Settings, name: str) -> pa.Table:
    if name.startswith("query."):
        return api.query(settings, name.removeprefix("query."))
    return read(settings, "gold", name)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(" ")
    return str(value)


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


def _compare(settings: Settings, expected_dir: Path) -> None:
    for path in sorted(expected_dir.glob("*.csv")):
        actual = _actual(settings, path.stem)
        columns = path.read_text().splitlines()[0].split(",")
        got = actual.select(columns)
        if UPDATE:
            with path.open("w", newline="") as f:
                out = csv.writer(f, lineterminator="\n")
                out.writerow(columns)
                out.writerows([_text(v) for v in row] for row in _rows(got))
            continue
        expected = _read_csv(path, got.schema)
        assert _rows(got) == _rows(expected), path.relative_to(SCENARIOS)


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.iterdir() if p.is_dir()))
def test_scenario(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS / name
    spec = json.loads((scenario / "scenario.json").read_text())
    settings = Settings(home=tmp_path / "home", retries=0, report_on_run=False)
    with open_source(settings.source_location, create=True) as db:
        db.create_tables(SOURCE_TABLES)
    for step in spec["steps"]:
        _apply_step(settings, scenario / step)
        run_ok(settings)
    _compare(settings, scenario / "expected")
    run_ok(settings, full_refresh=True)
    _compare(settings, scenario / "expected")


def test_expected_files_are_not_empty_guesses() -> None:
    """Every scenario states expected rows for at least one table (a header alone would only
    prove the table is empty, which is a claim too: it must be the scenario's intent)."""
    for scenario in (p for p in SCENARIOS.iterdir() if p.is_dir()):
        files = list((scenario / "expected").glob("*.csv"))
        assert files, scenario.name
        assert any(len(f.read_text().splitlines()) > 1 for f in files), scenario.name
