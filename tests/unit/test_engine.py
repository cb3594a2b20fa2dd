"""The read-only query surface behind `medallion sql` and `medallion shell`: every escape an
adversarial user tried is refused with one line, and the lake's files are never touched."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from medallion.engine import query_read_only
from medallion.errors import EngineError

TABLES = {"fact_order": pa.table({"order_id": ["a", "b"], "payment_value": [1.5, 2.5]})}


def test_a_select_over_the_lake_tables_runs() -> None:
    got = query_read_only("SELECT sum(payment_value) AS s FROM fact_order", TABLES)
    assert got.to_pylist() == [{"s": 4.0}]
    with_cte = query_read_only(
        "WITH x AS (SELECT * FROM fact_order) SELECT count(*) FROM x", TABLES
    )
    assert with_cte.num_rows == 1


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_text('/etc/shadow')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('{target}')",
        "COPY fact_order TO '{target}'",
        "COPY (SELECT 1) TO '{target}' (FORMAT parquet)",
        "ATTACH '{target}' AS other",
        "CREATE TABLE stolen AS SELECT * FROM fact_order",
        "INSERT INTO fact_order VALUES ('c', 3.0)",
        "DROP VIEW fact_order",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "INSTALL httpfs",
        "LOAD httpfs",
        "PRAGMA database_list",
        "CALL duckdb_settings()",
        "SELECT 1; COPY fact_order TO '{target}'",
        "EXPORT DATABASE '{target}'",
    ],
)
def test_every_escape_is_refused_in_one_line(statement: str, tmp_path: Path) -> None:
    target = tmp_path / "victim.parquet"
    target.write_bytes(b"precious")
    with pytest.raises(EngineError) as raised:
        query_read_only(statement.format(target=target), TABLES)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 500
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.parquet"]


def test_a_task_attempt_queries_on_one_connection_closed_when_it_ends(tmp_path: Path) -> None:
    """Opening a DuckDB connection costs more than a small query: the queries of one task
    attempt share its thread's connection, which goes (and its memory with it) when the
    attempt ends, failed or not; a failed query leaves no connection behind."""
    from medallion import engine as engines
    from medallion.runner import RunContext, Task, TaskResult, attempt_once
    from medallion.settings import Settings

    seen: list[int] = []

    def two_queries(_ctx: RunContext) -> TaskResult:
        duck = engines.default_engine()
        for _ in range(2):
            duck.query("SELECT 1 AS one")
            seen.append(id(next(iter(engines._thread_sessions().values()))._con))
        with pytest.raises(EngineError):
            duck.query("SELECT no_such_column")
        assert engines._thread_sessions() == {}
        duck.query("SELECT 1 AS one")
        raise ValueError("the task fails after its queries")

    ctx = RunContext(run_id="r", settings=Settings(home=tmp_path))
    outcome, error = attempt_once(Task("t", "gold", "t", two_queries), ctx, [], 1, may_retry=False)
    assert (
        isinstance(error, ValueError)
        and outcome.error == "ValueError: the task fails after its queries"
    )
    assert seen[0] == seen[1]
    assert engines._thread_sessions() == {}


def test_a_query_out_of_memory_is_an_engine_memory_error_in_one_line() -> None:
    """What the runner runs again alone (the memory is the process's, shared by tasks)."""
    from medallion.engine import DuckDBEngine
    from medallion.errors import EngineMemoryError

    engine = DuckDBEngine(memory_limit="20MB")
    with pytest.raises(EngineMemoryError, match=r"^query ran out of memory: Out of Memory") as e:
        engine.query("SELECT list(i) FROM range(5000000) t(i)")
    assert "\n" not in str(e.value)
    assert engine.query("SELECT 1 AS one").column("one").to_pylist() == [1]  # usable after
