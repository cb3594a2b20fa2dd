"""Every named query, transpiled once with sqlglot, gives on the BigQuery emulator and on
PostgreSQL (over the exported Gold) the rows DuckDB gives over the lake."""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from medallion import api
from medallion.export.bigquery import BigQueryDestination
from medallion.export.queries import warehouse_sql
from medallion.gold.model import GOLD_TABLES
from medallion.gold.queries import QUERIES
from medallion.settings import Settings

pytestmark = pytest.mark.slow
PROJECT = "medallion-test"


@pytest.fixture(scope="module")
def exported(
    small_gold_home: Path, bigquery_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, BigQueryDestination]]:
    home = tmp_path_factory.mktemp("queries") / "home"
    shutil.copytree(small_gold_home, home)
    settings = Settings(
        home=home, checks=False, report_on_run=False, bigquery_api_endpoint=bigquery_endpoint
    )
    dataset = f"q_{uuid.uuid4().hex[:8]}"
    url = f"bigquery://{PROJECT}/{dataset}"
    needed = [t.name for t in GOLD_TABLES if any(t.name in q.sql for q in QUERIES)]
    api.export(settings, url, needed)  # only what the queries read: the emulator loads slowly
    dest = BigQueryDestination(url, settings, "reader")
    try:
        yield settings, dest
    finally:
        dest.close()


def same(a: Any, b: Any, abs_tol: float = 1e-9) -> bool:
    if isinstance(a, float | Decimal | int) and isinstance(b, float | Decimal | int):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=abs_tol)
    return bool(a == b)


# DuckDB's avg() of a DECIMAL is a DOUBLE, PostgreSQL's an exact numeric: a value exactly half
# way (41.025) rounds to 41.02 in DuckDB (41.02499...) and 41.03 in PostgreSQL. One unit in the
# last rounded place (0.01) is the allowed difference there; counts and sums stay exact.
PG_ROUNDING = 0.01 + 1e-9


@pytest.mark.parametrize("name", [q.name for q in QUERIES])
def test_a_named_query_answers_the_same_on_bigquery(
    name: str, exported: tuple[Settings, BigQueryDestination]
) -> None:
    settings, dest = exported
    expected = api.query(settings, name)
    got = dest.query(warehouse_sql(name, "bigquery", dest.dataset, dest.project))
    assert got.column_names == expected.column_names
    want_rows, got_rows = expected.to_pylist(), got.to_pylist()
    assert len(got_rows) == len(want_rows) > 0
    for want, have in zip(want_rows, got_rows, strict=True):
        assert all(same(want[c], have[c]) for c in want), (want, have)


@pytest.fixture(scope="module")
def exported_pg(
    gold_home: Path, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str]]:
    home = tmp_path_factory.mktemp("queries-pg") / "home"
    shutil.copytree(gold_home, home)
    settings = Settings(home=home, checks=False, report_on_run=False)
    name = f"q_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        api.export(settings, url)
        yield settings, url
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.parametrize("name", [q.name for q in QUERIES])
def test_a_named_query_answers_the_same_on_postgresql(
    name: str, exported_pg: tuple[Settings, str]
) -> None:
    settings, url = exported_pg
    expected = api.query(settings, name)
    with psycopg.connect(url, options="-c TimeZone=UTC") as con:
        cur = con.execute(warehouse_sql(name, "postgresql", "gold"))
        columns = [d.name for d in cur.description or ()]
        got_rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    assert columns == expected.column_names
    want_rows = expected.to_pylist()
    assert len(got_rows) == len(want_rows) > 0
    for want, have in zip(want_rows, got_rows, strict=True):
        tolerance = {c: PG_ROUNDING if isinstance(want[c], float) else 1e-9 for c in want}
        assert all(same(want[c], have[c], tolerance[c]) for c in want), (want, have)
