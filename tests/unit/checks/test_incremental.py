"""Incremental checks on small hand-written tables: what a change touched is checked, what did
not move is not read, and every verdict equals the full evaluation's."""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.check_support import CheckLake

from medallion.checks.kinds import (
    LIVE_ROWS,
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
from medallion.engine import default_engine, read_matching
from medallion.storage import DeltaHandle, Lake

MONEY = pa.decimal128(12, 2)
ITEMS = pa.schema(
    [("id", pa.string()), ("pid", pa.string()), ("amount", MONEY), ("is_deleted", pa.bool_())]
)
PARENTS = pa.schema([("pid", pa.string())])
UPSTREAM = pa.schema([("id", pa.string()), ("amount", MONEY), ("is_deleted", pa.bool_())])

PARENT = Need("p", "silver", "parents", ("pid",))
UP = Need("u", "silver", "upstream", ("id", "amount", "is_deleted"))
UP_LIVE = live_rows("u")
CHECKS = [
    unique("silver", "items", ["id"]),
    not_null("silver", "items", "pid"),
    rule_check("silver", "items", "amount_non_negative", "c.amount < 0", severity=Severity.WARN),
    relationship("silver", "items", "pid", parent=PARENT, parent_col="pid"),
    reconcile_keys("silver", "items", ["id"], upstream=UP, upstream_rows=UP_LIVE),
    reconcile_sum("silver", "items", "amount", upstream=UP, upstream_rows=UP_LIVE),
    row_count_drift("silver", "items", 0.5, LIVE_ROWS),
]
UNIQUE, NOT_NULL, RULE, RELATIONSHIP, KEYS, SUM, DRIFT = (c.full_name for c in CHECKS)


def items(*rows: tuple[str, str | None, str, bool]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"id": i, "pid": p, "amount": Decimal(a), "is_deleted": d} for i, p, a, d in rows],
        schema=ITEMS,
    )


def upstream(*rows: tuple[str, str, bool]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"id": i, "amount": Decimal(a), "is_deleted": d} for i, a, d in rows], schema=UPSTREAM
    )


def parents(*keys: str) -> pa.Table:
    return pa.table({"pid": list(keys)}, schema=PARENTS)


@pytest.fixture
def lake(tmp_path: Path) -> CheckLake:
    """Ten live items of two parents, their upstream twin, checked once (in full)."""
    lake = CheckLake(tmp_path)
    rows = [(f"i{n}", f"p{n % 2}", f"{n}.50", False) for n in range(10)]
    lake.write("silver", "items", items(*rows))
    lake.write("silver", "parents", parents("p0", "p1", "p2"))
    lake.write("silver", "upstream", upstream(*((i, a, d) for i, _, a, d in rows)))
    first = lake.run(CHECKS)
    assert {first.mode(c.full_name) for c in CHECKS} == {"full"}
    assert {r.status.value for r in first.results.values()} == {"pass"}
    return lake


