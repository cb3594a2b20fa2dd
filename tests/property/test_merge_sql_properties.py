"""A MERGE gives what delta-rs' MERGE gives, row for row and count for count, for random
tables, change sets and the plans the pipeline uses (Silver's upsert with tombstones, Gold's
diff): the Spark engine's copy-on-write (the table's new content computed by ``merged_sql``,
run here on DuckDB, the same text Spark runs after transpiling), and the in-process engine's,
which appends the inserts when no source key is stored."""

from __future__ import annotations

import json
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from medallion.engine import DuckDBEngine
from medallion.merge_sql import merge_counts_sql, merged_sql
from medallion.storage import Lake, MergePlan

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.string()), ("ts", pa.int32())])
NEWER = "(s.ts > t.ts OR (s.ts = t.ts AND s.flag AND NOT t.flag))"
PLANS = {
    # Silver: newer rows win, a tombstone only flips the flag, an insert never a tombstone
    "upsert": MergePlan(
        keys=("k",),
        matched_updates=(
            (f"{NEWER} AND s.gone", {"ts": "s.ts", "flag": "true"}),
            (f"{NEWER} AND NOT s.gone", {"k": "s.k", "v": "s.v", "ts": "s.ts", "flag": "s.flag"}),
        ),
        not_matched_inserts=(
            ("NOT s.gone", {"k": "s.k", "v": "s.v", "ts": "s.ts", "flag": "s.flag"}),
        ),
    ),
    # Gold: a diff of the new rows against the stored ones, deletes flagged
    "diff": MergePlan(
        keys=("k",),
        matched_deletes=("s.gone",),
        matched_updates=(("NOT s.gone", {"k": "s.k", "v": "s.v", "ts": "s.ts", "flag": "s.flag"}),),
        not_matched_inserts=(
            ("NOT s.gone", {"k": "s.k", "v": "s.v", "ts": "s.ts", "flag": "s.flag"}),
        ),
    ),
    # unconditional clauses, a NULL condition (v NULL) and a column no clause assigns
    "bare": MergePlan(
        keys=("k",),
        matched_deletes=("s.v = 'x'",),
        matched_updates=((None, {"ts": "s.ts"}),),
        not_matched_inserts=((None, {"k": "s.k", "v": "s.v"}),),
    ),
}
TARGET = SCHEMA.append(pa.field("flag", pa.bool_()))
SOURCE = TARGET.append(pa.field("gone", pa.bool_()))

keys = st.lists(st.integers(0, 12), unique=True, max_size=10)
values = st.sampled_from(["x", "y", None])


@st.composite
def rows(draw: Any, schema: pa.Schema) -> pa.Table:
    found = []
    for k in draw(keys):
        row = {
            "k": k,
            "v": draw(values),
            "ts": draw(st.integers(0, 3)),
            "flag": draw(st.booleans()),
        }
        if "gone" in schema.names:
            row["gone"] = draw(st.booleans())
        found.append(row)
    return pa.Table.from_pylist(found, schema=schema)


def _sorted(table: pa.Table) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in table.to_pylist())


@settings(max_examples=80, deadline=None)
@given(
    plan=st.sampled_from(sorted(PLANS)),
    target=rows(TARGET),
    source=rows(SOURCE),
)
def test_merged_sql_equals_delta_rs_merge(plan: str, target: pa.Table, source: pa.Table) -> None:
    merge = PLANS[plan]
    duck = DuckDBEngine()
    inputs = {"t": target, "s": source}
    expected_rows, expected_counts = _delta_rs_merge(target, source, merge)
    got = duck.query(merged_sql(merge, TARGET), inputs)
    assert got.schema == TARGET
    assert _sorted(got) == expected_rows
    counts = duck.query(merge_counts_sql(merge), inputs).to_pylist()[0]
    assert counts == expected_counts


def _delta_rs_merge(
    target: pa.Table, source: pa.Table, plan: MergePlan
) -> tuple[list[str], dict[str, int]]:
    with TemporaryDirectory() as folder:
        handle = Lake(str(Path(folder))).table("t", "x")
        handle.overwrite(target, transactions={}, metadata={})
        result = handle.merge(source, plan, transactions={}, metadata={})
        stored = handle.read()
        assert stored is not None
        counts = {
            "source_rows": result.source_rows,
            "deleted": result.deleted,
            "updated": result.updated,
            "inserted": result.inserted,
        }
        return _sorted(stored.cast(TARGET)), counts


@settings(max_examples=60, deadline=None)
@given(
    plan=st.sampled_from(sorted(PLANS)),
    target=rows(TARGET),
    source=rows(SOURCE),
    new_keys=st.booleans(),
)
def test_the_in_process_merge_gives_what_delta_rs_merge_gives(
    plan: str, target: pa.Table, source: pa.Table, new_keys: bool
) -> None:
    """DuckDB's MERGE (delta-rs', or an append of the inserts when no source key is stored)
    leaves the rows and reports the counts delta-rs' MERGE does, and records the transaction;
    a source of new keys only rewrites no file."""
    merge = PLANS[plan]
    if new_keys:  # keys the target cannot hold
        source = source.set_column(0, "k", pa.compute.add(source["k"], 100))
    expected_rows, expected_counts = _delta_rs_merge(target, source, merge)
    with TemporaryDirectory() as folder:
        handle = Lake(str(Path(folder))).table("t", "x")
        handle.overwrite(target, transactions={}, metadata={})
        result = DuckDBEngine().merge(handle, source, merge, transactions={"a": 1}, metadata={})
        stored = handle.read()
        assert stored is not None and _sorted(stored.cast(TARGET)) == expected_rows
        counts = {k: getattr(result, k) for k in expected_counts}
        assert counts == expected_counts
        assert handle.app_version("a") == 1 and handle.version == result.version
        if new_keys:  # an append (an empty one when nothing is inserted), not a MERGE
            assert result.files_removed == 0
            commit = handle.data_commit()
            assert commit is not None and commit["operation"] == "WRITE"
