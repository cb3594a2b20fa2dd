"""Incremental checks equal full checks: random appends, deletes, updates, merges and
overwrites of a child table, its parents and its upstream twin, with the checks run (on their
recorded state) after each, give every check the verdict (status, failing rows, measure) a full
evaluation gives."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.check_support import CheckLake

from medallion.checks.kinds import (
    LIVE_ROWS,
    Need,
    Severity,
    bronze_live,
    live_rows,
    not_null,
    reconcile_keys,
    reconcile_sum,
    relationship,
    row_count_drift,
    rule_check,
    unique,
)

MONEY = pa.decimal128(12, 2)
ITEMS = pa.schema(
    [("id", pa.string()), ("pid", pa.string()), ("amount", MONEY), ("is_deleted", pa.bool_())]
)
PARENTS = pa.schema([("pid", pa.string())])
UP = Need("u", "silver", "upstream", ("id", "amount", "is_deleted"))
UP_LIVE = live_rows("u")
CHECKS = [
    unique("silver", "items", ["id"]),
    not_null("silver", "items", "pid"),
    rule_check("silver", "items", "amount_non_negative", "c.amount < 0", severity=Severity.WARN),
    relationship(
        "silver", "items", "pid", parent=Need("p", "silver", "parents", ("pid",)), parent_col="pid"
    ),
    reconcile_keys("silver", "items", ["id"], upstream=UP, upstream_rows=UP_LIVE),
    reconcile_sum("silver", "items", "amount", upstream=UP, upstream_rows=UP_LIVE),
    row_count_drift("silver", "items", 0.3, LIVE_ROWS),
]
# a Bronze-like history reconciled with the upstream's live rows: its live rows (the latest
# row of a key, when an upsert) are local to a key; the key fingerprints are kept
HISTORY = pa.schema(
    [
        ("id", pa.string()),
        ("amount", MONEY),
        ("_source_updated_at", pa.timestamp("us")),
        ("_ingested_at", pa.timestamp("us")),
        ("_op", pa.string()),
    ]
)
HERE = bronze_live("t", ["id"])
HISTORY_CHECKS = [
    reconcile_keys(
        "bronze", "hist", ["id"], upstream=UP, upstream_rows=UP_LIVE, here_rows=HERE,
        fingerprinted=True,
    ),
    reconcile_sum("bronze", "hist", "amount", upstream=UP, upstream_rows=UP_LIVE, here_rows=HERE),
]  # fmt: skip

ids = st.sampled_from([f"i{n}" for n in range(5)])
pids = st.sampled_from(["p0", "p1", "p2", None])
amounts = st.sampled_from(["-1.00", "0.00", "1.25", "2.50"])
item = st.fixed_dictionaries(
    {"id": ids, "pid": pids, "amount": amounts.map(Decimal), "is_deleted": st.booleans()}
)
TABLES = st.sampled_from(["items", "upstream"])
moment = st.integers(0, 3).map(lambda n: datetime(2018, 1, 1) + timedelta(hours=n))
history_row = st.fixed_dictionaries(
    {
        "id": ids,
        "amount": amounts.map(Decimal),
        "_source_updated_at": moment,
        "_ingested_at": moment,
        "_op": st.sampled_from(["upsert", "upsert", "delete"]),
    }
)
operation = st.one_of(
    st.tuples(st.just("append"), TABLES, st.lists(item, min_size=1, max_size=3)),
    st.tuples(st.just("delete"), TABLES, ids),
    st.tuples(st.just("update"), TABLES, ids, amounts, st.booleans()),
    st.tuples(st.just("merge"), TABLES, st.lists(item, min_size=1, max_size=3)),
    st.tuples(st.just("overwrite"), TABLES, st.lists(item, max_size=4)),
    st.tuples(st.just("parent_append"), st.sampled_from(["p0", "p1", "p2"])),
    st.tuples(st.just("parent_delete"), st.sampled_from(["p0", "p1", "p2"])),
    st.tuples(st.just("history"), st.lists(history_row, min_size=1, max_size=3)),
    st.tuples(st.just("history_delete"), ids),
)


def apply(lake: CheckLake, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "history":
        lake.write("bronze", "hist", pa.Table.from_pylist(op[1], schema=HISTORY))
        return
    if kind == "history_delete":  # a row lost behind the pipeline's back
        lake.table("bronze", "hist").delete(f"id = '{op[1]}'")
        return
    if kind.startswith("parent"):
        if kind == "parent_append":
            lake.write("silver", "parents", pa.table({"pid": [op[1]]}, schema=PARENTS))
        else:
            lake.table("silver", "parents").delete(f"pid = '{op[1]}'")
        return
    table, target = op[1], lake.table("silver", op[1])
    schema = pa.schema([f for f in ITEMS if table == "items" or f.name != "pid"])
    if kind in ("append", "overwrite"):
        rows = pa.Table.from_pylist(op[2], schema=ITEMS).select(schema.names)
        lake.write("silver", table, rows, "append" if kind == "append" else "overwrite")
    elif kind == "delete":
        target.delete(f"id = '{op[2]}'")
    elif kind == "update":
        flag = "true" if op[4] else "false"
        target.update(
            updates={"amount": f"CAST('{op[3]}' AS DECIMAL(12, 2))", "is_deleted": flag},
            predicate=f"id = '{op[2]}'",
        )
    else:  # merge: upsert on id, the last source row of an id wins
        latest = {r["id"]: r for r in op[2]}
        rows = pa.Table.from_pylist(list(latest.values()), schema=ITEMS).select(schema.names)
        merger = target.merge(rows, "t.id = s.id", source_alias="s", target_alias="t")
        merger.when_matched_update_all().when_not_matched_insert_all().execute()


# `make test` runs the same sequences every time; `make test-all` explores new random ones
SOAK = os.environ.get("MEDALLION_PROPERTY_EXAMPLES")


@pytest.mark.slow
@settings(
    max_examples=int(SOAK or 12),
    derandomize=SOAK is None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    start=st.lists(item, min_size=1, max_size=4),
    operations=st.lists(operation, min_size=1, max_size=6),
)
def test_incremental_verdicts_equal_full_verdicts(
    start: list[dict[str, Any]], operations: list[tuple[Any, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as home:
        lake = CheckLake(Path(home))
        rows = pa.Table.from_pylist(start, schema=ITEMS)
        lake.write("silver", "items", rows)
        lake.write("silver", "upstream", rows.drop_columns(["pid"]))
        lake.write("silver", "parents", pa.table({"pid": ["p0", "p1"]}, schema=PARENTS))
        history = [
            {**r, "_source_updated_at": datetime(2018, 1, 1), "_ingested_at": datetime(2018, 1, 1),
             "_op": "delete" if r["is_deleted"] else "upsert"}
            for r in start
        ]  # fmt: skip
        lake.write("bronze", "hist", pa.Table.from_pylist(history, schema=HISTORY))
        checks = [*CHECKS, *HISTORY_CHECKS]
        lake.run(checks)
        for op in operations:
            apply(lake, op)
            lake.same_as_full(checks, lake.run(checks))