def no_whole_table(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("an incremental check read a whole table")


def only_matching_rows(original: Any) -> Any:
    """``DeltaHandle.relation`` for :func:`medallion.engine.read_matching` alone, which reads
    from the scan only the rows of the keys asked for; any other caller reads a whole table."""

    def relation(*args: object, **kwargs: object) -> Any:
        if sys._getframe(1).f_code is not read_matching.__code__:
            no_whole_table()
        return original(*args, **kwargs)

    return relation


def test_nothing_moved_nothing_read(lake: CheckLake) -> None:
    step = lake.run(CHECKS)
    assert step.rows_read == 0
    assert {step.mode(c.full_name) for c in CHECKS} == {"unchanged"}
    notes = {re.split("[,;]", r.details)[0] for r in step.results.values()}
    assert notes == {"unchanged since silver.items v0"}
    lake.same_as_full(CHECKS, step)


def test_a_duplicate_key_appended_fails_uniqueness(lake: CheckLake) -> None:
    lake.write("silver", "items", items(("i3", "p1", "1.00", False)))
    step = lake.run(CHECKS)
    assert step.mode(UNIQUE) == "incremental"
    assert (step[UNIQUE].status.value, step[UNIQUE].failing_rows) == ("fail", 1)
    assert step[UNIQUE].sample == [{"id": "i3", "copies": 2}]
    assert step[SUM].status.value == "fail"  # one more amount here than upstream
    lake.same_as_full(CHECKS, step)


def test_rows_judged_alone_are_judged_on_the_rows_added(
    lake: CheckLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.write("silver", "items", items(("n1", None, "-1.00", False), ("n2", "p9", "2.00", False)))
    lake.write("silver", "upstream", upstream(("n1", "-1.00", False), ("n2", "2.00", False)))
    monkeypatch.setattr(DeltaHandle, "read", no_whole_table)
    # (what the engine reads): only the rows of the keys a change touched
    monkeypatch.setattr(DeltaHandle, "relation", only_matching_rows(DeltaHandle.relation))
    step = lake.run(CHECKS)
    for name in (NOT_NULL, RULE, RELATIONSHIP, KEYS, SUM, DRIFT):
        assert step.mode(name) == "incremental", name
    assert (step[NOT_NULL].status.value, step[NOT_NULL].failing_rows) == ("fail", 1)
    assert (step[RULE].status.value, step[RULE].failing_rows) == ("warn", 1)
    assert step[RELATIONSHIP].sample[0]["pid"] == "p9"  # a parent that never existed
    assert step[KEYS].status.value == step[SUM].status.value == "pass"
    assert step.rows_read < 23  # the change and the keys it touched, not the tables
    monkeypatch.undo()
    lake.same_as_full(CHECKS, step)


def test_a_failing_count_follows_rows_fixed_and_removed(lake: CheckLake) -> None:
    lake.write("silver", "items", items(("n1", None, "1", False), ("n2", None, "1", False)))
    assert lake.run(CHECKS)[NOT_NULL].failing_rows == 2
    lake.table("silver", "items").update(updates={"pid": "'p0'"}, predicate="id = 'n1'")
    step = lake.run(CHECKS)
    assert (step.mode(NOT_NULL), step[NOT_NULL].failing_rows) == ("incremental", 1)
    lake.same_as_full(CHECKS, step)
    lake.table("silver", "items").delete("id = 'n2'")
    step = lake.run(CHECKS)
    assert (step.mode(NOT_NULL), step[NOT_NULL].status.value) == ("incremental", "pass")
    lake.same_as_full(CHECKS, step)


def test_a_parent_deleted_behind_the_pipeline_breaks_its_children(lake: CheckLake) -> None:
    lake.table("silver", "parents").delete("pid = 'p1'")
    step = lake.run(CHECKS)
    assert step.mode(RELATIONSHIP) == "incremental"
    assert (step[RELATIONSHIP].status.value, step[RELATIONSHIP].failing_rows) == ("fail", 5)
    assert step.mode(UNIQUE) == "unchanged"  # reads only items, which did not move
    lake.same_as_full(CHECKS, step)


def test_a_parent_gone_unused_breaks_nothing(lake: CheckLake) -> None:
    lake.table("silver", "parents").delete("pid = 'p2'")
    step = lake.run(CHECKS)
    assert (step.mode(RELATIONSHIP), step[RELATIONSHIP].status.value) == ("incremental", "pass")


def test_a_row_deleted_behind_the_pipeline_fails_reconciliation(lake: CheckLake) -> None:
    lake.table("silver", "items").delete("id = 'i4'")
    step = lake.run(CHECKS)
    assert step.mode(KEYS) == step.mode(SUM) == "incremental"
    assert step[KEYS].sample == [{"id": "i4", "problem": "missing here"}]
    assert step[SUM].sample[0]["difference"] == Decimal("-4.50")
    lake.same_as_full(CHECKS, step)


def test_money_off_by_one_cent_fails_the_sum(lake: CheckLake) -> None:
    lake.table("silver", "upstream").update(
        updates={"amount": "amount + 0.01"}, predicate="id = 'i7'"
    )
    step = lake.run(CHECKS)
    assert step.mode(SUM) == "incremental"
    assert step[SUM].status.value == "fail"
    assert step[SUM].sample[0]["difference"] == Decimal("-0.01")
    assert step[KEYS].status.value == "pass"  # the same keys on both sides
    lake.same_as_full(CHECKS, step)


def test_drift_is_counted_from_the_change(lake: CheckLake) -> None:
    lake.table("silver", "items").update(updates={"is_deleted": "true"}, predicate="id < 'i6'")
    step = lake.run(CHECKS)
    assert step.mode(DRIFT) == "incremental"
    assert (step[DRIFT].status.value, step[DRIFT].observed) == ("warn", 4.0)
    assert "10 -> 4 rows" in step[DRIFT].details
    lake.same_as_full(CHECKS, step)


def test_a_row_count_comes_from_the_log_without_a_change_feed(tmp_path: Path) -> None:
    lake = CheckLake(tmp_path)
    drift = row_count_drift("gold", "facts", 0.5)
    lake.write("gold", "facts", parents("a", "b"), cdf=False)
    lake.run([drift])
    lake.write("gold", "facts", parents("c", "d", "e", "f"), cdf=False)
    step = lake.run([drift])
    assert (step.mode(drift.full_name), step.rows_read) == ("incremental", 0)
    assert (step[drift.full_name].status.value, step[drift.full_name].observed) == ("warn", 6.0)


def test_an_overwrite_is_checked_in_full(lake: CheckLake) -> None:
    whole = lake.table("silver", "items").to_pyarrow_table()
    lake.write("silver", "items", whole.slice(0, 4), mode="overwrite")
    step = lake.run(CHECKS)
    assert {step.mode(n) for n in (UNIQUE, NOT_NULL, KEYS, RELATIONSHIP)} == {"full"}
    assert step[KEYS].failing_rows == 6
    assert step[DRIFT].status.value == "warn"
    lake.same_as_full(CHECKS, step)


def test_a_merge_without_change_feed_is_checked_in_full(tmp_path: Path) -> None:
    lake = CheckLake(tmp_path)
    check = unique("gold", "dim", ["pid"])
    lake.write("gold", "dim", parents("a", "b"), cdf=False)
    lake.run([check])
    lake.write("gold", "dim", parents("c"), cdf=False)  # an append needs no change feed
    assert lake.run([check]).mode(check.full_name) == "incremental"
    lake.table("gold", "dim").merge(
        parents("a", "x"), "t.pid = s.pid", source_alias="s", target_alias="t"
    ).when_not_matched_insert_all().execute()
    step = lake.run([check])
    assert (step.mode(check.full_name), step[check.full_name].status.value) == ("full", "pass")


def test_a_key_check_that_failed_is_evaluated_in_full_until_it_passes(lake: CheckLake) -> None:
    lake.write("silver", "items", items(("i3", "p1", "0", True)))
    assert lake.run(CHECKS)[UNIQUE].status.value == "fail"
    lake.table("silver", "items").delete("id = 'i3' AND is_deleted")
    step = lake.run(CHECKS)
    assert (step.mode(UNIQUE), step[UNIQUE].status.value) == ("full", "pass")
    assert lake.run(CHECKS).mode(UNIQUE) == "unchanged"


def test_a_failure_stands_while_nothing_moves(lake: CheckLake) -> None:
    lake.write("silver", "items", items(("i3", "p1", "0", True)))
    lake.run(CHECKS)
    step = lake.run(CHECKS)
    assert step.mode(UNIQUE) == "unchanged"
    assert (step[UNIQUE].status.value, step[UNIQUE].failing_rows) == ("fail", 1)
    assert step[DRIFT].status.value == "pass"  # drift compares with the last run: no change


def test_every_nth_evaluation_on_what_moved_is_full_and_a_run_with_no_change_never(
    tmp_path: Path,
) -> None:
    """With ``check_full_every = 3`` the third evaluation on what moved since the last full
    one is full; runs in which nothing moved stand unchanged, however many, and do not count
    (a full pass on the same versions would read every row to find the same result)."""
    lake = CheckLake(tmp_path, full_every=3)
    check = unique("silver", "x", ["pid"])
    lake.write("silver", "x", parents("a"))

    def run() -> str:
        return lake.run([check]).mode(check.full_name)

    modes = [run() for _ in range(5)]
    for key in "bcdef":
        lake.write("silver", "x", parents(key))
        modes += [run(), run()]
    assert modes == ["full", *["unchanged"] * 4,
                     "incremental", "unchanged", "incremental", "unchanged", "full", "unchanged",
                     "incremental", "unchanged", "incremental", "unchanged"]  # fmt: skip
    assert lake.run([check], full=True).mode(check.full_name) == "full"


def test_a_changed_definition_is_evaluated_in_full(lake: CheckLake) -> None:
    changed: Check = replace(CHECKS[0], sql=CHECKS[0].sql.replace("> 1", "> 2"))
    assert lake.run([changed]).mode(UNIQUE) == "full"
    assert lake.run([changed]).mode(UNIQUE) == "unchanged"


def test_a_table_not_written_keeps_no_state(tmp_path: Path) -> None:
    lake = CheckLake(tmp_path)
    check = not_null("silver", "orders", "order_id")
    assert lake.run([check]).mode(check.full_name) == "full"
    assert lake.run([check]).mode(check.full_name) == "full"  # its inputs may fill meanwhile


def test_the_feed_knows_what_a_table_gained_and_lost(tmp_path: Path) -> None:
    lake = CheckLake(tmp_path)
    lake.write("silver", "x", parents("a", "b"))
    handle = Lake.from_settings(lake.settings).table("silver", "x")
    assert handle.feed(None).added.num_rows == 2  # type: ignore[union-attr]
    lake.table("silver", "x").update(updates={"pid": "'c'"}, predicate="pid = 'a'")
    lake.table("silver", "x").delete("pid = 'b'")
    feed = Lake.from_settings(lake.settings).table("silver", "x").feed(0)
    assert feed is not None and (feed.since, feed.version) == (0, 2)
    assert feed.added["pid"].to_pylist() == ["c"]
    assert sorted(feed.removed["pid"].to_pylist()) == ["a", "b"]
    lake.write("silver", "x", parents("z"), mode="overwrite")
    assert Lake.from_settings(lake.settings).table("silver", "x").feed(2) is None


def test_a_table_created_anew_at_the_same_version_is_evaluated_in_full(tmp_path: Path) -> None:
    lake = CheckLake(tmp_path)
    check = unique("silver", "x", ["pid"])
    lake.write("silver", "x", parents("a", "b"))
    lake.run([check])
    shutil.rmtree(lake.uri("silver", "x"))
    lake.write("silver", "x", parents("a", "a"))  # version 0 again, another table
    step = lake.run([check])
    assert (step.mode(check.full_name), step[check.full_name].status.value) == ("full", "fail")


def test_a_compaction_moves_no_check(lake: CheckLake) -> None:
    for n in range(3):  # small files to compact
        lake.write("silver", "items", items((f"x{n}", "p0", "1", True)))
    lake.run(CHECKS)
    items_table = Lake.from_settings(lake.settings).table("silver", "items")
    items_table.compact(["id"], {"step": "maintain"})
    step = lake.run(CHECKS)
    assert {step.mode(c.full_name) for c in CHECKS} == {"unchanged"}
    lake.table("silver", "items").delete("id = 'x1'")  # a change after the compaction
    step = lake.run(CHECKS)
    assert step.mode(UNIQUE) == "incremental"
    lake.same_as_full(CHECKS, step)


def test_many_violations_come_back_as_their_count_and_a_sample(lake: CheckLake) -> None:
    lake.write("silver", "items", items(*((f"n{n}", None, "1", False) for n in range(500))))
    step = lake.run(CHECKS)
    assert step[NOT_NULL].failing_rows == 500
    assert len(step[NOT_NULL].sample) == SAMPLE_ROWS
    assert {r["id"] for r in step[NOT_NULL].sample} <= {f"n{n}" for n in range(500)}


def test_a_state_with_fingerprints_of_another_hash_is_not_built_on(tmp_path: Path) -> None:
    """Fingerprints recorded with another key hash (DuckDB's ``hash``, before the portable
    one) compare with nothing now: the check's definition changed, it is evaluated in full."""
    lake = CheckLake(tmp_path)
    lake.write("silver", "items", items(("i1", "p0", "1", False)))
    lake.write("silver", "upstream", upstream(("i1", "1", False)))
    now = reconcile_keys(
        "silver", "items", ["id"], upstream=UP, upstream_rows=UP_LIVE, fingerprinted=True
    )
    hashed = key_hash(["id"])
    before = replace(
        now,
        agree=tuple(
            tuple(replace(t, expr=t.expr.replace(hashed, "hash(id)")) for t in pair)
            for pair in now.agree
        ),  # type: ignore[arg-type]
    )
    assert lake.run([before]).mode(now.full_name) == "full"
    assert lake.run([before]).mode(now.full_name) == "unchanged"
    step = lake.run([now])
    assert step.mode(now.full_name) == "full"
    assert step[now.full_name].details == "the key fingerprints agree"


def test_fingerprints_kept_under_one_key_hash_are_not_built_on_under_another(
    tmp_path: Path,
) -> None:
    """On the DuckDB engine a fingerprint sums DuckDB's own hash (a tenth of the md5's cost),
    whose text names the DuckDB version. A state kept under the portable hash (the lake was
    checked on Spark) or under another DuckDB version is evaluated in full, then agrees and
    is built on."""
    lake = CheckLake(tmp_path)
    lake.write("silver", "items", items(("i1", "p0", "1", False)))
    lake.write("silver", "upstream", upstream(("i1", "1", False)))
    portable, duck = (
        reconcile_keys(
            "silver", "items", ["id"], upstream=UP, upstream_rows=UP_LIVE, fingerprinted=True,
            portable=p,
        )
        for p in (True, False)
    )  # fmt: skip
    assert "md5(" in key_hash(["id"]) and "md5(" not in key_hash(["id"], portable=False)
    assert re.fullmatch(
        r"hash\(CAST\(id AS VARCHAR\)\) /\* duckdb \d+\.\d+\.\d+\S* \*/",
        key_hash(["id"], portable=False),
    )
    assert lake.run([portable]).mode(KEYS) == "full"
    lake.write("silver", "items", items(("i2", "p0", "2", False)))
    lake.write("silver", "upstream", upstream(("i2", "2", False)))
    step = lake.run([duck])
    assert (step.mode(KEYS), step[KEYS].details) == ("full", "the key fingerprints agree")
    lake.write("silver", "items", items(("i3", "p0", "3", False)))
    lake.write("silver", "upstream", upstream(("i3", "3", False)))
    step = lake.run([duck])
    assert step.mode(KEYS) == "incremental" and step[KEYS].failing_rows == 0
    upgraded = replace(
        duck,
        agree=tuple(
            tuple(replace(t, expr=re.sub(r"duckdb \S+ ", "duckdb 99.0.0 ", t.expr)) for t in pair)
            for pair in duck.agree
        ),  # type: ignore[arg-type]
    )
    assert upgraded.agree != duck.agree
    assert lake.run([upgraded]).mode(KEYS) == "full"


def test_duckdbs_key_hash_is_one_of_the_keys_text() -> None:
    """A key an INTEGER on one side and a BIGINT on the other (DuckDB hashes a negative
    one differently by width) hashes alike; two columns never hash as one run of text."""
    engine = default_engine()
    sql = f"SELECT {key_hash(['a', 'b'], portable=False)} AS h FROM k"
    narrow = pa.table({"a": pa.array([-4, 7], pa.int32()), "b": ["x", "yz"]})
    wide = pa.table({"a": pa.array([-4, 7], pa.int64()), "b": ["x", "yz"]})
    assert engine.query(sql, {"k": narrow}).equals(engine.query(sql, {"k": wide}))
    split = pa.table({"a": ["1", "12"], "b": ["23", "3"]})
    assert len(set(engine.query(sql, {"k": split})["h"].to_pylist())) == 2
