"""The batch being built and the source snapshot it is planned from, shared by every change type.

:class:`Batch` collects planned writes and manifest entries and hands out per-change times;
:class:`Ctx` holds the snapshot (tables sorted by key), the random stream and which orders and
customers the batch already touched, so that a key gets at most one change type per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import DELETED_AT, SOURCE_TABLES, UPDATED_AT, source_table
from medallion.errors import SourceError
from medallion.source.arrays import I64, US, Mask, micro_timestamps
from medallion.source.db import SourceDatabase

log = logging.getLogger(__name__)

CHANGE_TYPES = (
    "new_orders",
    "status_updates",
    "customer_moves",
    "product_updates",
    "seller_moves",
    "soft_deletes",
    "hard_deletes",
    "late_updates",
    "dirty",
)
CHILDREN = ("order_items", "order_payments", "order_reviews")
Op = Literal["insert", "update", "soft_delete", "hard_delete"]


# -- JSON values ----------------------------------------------------------------------------------
def iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(table: pa.Table | None, n: int) -> list[dict[str, Any] | None]:
    if table is None:
        return [None] * n
    return [{k: _json(v) for k, v in row.items()} for row in table.to_pylist()]


# -- Arrow helpers --------------------------------------------------------------------------------
def np_column(table: pa.Table, column: str) -> npt.NDArray[Any]:
    return np.asarray(table[column].to_numpy(zero_copy_only=False))


def partial_table(name: str, columns: dict[str, Any]) -> pa.Table:
    """Some columns of a source table, typed as the catalog declares them."""
    table = source_table(name)
    arrays = [pc.cast(v, table.column(c).type.arrow) for c, v in columns.items()]
    return pa.table(arrays, names=list(columns))


def select_orders(table: pa.Table, order_ids: pa.Array, *, live_only: bool) -> pa.Table:
    mask = pc.is_in(table["order_id"], value_set=order_ids)
    if live_only:
        mask = pc.and_(mask, pc.is_null(table[DELETED_AT]))
    return table.filter(mask)


def parent_rows(child: pa.Table, order_ids: pa.Array) -> I64:
    index = pc.index_in(child["order_id"], value_set=order_ids)
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


def _key(name: str, table: pa.Table) -> pa.Table:
    return table.select(list(source_table(name).row_key))


def key_columns(name: str, table: pa.Table) -> dict[str, pa.ChunkedArray]:
    return {k: table[k] for k in source_table(name).row_key}


# -- the batch being built ------------------------------------------------------------------------
@dataclass
class Batch:
    """Planned writes and manifest entries; hands out the per-change times."""

    start_us: int
    offset: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANGE_TYPES, 0))
    writes: list[tuple[str, str, pa.Table]] = field(default_factory=list)

    def times(self, n: int) -> I64:
        """``n`` fresh change times: batch time + the next ``n`` whole-second offsets."""
        out = self.start_us + (self.offset + np.arange(n, dtype=np.int64)) * US
        self.offset += n
        return out

    def insert(self, name: str, data: pa.Table, change: str, defect: str | None = None) -> None:
        if data.num_rows == 0:
            return
        self.writes.append(("upsert", name, data))
        new = data.drop_columns([UPDATED_AT, DELETED_AT])
        self._record(name, "insert", change, data, old=None, new=new, defect=defect)

    def update(self, name: str, new: pa.Table, old: pa.Table, change: str, op: Op) -> None:
        """Set ``new`` (key, changed columns, updated_at); the manifest keeps what differs."""
        if new.num_rows == 0:
            return
        self.writes.append(("update", name, new))
        keys = set(source_table(name).row_key)
        after = new.select([c for c in new.column_names if c not in keys and c != UPDATED_AT])
        before = old.select(after.column_names)
        self._record(name, op, change, new, old=before, new=after)

    def delete(self, name: str, rows: pa.Table, times: I64, change: str) -> None:
        if rows.num_rows == 0:
            return
        self.writes.append(("delete", name, _key(name, rows)))
        stamped = rows.set_column(
            rows.schema.get_field_index(UPDATED_AT), UPDATED_AT, micro_timestamps(times)
        )
        self._record(
            name, "hard_delete", change, stamped, old=rows.drop_columns([UPDATED_AT]), new=None
        )

    def _record(
        self,
        name: str,
        op: Op,
        change: str,
        data: pa.Table,
        *,
        old: pa.Table | None,
        new: pa.Table | None,
        defect: str | None = None,
    ) -> None:
        n = data.num_rows
        keys = _rows(_key(name, data), n)
        stamps = [_json(t) for t in data[UPDATED_AT].to_pylist()]
        for key, stamp, before, after in zip(
            keys, stamps, _rows(old, n), _rows(new, n), strict=True
        ):
            entry = {"table": name, "key": key, "op": op, "change": change, "updated_at": stamp,
                     **_diff(op, before, after)}  # fmt: skip
            if defect is not None:
                entry["defect"] = defect
            self.changes.append(entry)
        self.counts[change] += n


def _diff(op: Op, old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """The entry's old and new values; an update keeps only the columns that changed."""
    if op in ("insert", "hard_delete") or old is None or new is None:
        return {"old": old, "new": new}
    changed = [c for c in new if new[c] != old[c]]
    return {"old": {c: old[c] for c in changed}, "new": {c: new[c] for c in changed}}


