"""Gold exported to DuckDB, real PostgreSQL and the BigQuery emulator: every table's rows and
money equal Gold's; an export with nothing changed does nothing; after a change batch only
the changed tables move; a failure between staging and swap leaves the target as it was and
the next export finishes the job."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion import api
from medallion.errors import ExportError
from medallion.export import core
from medallion.gold.model import GOLD_TABLES
from medallion.settings import Settings
from medallion.storage import Lake

pytestmark = pytest.mark.slow
TABLES = [t.name for t in GOLD_TABLES]
Totals = dict[str, tuple[int, dict[str, Decimal]]]


def money_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_decimal(f.type)]


def gold_totals(settings: Settings) -> Totals:
    lake = Lake.from_settings(settings)
    out: Totals = {}
    for name in TABLES:
        data = lake.read("gold", name)
        assert data is not None
        sums = {c: pc.sum(data[c]).as_py() or Decimal(0) for c in money_columns(data.schema)}
        out[name] = (data.num_rows, sums)
    return out


class Warehouse:
    """Reads a destination back with its own client: rows and money sums per table."""

    def __init__(self, kind: str, url: str, settings: Settings) -> None:
        self.kind, self.url, self.settings = kind, url, settings

    def totals(self, schemas: dict[str, pa.Schema]) -> Totals:
        out: Totals = {}
        for name in TABLES:
            money = money_columns(schemas[name])
            select = ", ".join(["count(*)", *(f"sum({c})" for c in money)])
            row = self.one(f"SELECT {select} FROM {self.table(name)}")
            out[name] = (
                int(row[0]),
                {c: Decimal(v or 0) for c, v in zip(money, row[1:], strict=True)},
            )
        return out

    def table(self, name: str) -> str:
        if self.kind == "bigquery":
            project, dataset = self.url.removeprefix("bigquery://").split("/")
            return f"`{project}.{dataset}.{name}`"
        return f"gold.{name}" if self.kind == "postgresql" else name

    def one(self, sql: str) -> tuple[Any, ...]:
        if self.kind == "duckdb":
            with duckdb.connect(self.url.removeprefix("duckdb:///"), read_only=True) as con:
                row = con.execute(sql).fetchone()
        elif self.kind == "postgresql":
            with psycopg.connect(self.url) as con:
                row = con.execute(sql).fetchone()
        else:
            from medallion.export.bigquery import BigQueryDestination

            dest = BigQueryDestination(self.url, self.settings, "reader")
            try:
                row = tuple(dest.query(sql).to_pylist()[0].values())
            finally:
                dest.close()
        assert row is not None
        return tuple(row)


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "bigquery",  # at scale 0.005: the emulator inserts CSV rows one by one
        pytest.param("bigquery-0.05", marks=pytest.mark.soak),  # `make test-all`: minutes
    ]
)
def warehouse(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Settings, Warehouse]]:
    """A private copy of a built Gold and an empty destination of each kind."""
    kind = request.param.removesuffix("-0.05")
    small = request.param == "bigquery"
    built: Path = request.getfixturevalue("small_gold_home" if small else "gold_home")
    home = tmp_path / "home"
    shutil.copytree(built, home)
    endpoint = ""
    if kind == "duckdb":
        url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    elif kind == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        endpoint = request.getfixturevalue("bigquery_endpoint")
        url = f"bigquery://medallion-test/gold_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        home=home,
        checks=False,
        report_on_run=False,
        bigquery_api_endpoint=endpoint,
    )
    yield settings, Warehouse(kind, url, settings)


def test_export_is_exact_incremental_and_atomic(
    warehouse: tuple[Settings, Warehouse], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, wh = warehouse
    lake = Lake.from_settings(settings)
    schemas = {n: lake.schema("gold", n) for n in TABLES}

    first = api.export(settings, wh.url)
    assert [t.table for t in first.exported] == TABLES
    before = gold_totals(settings)
    assert wh.totals(schemas) == before

    assert api.export(settings, wh.url).exported == []  # nothing moved: nothing exported

    versions = {n: lake.version("gold", n) for n in TABLES}
    api.change_source(
        settings, api.ChangeSpec(seed=3, new_orders=40, status_updates=30, customer_moves=10)
    )
    assert api.run(settings).ok
    moved = [n for n in TABLES if lake.version("gold", n) != versions[n]]
    assert "fact_order" in moved
    assert set(moved) < set(TABLES)  # some tables did not move (dim_date, dim_location)

    def fail_on_fact_order(table: str) -> None:
        if table == "fact_order":
            raise ExportError("injected failure between staging and swap")

    monkeypatch.setattr(core, "before_swap", fail_on_fact_order)
    with pytest.raises(ExportError, match="injected"):
        api.export(settings, wh.url)
    assert wh.totals(schemas)["fact_order"] == before["fact_order"]  # still the old table
    swapped = [n for n in moved if TABLES.index(n) < TABLES.index("fact_order")]

    monkeypatch.undo()
    after = api.export(settings, wh.url)
    assert [t.table for t in after.exported] == [n for n in moved if n not in swapped]
    assert wh.totals(schemas) == gold_totals(settings)
    assert api.export(settings, wh.url).exported == []

    rows = [r for r in api.audit_log(settings) if r["job"] == api.EXPORT_JOB]
    assert {r["table_name"] for r in rows if r["status"] == "FAILED"} == {"fact_order"}
    exported = [r for r in rows if r["status"] == "SUCCESS" and r["rows_written"]]
    assert exported and all('"bytes"' in r["metrics"] for r in exported)


def test_a_run_with_export_to_exports_after_gold(gold_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(gold_home, home)
    url = f"duckdb:///{tmp_path / 'after-run.duckdb'}"
    settings = Settings(home=home, checks=False, report_on_run=False, export_to=url)
    report = api.run(settings, layers=["gold"])
    assert report.ok
    lake = Lake.from_settings(settings)
    with duckdb.connect(str(tmp_path / "after-run.duckdb"), read_only=True) as con:
        recorded = dict(
            con.execute("SELECT table_name, version FROM _medallion_exports").fetchall()
        )
    assert recorded == {n: lake.version("gold", n) for n in TABLES}
    audit = api.audit_log(settings, run_id=report.run_id)
    assert {r["table_name"] for r in audit if r["job"] == api.EXPORT_JOB} == set(TABLES)
    page = api.report(settings).read_text()  # the pipeline run's page lists the exports
    exports = page[page.index('id="exports"') :]
    assert api.report(settings).name.startswith(report.run_id)
    for name in TABLES:
        assert f"<td>{name}</td>" in exports, name
    assert "after-run.duckdb" in exports and "exported" in exports
