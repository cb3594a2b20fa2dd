"""The Spark engine's transpilation and Arrow hand-over, without a server."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medallion.errors import EngineError
from medallion.settings import Settings
from medallion.spark_engine import _plain_schema, to_spark_sql


def test_duckdb_sql_becomes_spark_sql() -> None:
    got = to_spark_sql("SELECT x::HUGEINT AS s, regexp_full_match(z, '[0-9]{5}') AS ok FROM t")
    assert got == (
        "SELECT CAST(x AS DECIMAL(38, 0)) AS s, z RLIKE CONCAT('^(?:', '[0-9]{5}', ')$') AS ok "
        "FROM t"
    )


def test_epoch_us_becomes_unix_micros_with_its_argument_rewritten() -> None:
    got = to_spark_sql("SELECT epoch_us(CAST(t AS TIMESTAMP)) AS us FROM x")
    assert got == "SELECT UNIX_MICROS(CAST(t AS TIMESTAMP_NTZ)) AS us FROM x"


def test_a_materialized_cte_is_a_plain_one() -> None:
    got = to_spark_sql("WITH h AS MATERIALIZED (SELECT 1 AS a) SELECT * FROM h, h AS g")
    assert got == "WITH h AS (SELECT 1 AS a) SELECT * FROM h, h AS g"


def test_parameters_stay_named() -> None:
    assert to_spark_sql("SELECT * FROM t WHERE a = $since") == "SELECT * FROM t WHERE a = :since"


def test_unreadable_sql_is_one_line() -> None:
    with pytest.raises(EngineError, match=r"^query cannot be read: ") as caught:
        to_spark_sql("SELECT FROM WHERE (((")
    assert "\n" not in str(caught.value)


def test_uploads_use_plain_arrow_types() -> None:
    schema = pa.schema(
        [
            ("s", pa.string_view()),
            ("l", pa.large_list(pa.large_string())),
            ("r", pa.struct([("b", pa.large_binary())])),
            ("n", pa.int32()),
        ]
    )
    assert _plain_schema(schema) == pa.schema(
        [
            ("s", pa.string()),
            ("l", pa.list_(pa.string())),
            ("r", pa.struct([("b", pa.binary())])),
            ("n", pa.int32()),
        ]
    )


def test_the_connect_url_carries_tls_and_token() -> None:
    plain = Settings(spark_remote="sc://spark.example:443")
    assert plain.spark_connect_url == "sc://spark.example:443"
    secured = Settings(spark_remote="sc://spark.example:443", spark_token="t0k", spark_tls=True)
    assert secured.spark_connect_url == "sc://spark.example:443/;use_ssl=true;token=t0k"
    assert "t0k" not in str(secured.redacted())
