"""The declared checks' queries in Spark's dialect (``engine = 'spark'``): every one transpiles,
and a measure keeps what DuckDB computes."""

from __future__ import annotations

import pytest

from medallion.checks.declared import declared_checks

pytest.importorskip("sqlglot")  # the spark extra
from medallion.spark_engine import to_spark_sql


def test_every_declared_check_transpiles() -> None:
    for check in declared_checks(portable_keys=True):
        for sql in (check.sql, check.measure, *(t.sql for t in check.totals)):
            if sql:
                assert to_spark_sql(sql), check.full_name


def test_freshness_keeps_the_fraction_of_a_second() -> None:
    """DuckDB's epoch() is a DOUBLE with the microseconds; Spark's unix_timestamp() would
    truncate both ends to whole seconds."""
    fresh = next(c for c in declared_checks() if c.kind == "freshness")
    spark = to_spark_sql(fresh.measure).upper()
    assert "UNIX_TIMESTAMP" not in spark
    assert spark.count("(UNIX_MICROS(") == 2
    assert "/ 1000000)" in spark


def test_the_key_hash_reads_its_hex_digits_with_conv() -> None:
    """DuckDB reads ``'0x' || digits`` as a hexadecimal number, Spark does not: ``conv``."""
    keys = next(c for c in declared_checks(portable_keys=True) if c.agree)
    spark = to_spark_sql(keys.agree[1][1].sql)  # (keys, hash) pairs: the hashes
    assert "CAST(CONV(SUBSTRING(MD5(" in spark and ", 1, 15), 16, 10) AS BIGINT)" in spark
    assert "'0x'" not in spark
