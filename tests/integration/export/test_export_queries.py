"""Every named query, transpiled once with sqlglot, gives on the BigQuery emulator (over the
exported Gold) the rows DuckDB gives over the lake."""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

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


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float | Decimal | int) and isinstance(b, float | Decimal | int):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


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
