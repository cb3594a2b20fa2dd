"""Check tasks: thresholds from the settings, and the tables each check task waits for."""

from __future__ import annotations

from pathlib import Path

import pytest

from medallion.catalog import SOURCE_TABLES
from medallion.checks.tasks import checks_by_table, with_checks
from medallion.errors import ConfigError
from medallion.gold.layer import make_tasks
from medallion.settings import Settings


def test_a_per_table_threshold_applies_to_that_table_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, drift_thresholds={"silver.orders": 0.2})
    grouped = checks_by_table(settings)
    [orders] = [c for c in grouped["silver", "orders"] if c.kind == "row_count_drift"]
    [items] = [c for c in grouped["silver", "order_items"] if c.kind == "row_count_drift"]
    assert (orders.threshold, items.threshold) == (0.2, 0.5)


@pytest.mark.parametrize("table", ["silver.order", "gold.dim_customer", "orders"])
def test_a_threshold_for_a_table_without_drift_check_is_refused(tmp_path: Path, table: str) -> None:
    settings = Settings(home=tmp_path, drift_thresholds={table: 0.2})
    with pytest.raises(
        ConfigError, match=f"no row-count drift check on {table}; valid: .*silver.orders"
    ):
        checks_by_table(settings)


def test_a_check_task_waits_for_every_table_its_checks_read(tmp_path: Path) -> None:
    tasks = {t.name: t for t in with_checks(make_tasks(SOURCE_TABLES), Settings(home=tmp_path))}
    upstream = tasks["check.gold.fact_payment"].upstream
    assert upstream[0] == "gold.fact_payment"
    assert {"gold.dim_date", "gold.dim_customer"} <= set(upstream)  # date and dimension keys
