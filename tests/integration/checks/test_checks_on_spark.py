"""Checks on a Spark Connect server (Sail): the same verdicts as on DuckDB, with only counts,
totals and samples crossing the wire; the key fingerprint hashes alike on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from tests.check_support import CheckLake, verdict

from medallion.audit import AuditStore
from medallion.checks import CheckRunner, Result
from medallion.checks.kinds import (
    SAMPLE_ROWS,
    Check,
    Need,
    Severity,
    key_hash,
    live_rows,
    not_null,
    reconcile_keys,
    reconcile_sum,
    relationship,
    row_count_drift,
    rule_check,
    unique,
)
from medallion.engine import DuckDBEngine, Engine
from medallion.runner import RunContext, new_run_id
from medallion.spark_engine import SparkEngine

pytestmark = pytest.mark.slow

MONEY = pa.decimal128(12, 2)
UP = Need("u", "silver", "upstream", ("id", "amount", "is_deleted"))
CHECKS = [
    unique("silver", "items", ["id"]),
    not_null("silver", "items", "pid"),
    rule_check("silver", "items", "amount_positive", "c.amount <= 0", severity=Severity.WARN),
    relationship("silver", "items", "pid", parent=Need("p", "silver", "parents", ("pid",)),
                 parent_col="pid"),
    reconcile_keys("silver", "items", ["id"], upstream=UP, upstream_rows=live_rows("u"),
                   fingerprinted=True),
    reconcile_sum("silver", "items", "amount", upstream=UP, upstream_rows=live_rows("u")),
    row_count_drift("silver", "items", 0.5),
]  # fmt: skip
ROWS = 2_000


@pytest.fixture
def spark(spark_local: str) -> Iterator[SparkEngine]:
    engine = SparkEngine(spark_local)
    yield engine
    engine.close()


@pytest.fixture
def lake(tmp_path: Path) -> CheckLake:
    """Items of which every one has no parent, no positive amount and a NULL on half of
    them: thousands of violations; an upstream that lacks one key (and its amount)."""
    lake = CheckLake(tmp_path)
    ids = [f"i{n}" for n in range(ROWS)]
    amounts = [Decimal(n % 7) for n in range(ROWS)]
    lake.write(
        "silver",
        "items",
        pa.table(
            {
                "id": ids,
                "pid": [None if n % 2 else f"gone{n}" for n in range(ROWS)],
                "amount": pa.array(amounts, MONEY),
                "is_deleted": [False] * ROWS,
            }
        ),
    )
    lake.write("silver", "parents", pa.table({"pid": ["p0"]}))
    kept = [n for n in range(ROWS) if n != 1]
    lake.write(
        "silver",
        "upstream",
        pa.table(
            {
                "id": [ids[n] for n in kept],
                "amount": pa.array([amounts[n] for n in kept], MONEY),
                "is_deleted": [False] * len(kept),
            }
        ),
    )
    return lake


def evaluate(lake: CheckLake, engine: Engine, checks: list[Check]) -> dict[str, Result]:
    ctx = RunContext(new_run_id(), lake.settings, job="test", full_checks=True)
    with AuditStore(lake.settings.audit_location) as audit:
        runner = CheckRunner(ctx, engine)
        return {c.full_name: runner.evaluate(c, audit) for c in checks}


def test_spark_gives_duckdb_verdicts_with_only_counts_and_samples_over_the_wire(
    lake: CheckLake, spark: SparkEngine
) -> None:
    duck = evaluate(lake, DuckDBEngine(), CHECKS)
    got = evaluate(lake, spark, CHECKS)
    assert {n: verdict(r) for n, r in got.items()} == {n: verdict(r) for n, r in duck.items()}
    failing = {n: r.failing_rows for n, r in got.items() if r.failing_rows}
    assert failing == {
        CHECKS[1].full_name: ROWS // 2,  # NULL parent
        CHECKS[2].full_name: -(-ROWS // 7),  # amount 0
        CHECKS[3].full_name: ROWS // 2,  # parent gone
        CHECKS[4].full_name: 1,  # fingerprints differ: the query names the key
        CHECKS[5].full_name: 1,
    }
    assert all(len(r.sample) == min(SAMPLE_ROWS, r.failing_rows) for r in got.values())
    assert spark.wire.answers[0] <= SAMPLE_ROWS, spark.wire.answers
    assert spark.wire.uploads[0] <= 1, spark.wire.uploads  # the one-row table of totals


def test_agreeing_fingerprints_pass_a_full_evaluation_without_the_query(
    lake: CheckLake, spark: SparkEngine
) -> None:
    missing = {"id": ["i1"], "amount": pa.array([Decimal(1)], MONEY), "is_deleted": [False]}
    lake.write("silver", "upstream", pa.table(missing))
    keys = CHECKS[4]
    for engine in (DuckDBEngine(), spark):
        result = evaluate(lake, engine, [keys])[keys.full_name]
        assert (result.failing_rows, result.details) == (0, "the key fingerprints agree")


def test_the_key_hash_is_the_same_on_both_engines(spark: SparkEngine) -> None:
    keys = pa.table(
        {
            "a": ["abc", "héllo", None, "x:y", "", "1:a", None],
            "b": [1, None, 3, -4, 2**40, None, None],
        }
    )
    sql = (
        f"SELECT a, b, {key_hash(['a', 'b'])} AS ab, {key_hash(['a'])} AS one, "
        f"sum(CAST({key_hash(['a', 'b'])} AS HUGEINT)) OVER () AS total FROM k ORDER BY a, b"
    )
    duck, got = DuckDBEngine().query(sql, {"k": keys}), spark.query(sql, {"k": keys})
    assert got.to_pylist() == duck.to_pylist()
    hashes = duck["ab"].to_pylist()
    assert len(set(hashes)) == len(hashes) and all(0 <= h < 2**60 for h in hashes)
