"""Incremental Gold: which keys a change touched, and writing only the rows that differ.

A table declared with a :class:`ByKey` is rebuilt only for the key values its inputs' changes
touched (read from their change data feeds). Every Gold table is then written as the
difference between what it holds and what its build produced (one MERGE by grain: inserts,
updates, deletes), so its own change feed holds only what really changed and the tables and
checks reading it downstream do work proportional to the change. ``--full-refresh``
rebuilds every table whole and is the reference the incremental result must equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import TableRef
from medallion.engine import Engine, Relation
from medallion.errors import StorageError
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
) -> pa.Array | None:
    """The distinct ``by.key`` values to rebuild, from the inputs whose ``current`` version
    (MISSING: no table) is not the ``recorded`` one; None when a moved input cannot say which
    (no rule, no change feed or its files vacuumed, a table that vanished or was recreated):
    then everything is rebuilt."""
    found = []
    for ref, handle in inputs.items():
        before, now = recorded.get(ref), current[ref]
        if before == now:
            continue
        if now == MISSING or before is None or now < before:  # vanished or recreated
            return None
        if ref not in by.touched or not handle.has_change_feed:
            return None
        try:
            changed, _ = handle.changes(None if before == MISSING else before, until=now)
        except StorageError:  # the feed's files were vacuumed: rebuild everything
            return None
        if changed is None or changed.num_rows == 0:
            continue
        keys = engine.query(by.touched[ref], {**views, "changed": changed})
        found.append(keys.column(0).cast(pa.string()))
    if not found:
        return pa.array([], pa.string())
    return pc.unique(pa.chunked_array(found).combine_chunks()).drop_null()


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
    data: pa.Table,
    grain: tuple[str, ...],
    *,
    scope: tuple[str, pa.Array] | None,
    transactions: Mapping[str, int],
    metadata: Mapping[str, Any],
    engine: Engine,
) -> Written:
    """Make the target's rows in ``scope`` (column, values; the whole table when None) equal
    ``data`` in one commit that also records ``transactions``: only rows that differ are
    inserted, updated or deleted (the whole table is replaced instead when most of it differs:
    cheaper than a MERGE touching every row). Nothing differing still commits, to record the
    progress."""
    columns = data.column_names
    if scope is None and apart(target, data, grain):  # every row differs: replace them all
        held, (files, _) = target.row_count() or 0, target.files()
        version = target.overwrite(
            data, transactions=transactions, metadata=metadata, configuration=CDF
        )
        return Written(version, inserted=data.num_rows, deleted=held, files_rewritten=files)
    stored = (
        target.read(columns) if scope is None else target.read_matching(*scope, columns=columns)
    )
    assert stored is not None
    diff = engine.query(_diff_sql(grain, columns), {"new": data, "old": stored})
    if diff.num_rows == 0:
        return Written(target.record(transactions, metadata))
    if scope is None and 2 * diff.num_rows > data.num_rows:
        counts, (files, _) = _counts(diff), target.files()
        version = target.overwrite(
            data, transactions=transactions, metadata=metadata, configuration=CDF
        )
        return Written(version, **counts, files_rewritten=files)
    result = target.merge(
        diff,
        _merge_plan(grain, data.column_names),
        transactions=transactions,
        metadata=metadata,
    )
    return Written(
        result.version, result.inserted, result.updated, result.deleted, result.files_removed
    )


def apart(target: DeltaHandle, data: pa.Table, grain: tuple[str, ...]) -> bool:
    """Whether no row of ``data`` can share its grain with a stored row: the values of one
    grain column lie wholly outside the range the log's statistics give for it (RFM's
    ``as_of_date`` once it moves), so a diff would only find every row new and every stored
    row gone."""
    if data.num_rows == 0:
        return False
    for column in grain:
        stored = target.value_range(column)
        if stored is None or data[column].null_count:
            continue
        new = pc.min_max(data[column])
        low, high = new["min"].as_py(), new["max"].as_py()
        if not isinstance(low, type(stored[0])):
            continue  # another type than the one stored: no order to compare by
        if high < stored[0] or low > stored[1]:
            return True
    return False


def _counts(diff: pa.Table) -> dict[str, int]:
    gone = int(pc.sum(diff[GONE]).as_py() or 0)
    updated = int(pc.sum(diff[KNOWN]).as_py() or 0)
    return {"inserted": diff.num_rows - gone - updated, "updated": updated, "deleted": gone}


def same_columns(target: DeltaHandle, data: pa.Table) -> bool:
    """Whether ``data`` can be merged into the target: the same column names and kinds."""
    schema = target.schema
    return schema is not None and schema.names == data.column_names


def _diff_sql(grain: tuple[str, ...], columns: list[str]) -> str:
    """Rows new or changed (every column compared, NULLs equal), and the grains no longer
    there, flagged ``_gone`` (their other columns NULL); in grain order, so the files a MERGE
    writes are key-ordered."""
    keys, every = quoted_list(grain), quoted_list(columns)
    kept = _same(grain, "n", "o")
    gone_row = ", ".join(quote(c) if c in grain else f"NULL AS {quote(c)}" for c in columns)
    return f"""
        WITH upserts AS (SELECT {every} FROM new EXCEPT SELECT {every} FROM old),
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
        predicate=" AND ".join(f"t.{k} = s.{k}" for k in grain),
        matched_deletes=(f"s.{GONE}",),
        matched_updates=((f"NOT s.{GONE}", every),),
        not_matched_inserts=((f"NOT s.{GONE}", every),),
    )