# -- the source snapshot --------------------------------------------------------------------------
@dataclass
class Ctx:
    """The source as the batch found it, the batch, and what the batch has touched."""

    db: SourceDatabase
    rng: np.random.Generator
    batch: Batch
    tables: dict[str, pa.Table]  # sorted by key
    geo_ids: I64
    max_us: dict[str, int]  # newest updated_at per table before the batch
    taken: Mask  # orders (in sorted order) already touched by this batch
    taken_uids: set[str] = field(default_factory=set)

    @property
    def orders(self) -> pa.Table:
        return self.tables["orders"]

    def pick_orders(self, eligible: Mask, k: int, change: str) -> I64:
        """Up to ``k`` random untouched orders among ``eligible``; marks them touched."""
        rows = sample(self.rng, np.flatnonzero(eligible & ~self.taken), k, change)
        self.taken[rows] = True
        return rows

    def live_orders(self) -> Mask:
        return np.asarray(pc.is_null(self.orders[DELETED_AT]).to_numpy(zero_copy_only=False))

    def pick_people(self, k: int, change: str) -> pa.Array:
        """Up to ``k`` random customer_unique_ids not yet touched by this batch (sorted)."""
        uids = pc.unique(pc.drop_null(self.tables["customers"]["customer_unique_id"]))
        uids = uids.take(pc.sort_indices(uids))
        taken = pa.array(sorted(self.taken_uids), pa.string())
        uids = uids.filter(pc.invert(pc.is_in(uids, value_set=taken)))
        chosen = uids.take(pa.array(sample(self.rng, np.arange(len(uids)), k, change)))
        self.taken_uids.update(chosen.to_pylist())
        return chosen


def sample(rng: np.random.Generator, candidates: I64, k: int, change: str) -> I64:
    if k > len(candidates):
        log.warning("%s: only %d of %d requested rows are eligible", change, len(candidates), k)
    if not len(candidates) or not k:
        return np.empty(0, dtype=np.int64)
    chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
    return np.sort(chosen).astype(np.int64)


def snapshot(db: SourceDatabase, seed: int) -> Ctx:
    """The tables a batch plans from, sorted by key, and its clock and random stream."""
    stats = {s["table"]: s["max_updated_at"] for s in db.stats(SOURCE_TABLES)}
    known = [t for t in stats.values() if t is not None]
    if not known:
        raise SourceError("the source is empty: generate or load data before applying changes")
    start = max(known) + timedelta(days=1)
    start_us = _to_us(start)
    tables = {}
    for name in ("orders", "customers", *CHILDREN, "products", "sellers"):
        table = source_table(name)
        tables[name] = db.read_table(table).sort_by([(k, "ascending") for k in table.row_key])
    geo = db.read_table(source_table("geolocation"), ["geolocation_id"])["geolocation_id"]
    return Ctx(
        db=db,
        rng=np.random.default_rng([seed, start_us // US]),
        batch=Batch(start_us),
        tables=tables,
        geo_ids=np.sort(np.asarray(geo.to_numpy(), dtype=np.int64)),
        max_us={k: _to_us(v) for k, v in stats.items() if v is not None},
        taken=np.zeros(tables["orders"].num_rows, dtype=np.bool_),
    )


def _to_us(value: datetime) -> int:
    return int(pa.scalar(value, pa.timestamp("us")).cast(pa.int64()).as_py())
