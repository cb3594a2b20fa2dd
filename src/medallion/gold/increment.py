"""Incremental Gold: which keys a change touched, and writing only the rows that differ.

A table declared with a :class:`ByKey` is rebuilt only for the key values its inputs' changes
touched (read from their change data feeds). Every Gold table is then written as the
difference between what it holds and what its build produced (one MERGE by grain: inserts,
updates, deletes), so its own change feed holds only what really changed and the tables and
checks reading it downstream do work proportional to the change. ``--full-refresh``
rebuilds every table whole and is the reference the incremental result must equal.

The difference is computed where the engine runs, against the table's lazy scan, and written
by the engine: only its counts (and the keys a change touched) come to this process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import TableRef
from medallion.engine import Engine, Relation, rows_in
from medallion.errors import StorageError
from medallion.remembered import Bounded
from medallion.sql import quote, quoted_list
from medallion.storage import CDF, DeltaHandle, MergePlan

MISSING = -1  # the recorded version of an optional input that does not exist yet
GONE = "_gone"  # a MERGE source row that deletes the target row of its grain
KNOWN = "_known"  # a changed row whose grain the target holds (an update, not an insert)


@dataclass(frozen=True)
class ByKey:
    """Rebuild only the rows of the ``key`` values a change touched.

    ``touched`` maps each input to a query over ``changed`` (the input's changed rows, before
    and after images) and the inputs by name, returning the ``key`` values to rebuild; a moved
    input without a rule makes the whole table rebuild. ``filtered`` inputs hold the ``key``
    column and are reduced to the touched values before the build: the build must be local
    to a key (a key's rows depend only on the filtered rows of that key and on the other,
    whole, inputs)."""

    key: str
    touched: Mapping[TableRef, str]
    filtered: tuple[TableRef, ...]


def touched_keys(
    by: ByKey,
    inputs: Mapping[TableRef, DeltaHandle],
    recorded: Mapping[TableRef, int | None],
    current: Mapping[TableRef, int],
    *,
    views: Mapping[str, Relation],
    engine: Engine,
    run: str | None = None,
) -> pa.Array | None:
    """The distinct ``by.key`` values to rebuild (a small answer), from the inputs whose
    ``current`` version (MISSING: no table) is not the ``recorded`` one; None when a moved
    input cannot say which (no rule, no change feed or its files vacuumed, a table that
    vanished or was recreated): then everything is rebuilt. Within ``run``, a rule's answer
    is shared with the other tables that ask it (``_ANSWERS``)."""
    found: list[pa.Array] = []  # the answers' chunks, as text
    for ref, handle in inputs.items():
        before, now = recorded.get(ref), current[ref]
        if before == now:
            continue
        if now == MISSING or before is None or now < before:  # vanished or recreated
            return None
        if ref not in by.touched or not handle.has_change_feed:
            return None
        rule, span = by.touched[ref], (before, now)
        find = partial(_touched_by, rule, handle, span=span, views=views, engine=engine)
        if run is None:
            answer = find()
        else:
            key = _answer_key(rule, handle, span=span, inputs=inputs, current=current)
            answer = _ANSWERS.computed((run, engine.dialect, *key), find)
        if answer is None:
            return None
        found += answer.chunks
    # typed: an answer without a chunk (no key touched) must not type the union as NULL
    return pc.unique(pa.chunked_array(found, pa.string())).drop_null()


def _touched_by(
    rule: str,
    handle: DeltaHandle,
    *,
    span: tuple[int, int],
    views: Mapping[str, Relation],
    engine: Engine,
) -> pa.ChunkedArray | None:
    """The key values ``rule`` finds touched by ``handle``'s change between the versions of
    ``span`` (as text); None when the change can no longer be read."""
    changed = _changed(handle, *span, engine)
    if changed is None:
        return None
    try:
        if not rows_in(changed):
            return pa.chunked_array([], pa.string())
        keys = engine.query(rule, {**views, "changed": changed})
        return keys.column(0).cast(pa.string())
    finally:
        engine.discard(changed)


def _answer_key(
    rule: str,
    handle: DeltaHandle,
    *,
    span: tuple[int, int],
    inputs: Mapping[TableRef, DeltaHandle],
    current: Mapping[TableRef, int],
) -> tuple[Any, ...]:
    """What fixes ``rule``'s answer within a run: its text, the change it reads (the table
    and its versions) and the version of every input it names (read as views)."""
    named = set(re.findall(r"\w+", rule))
    reads = sorted(
        (h.uri, h.identity, current[ref]) for ref, h in inputs.items() if ref.name in named
    )
    return (rule, handle.uri, handle.identity, span, tuple(reads))


# The touched keys a rule found, kept for the other tables of the run that ask the same rule
# of the same change over the same inputs: the three fact tables each map a customer change to
# its orders (0.2 s at scale 10). Keyed by the run and what fixes the answer in it: a table's
# identity and version do not fix its content across runs (a lake copied or restored holds the
# same ones over other rows). A key asked for while being computed waits for it.
_ANSWERS: Bounded[tuple[Any, ...], pa.ChunkedArray | None] = Bounded(kept=32)


def _changed(handle: DeltaHandle, before: int, now: int, engine: Engine) -> Relation | None:
    """The rows of ``handle`` that changed after version ``before`` (MISSING: the table is
    new) up to ``now``: its change data feed, read here, when it holds only those (appends,
    MERGEs: a change's rows); else the two snapshots' difference, kept by the engine (an
    overwrite's feed is the whole table twice, and a MERGE on Spark commits an overwrite).
    None when they can no longer be read. Lineage columns (``_``) are no change of content."""
    try:
        if before == MISSING:
            return handle.relation(version=now)
        if handle.feeds_exactly(before):
            return handle.changes(before, until=now)[0]
        was, new = handle.relation(version=before), handle.relation(version=now)
    except StorageError:  # the feed's files were vacuumed: rebuild everything
        return None
    if was is None or new is None or was.schema.names != new.schema.names:
        return None
    content = quoted_list([n for n in new.schema.names if not n.startswith("_")])
    return engine.keep(
        f"""(SELECT {content} FROM new EXCEPT SELECT {content} FROM was)
        UNION ALL (SELECT {content} FROM was EXCEPT SELECT {content} FROM new)""",
        {"was": was, "new": new},
    )


@dataclass(frozen=True)
class Written:
    """What one write of a Gold table did."""

    version: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    files_rewritten: int = 0

    @property
    def metrics(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "files_rewritten": self.files_rewritten,
        }


def write_changes(
    target: DeltaHandle,
    data: Relation,
    grain: tuple[str, ...],
    *,
    scope: tuple[str, pa.Array] | None,
    transactions: Mapping[str, int],
    metadata: Mapping[str, Any],
    engine: Engine,
    key: tuple[str, ...] | None = None,
) -> Written:
    """Make the target's rows in ``scope`` (column, values; the whole table when None) equal
    ``data`` in one commit that also records ``transactions``: only rows that differ are
    inserted, updated or deleted (the whole table is replaced instead when most of it differs:
    cheaper than a MERGE touching every row). Nothing differing still commits, to record the
    progress. The stored rows are read where the engine runs, and ``data`` (kept near the
    target) is either committed as it lies or discarded: no table-sized set comes here. The
    files written are laid out for lookups by ``key`` (by default the grain)."""
    layout = grain if key is None else key
    if scope is None and apart(target, data, grain, engine):  # every row differs: replace all
        held, (files, _) = target.row_count() or 0, target.files()
        inserted = rows_in(data)
        version = engine.overwrite(
            target,
            data,
            transactions=transactions,
            metadata=metadata,
            configuration=CDF,
            key=layout,
        )
        return Written(version, inserted=inserted, deleted=held, files_rewritten=files)
    diff = _diff(target, data, grain, scope, engine)
    try:
        return _write_diff(
            target,
            data,
            diff,
            grain,
            whole=scope is None,
            transactions=transactions,
            metadata=metadata,
            engine=engine,
            key=layout,
        )
    finally:
        engine.discard(diff)


def _diff(
    target: DeltaHandle,
    data: Relation,
    grain: tuple[str, ...],
    scope: tuple[str, pa.Array] | None,
    engine: Engine,
) -> Relation:
    """The rows of ``data`` that differ from the stored ones in ``scope`` (:func:`_diff_sql`),
    kept near the target: the stored side is the table's lazy scan, scoped in the SQL."""
    stored = target.relation()
    assert stored is not None
    tables: dict[str, Relation] = {"new": data, "stored": stored}
    if scope is not None:
        tables["scope"] = pa.table({"v": scope[1]})
    sql = _diff_sql(grain, data.schema.names, None if scope is None else scope[0])
    return engine.keep(sql, tables, near=target)


def _write_diff(
    target: DeltaHandle,
    data: Relation,
    diff: Relation,
    grain: tuple[str, ...],
    *,
    whole: bool,
    transactions: Mapping[str, int],
    metadata: Mapping[str, Any],
    engine: Engine,
    key: tuple[str, ...],
) -> Written:
    """Commit ``diff`` as a MERGE, or ``data`` as the new content when it is the ``whole``
    table and most of it changed (files laid out for lookups by ``key``); ``data`` not
    committed is discarded."""
    counts = _counts(diff, engine)
    changed = counts["inserted"] + counts["updated"] + counts["deleted"]
    if whole and 2 * changed > rows_in(data):
        files, _ = target.files()
        version = engine.overwrite(
            target,
            data,
            transactions=transactions,
            metadata=metadata,
            configuration=CDF,
            key=key,
        )
        return Written(version, **counts, files_rewritten=files)
    engine.discard(data)
    if changed == 0:
        return Written(target.record(transactions, metadata))
    plan = _merge_plan(grain, data.schema.names)
    all_new = counts["updated"] == counts["deleted"] == 0  # new grains only: appended
    result = engine.merge(
        target,
        diff,
        plan,
        transactions=transactions,
        metadata=metadata,
        all_new=all_new,
        key=key,
    )
    return Written(
        result.version, result.inserted, result.updated, result.deleted, result.files_removed
    )


def apart(target: DeltaHandle, data: Relation, grain: tuple[str, ...], engine: Engine) -> bool:
    """Whether no row of ``data`` can share its grain with a stored row: the values of one
    grain column lie wholly outside the range the log's statistics give for it (RFM's
    ``as_of_date`` once it moves), so a diff would only find every row new and every stored
    row gone. The new values' range is one small answer, asked only when the log has one."""
    stored = {c: r for c in grain if (r := target.value_range(c)) is not None}
    if not stored:
        return False
    ranges = ", ".join(
        f"min({quote(c)}) AS _lo{i}, max({quote(c)}) AS _hi{i}, "
        f"count(*) - count({quote(c)}) AS _nulls{i}"
        for i, c in enumerate(stored)
    )
    found = engine.query(f"SELECT count(*) AS _rows, {ranges} FROM new", {"new": data})
    new = found.to_pylist()[0]
    if not new["_rows"]:
        return False
    for i, (low, high) in enumerate(stored.values()):
        lo, hi = new[f"_lo{i}"], new[f"_hi{i}"]
        if new[f"_nulls{i}"] or not isinstance(lo, type(low)):
            continue  # NULLs, or another type than the one stored: no order to compare by
        if hi < low or lo > high:
            return True
    return False


def _counts(diff: Relation, engine: Engine) -> dict[str, int]:
    """What a diff holds, as the MERGE of it counts (one small answer)."""
    row = engine.query(
        f"""SELECT count(*) AS n, sum(CASE WHEN {GONE} THEN 1 ELSE 0 END) AS gone,
            sum(CASE WHEN {KNOWN} THEN 1 ELSE 0 END) AS known FROM diff""",
        {"diff": diff},
    ).to_pylist()[0]
    n, gone, known = (int(row[k] or 0) for k in ("n", "gone", "known"))
    return {"inserted": n - gone - known, "updated": known, "deleted": gone}


def same_columns(target: DeltaHandle, data: Relation) -> bool:
    """Whether ``data`` can be merged into the target: the same column names and kinds."""
    schema = target.schema
    return schema is not None and schema.names == data.schema.names


def _diff_sql(grain: tuple[str, ...], columns: list[str], scope: str | None) -> str:
    """Rows new or changed (every column compared, NULLs equal), and the grains no longer
    there, flagged ``_gone`` (their other columns NULL), against the ``stored`` rows whose
    ``scope`` column is one of the values ``v`` of ``scope`` (all rows when None); in grain
    order, so the files a MERGE writes are key-ordered."""
    keys, every = quoted_list(grain), quoted_list(columns)
    kept = _same(grain, "n", "o")
    gone_row = ", ".join(quote(c) if c in grain else f"NULL AS {quote(c)}" for c in columns)
    scoped = "" if scope is None else f" WHERE {quote(scope)} IN (SELECT v FROM scope)"
    return f"""
        WITH old AS (SELECT {every} FROM stored{scoped}),
        upserts AS (SELECT {every} FROM new EXCEPT SELECT {every} FROM old),
        gone AS (SELECT {keys} FROM old o WHERE NOT EXISTS (SELECT 1 FROM new n WHERE {kept}))
        SELECT {every}, false AS {GONE},
            EXISTS (SELECT 1 FROM old o WHERE {_same(grain, "o", "u")}) AS {KNOWN}
        FROM upserts u
        UNION ALL
        SELECT {gone_row}, true AS {GONE}, false AS {KNOWN} FROM gone
        ORDER BY {keys}
    """


def _same(grain: tuple[str, ...], a: str, b: str) -> str:
    return " AND ".join(f"{a}.{quote(k)} = {b}.{quote(k)}" for k in grain)


def _merge_plan(grain: tuple[str, ...], columns: list[str]) -> MergePlan:
    every = {c: f"s.{c}" for c in columns}  # Gold columns are plain identifiers
    return MergePlan(
        keys=grain,
        matched_deletes=(f"s.{GONE}",),
        matched_updates=((f"NOT s.{GONE}", every),),
        not_matched_inserts=((f"NOT s.{GONE}", every),),
    )
