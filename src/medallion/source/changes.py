"""One batch of realistic changes applied to an existing source database.

:func:`apply_changes` reads the tables it needs as Arrow, plans every change set-based from that
snapshot, writes them with bulk upserts, updates and deletes, and returns a
:class:`ChangeManifest` that lists each changed row (key, operation, old and new values).

The clock is logical: the batch time is the newest ``updated_at`` in the source plus one day, and
each changed row gets the batch time plus a small per-change offset in seconds. Late updates are
the exception on purpose: they carry an ``updated_at`` at or just before their table's previous
maximum, like commits that became visible late. A key is touched by at most one change type per
batch, and the batch is deterministic for a seed and a given database.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import DELETED_AT, SOURCE_TABLES, UPDATED_AT, source_table
from medallion.errors import ConfigError, SourceError
from medallion.source import generator as gen
from medallion.source.db import SourceDatabase
from medallion.source.generator import DAY, I64, US, Mask

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
_NEXT_STATUS = {
    "created": "approved",
    "approved": "shipped",
    "invoiced": "shipped",
    "processing": "shipped",
    "shipped": "delivered",
}
# the dirty rows a batch inserts, in rotation: (table, defect)
_DIRTY_KINDS = (
    ("orders", "null_required"),
    ("order_items", "negative_price"),
    ("order_items", "unknown_reference"),
    ("orders", "bad_timestamp"),
    ("order_reviews", "score_out_of_range"),
    ("geolocation", "duplicate"),
    ("order_reviews", "duplicate"),
)
_CHILDREN = ("order_items", "order_payments", "order_reviews")
Op = Literal["insert", "update", "soft_delete", "hard_delete"]


@dataclass(frozen=True)
class ChangeSpec:
    """How many changes of each type one batch makes (a count the data cannot meet is capped)."""

    seed: int = 1
    new_orders: int = 0
    status_updates: int = 0
    customer_moves: int = 0
    product_updates: int = 0
    seller_moves: int = 0
    soft_deletes: int = 0
    hard_deletes: int = 0
    late_updates: int = 0
    dirty: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"change {f.name} must be an integer, got {value!r}")
            if value < 0:
                raise ConfigError(f"change {f.name} must be >= 0, got {value}")

    @property
    def rows(self) -> int:
        """How many changes were asked for, all types together."""
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "seed")


@dataclass(frozen=True)
class ChangeManifest:
    """What one batch changed: counts of changed rows per change type and every changed row."""

    batch_time: datetime
    seed: int
    counts: dict[str, int]
    changes: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_time": _iso(self.batch_time),
            "seed": self.seed,
            "counts": self.counts,
            "changes": self.changes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def write(self, path: str | Path) -> Path:
        """Write the manifest as JSON (creating the folder); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json() + "\n", encoding="utf-8")
        return out

    @classmethod
    def read(cls, path: str | Path) -> ChangeManifest:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            batch_time=datetime.fromisoformat(data["batch_time"]),
            seed=data["seed"],
            counts=data["counts"],
            changes=data["changes"],
        )


# -- JSON values ----------------------------------------------------------------------------------
def _iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(table: pa.Table | None, n: int) -> list[dict[str, Any] | None]:
    if table is None:
        return [None] * n
    return [{k: _json(v) for k, v in row.items()} for row in table.to_pylist()]


# -- Arrow helpers --------------------------------------------------------------------------------
def _np(table: pa.Table, column: str) -> npt.NDArray[Any]:
    return np.asarray(table[column].to_numpy(zero_copy_only=False))


def _micros(table: pa.Table, column: str) -> tuple[I64, Mask]:
    """A timestamp column as int64 microseconds (0 where NULL) and its validity."""
    col = table[column].cast(pa.int64())
    valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.asarray(col.fill_null(0).to_numpy(), dtype=np.int64), valid


def _ts(us: I64, null: Mask | None = None) -> pa.Array:
    return pa.array(us, pa.int64(), mask=null).cast(pa.timestamp("us"))


def _cents(column: pa.ChunkedArray | pa.Array) -> I64:
    values = pc.cast(column, pa.float64()).fill_null(0).to_numpy()
    return np.round(np.asarray(values) * 100).astype(np.int64)


def _partial(name: str, columns: dict[str, Any]) -> pa.Table:
    """Some columns of a source table, typed as the catalog declares them."""
    table = source_table(name)
    arrays = [pc.cast(v, table.column(c).type.arrow) for c, v in columns.items()]
    return pa.table(arrays, names=list(columns))


def _select(table: pa.Table, order_ids: pa.Array, *, live_only: bool) -> pa.Table:
    mask = pc.is_in(table["order_id"], value_set=order_ids)
    if live_only:
        mask = pc.and_(mask, pc.is_null(table[DELETED_AT]))
    return table.filter(mask)


def _parent(child: pa.Table, order_ids: pa.Array) -> I64:
    index = pc.index_in(child["order_id"], value_set=order_ids)
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


def _key(name: str, table: pa.Table) -> pa.Table:
    return table.select(list(source_table(name).row_key))


def _key_columns(name: str, table: pa.Table) -> dict[str, pa.ChunkedArray]:
    return {k: table[k] for k in source_table(name).row_key}


# -- the batch being built ------------------------------------------------------------------------
@dataclass
class _Batch:
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
        stamped = rows.set_column(rows.schema.get_field_index(UPDATED_AT), UPDATED_AT, _ts(times))
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
class _Ctx:
    rng: np.random.Generator
    batch: _Batch
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
        rows = _sample(self.rng, np.flatnonzero(eligible & ~self.taken), k, change)
        self.taken[rows] = True
        return rows

    def live_orders(self) -> Mask:
        return np.asarray(pc.is_null(self.orders[DELETED_AT]).to_numpy(zero_copy_only=False))


def _sample(rng: np.random.Generator, candidates: I64, k: int, change: str) -> I64:
    if k > len(candidates):
        log.warning("%s: only %d of %d requested rows are eligible", change, len(candidates), k)
    if not len(candidates) or not k:
        return np.empty(0, dtype=np.int64)
    chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
    return np.sort(chosen).astype(np.int64)


def _snapshot(db: SourceDatabase, spec: ChangeSpec) -> _Ctx:
    stats = {s["table"]: s["max_updated_at"] for s in db.stats(SOURCE_TABLES)}
    known = [t for t in stats.values() if t is not None]
    if not known:
        raise SourceError("the source is empty: generate or load data before applying changes")
    start = max(known) + timedelta(days=1)
    start_us = _to_us(start)
    tables = {}
    for name in ("orders", "customers", *_CHILDREN, "products", "sellers"):
        table = source_table(name)
        tables[name] = db.read_table(table).sort_by([(k, "ascending") for k in table.row_key])
    geo = db.read_table(source_table("geolocation"), ["geolocation_id"])["geolocation_id"]
    return _Ctx(
        rng=np.random.default_rng([spec.seed, start_us // US]),
        batch=_Batch(start_us),
        tables=tables,
        geo_ids=np.sort(np.asarray(geo.to_numpy(), dtype=np.int64)),
        max_us={k: _to_us(v) for k, v in stats.items() if v is not None},
        taken=np.zeros(tables["orders"].num_rows, dtype=np.bool_),
    )


def _to_us(value: datetime) -> int:
    return int(pa.scalar(value, pa.timestamp("us")).cast(pa.int64()).as_py())


# -- new orders -----------------------------------------------------------------------------------
def _new_customers(ctx: _Ctx, k: int, times: I64) -> pa.Table:
    """Customer rows for ``k`` new orders: ~15 % returning customer_unique_ids, the rest new."""
    rng, customers = ctx.rng, ctx.tables["customers"]
    chosen = _pick_people(ctx, round(k * 0.15), "new_orders")
    first = pc.index_in(chosen, value_set=customers["customer_unique_id"])
    home = customers.take(first)
    n_new = k - len(chosen)
    zips, city = gen.places().sample(rng, n_new)
    geo = gen.places()
    order = rng.permutation(k)
    return gen.build_table(
        "customers",
        {
            "customer_id": gen.random_ids(rng, k),
            "customer_unique_id": _concat(
                home["customer_unique_id"], gen.random_ids(rng, n_new), order
            ),
            "customer_zip_code_prefix": _concat(
                home["customer_zip_code_prefix"], gen.zip_strings(zips), order
            ),
            "customer_city": _concat(home["customer_city"], geo.names.take(pa.array(city)), order),
            "customer_state": _concat(
                home["customer_state"], geo.states.take(pa.array(city)), order
            ),
            "updated_at": _ts(times),
        },
    )


def _concat(a: pa.ChunkedArray, b: pa.Array, order: I64) -> pa.Array:
    return pa.concat_arrays([a.combine_chunks().cast(pa.string()), b]).take(pa.array(order))


def _sale_pairs(ctx: _Ctx) -> pa.Table:
    """(product, seller, price, freight) of existing sales whose product and seller exist."""
    items = ctx.tables["order_items"]
    ok = pc.and_(
        pc.is_in(items["product_id"], value_set=ctx.tables["products"]["product_id"]),
        pc.is_in(items["seller_id"], value_set=ctx.tables["sellers"]["seller_id"]),
    )
    ok = pc.and_(ok, pc.greater(pc.fill_null(items["price"], Decimal(0)), Decimal(0)))
    pairs = items.filter(ok).select(["product_id", "seller_id", "price", "freight_value"])
    if pairs.num_rows == 0:
        raise SourceError("new orders need existing order items with known products and sellers")
    return pairs


def _new_items(ctx: _Ctx, order_ids: pa.Array, times: I64) -> tuple[pa.Table, I64]:
    rng, k = ctx.rng, len(order_ids)
    count = np.where(rng.random(k) < 0.9, 1, rng.integers(2, 5, k)).astype(np.int64)
    order, position = gen.group_positions(count)
    pairs = _sale_pairs(ctx)
    sale = pa.array(rng.integers(0, pairs.num_rows, len(order)))
    chosen = pairs.take(sale)
    totals = np.bincount(
        order, weights=_cents(chosen["price"]) + _cents(chosen["freight_value"]), minlength=k
    ).astype(np.int64)
    seconds = times // US
    items = gen.build_table(
        "order_items",
        {
            "order_id": order_ids.take(pa.array(order)),
            "order_item_id": pa.array(position + 1),
            "product_id": chosen["product_id"],
            "seller_id": chosen["seller_id"],
            "shipping_limit_date": gen.timestamps(seconds[order] + 6 * DAY),
            "price": chosen["price"],
            "freight_value": chosen["freight_value"],
            "updated_at": _ts(times[order]),
        },
    )
    return items, totals


def _new_payments(ctx: _Ctx, order_ids: pa.Array, totals: I64, times: I64) -> pa.Table:
    """One payment per order, or a credit card plus a voucher; values add up exactly."""
    rng, k = ctx.rng, len(order_ids)
    count = np.where(rng.random(k) < 0.95, 1, 2).astype(np.int64)
    order, position = gen.group_positions(count)
    single = np.asarray([0, 1, 3])[gen.choose(rng, len(order), (0.75, 0.2, 0.05))]
    kind = np.where(count[order] == 1, single, np.where(position == 0, 0, 2)).astype(np.int64)
    weight = rng.random(len(order)) + np.where(position == 0, 1.0, 0.1)
    return gen.build_table(
        "order_payments",
        {
            "order_id": order_ids.take(pa.array(order)),
            "payment_sequential": pa.array(position + 1),
            "payment_type": pa.array(gen.PAYMENT_TYPES).take(pa.array(kind)),
            "payment_installments": pa.array(gen.installments(rng, kind)),
            "payment_value": gen.money(gen.split_cents(totals, order, weight)),
            "updated_at": _ts(times[order]),
        },
    )


def _new_orders(ctx: _Ctx, k: int) -> None:
    """New orders (created or approved) with their customers, items and payments."""
    if k == 0:
        return
    rng, times = ctx.rng, ctx.batch.times(k)
    customers = _new_customers(ctx, k, times)
    approved = rng.random(k) < 0.7
    seconds = times // US
    purchase = seconds - np.where(approved, rng.integers(60, 1800, k), 0)
    ids = gen.random_ids(rng, k)
    orders = gen.build_table(
        "orders",
        {
            "order_id": ids,
            "customer_id": customers["customer_id"],
            "order_status": pa.array(np.where(approved, "approved", "created").tolist()),
            "order_purchase_timestamp": gen.timestamps(purchase),
            "order_approved_at": gen.timestamps(seconds, ~approved),
            "order_estimated_delivery_date": gen.timestamps(
                purchase - purchase % DAY + rng.integers(15, 35, k) * DAY
            ),
            "updated_at": _ts(times),
        },
    )
    items, totals = _new_items(ctx, ids, times)
    ctx.batch.insert("customers", customers, "new_orders")
    ctx.batch.insert("orders", orders, "new_orders")
    ctx.batch.insert("order_items", items, "new_orders")
    ctx.batch.insert("order_payments", _new_payments(ctx, ids, totals, times), "new_orders")


# -- updates --------------------------------------------------------------------------------------
def _status_updates(ctx: _Ctx, k: int) -> None:
    """Orders move one step: created → approved → shipped → delivered (timestamps kept ordered)."""
    o = ctx.orders
    status = _np(o, "order_status")
    purchase, _ = _micros(o, "order_purchase_timestamp")
    eligible = (
        ctx.live_orders() & np.isin(status, list(_NEXT_STATUS)) & (purchase < ctx.batch.start_us)
    )
    rows = ctx.pick_orders(eligible, k, "status_updates")
    if not len(rows):
        return
    old = o.take(pa.array(rows))
    times = ctx.batch.times(len(rows))
    now = times // US * US
    step = np.asarray([_NEXT_STATUS[s] for s in status[rows]])  # per changed order
    approved, has_approved = _micros(old, "order_approved_at")
    carrier, has_carrier = _micros(old, "order_delivered_carrier_date")
    delivered, has_delivered = _micros(old, "order_delivered_customer_date")
    ships = np.isin(step, ["shipped", "delivered"])
    new = _partial(
        "orders",
        {
            "order_id": old["order_id"],
            "order_status": pa.array(step.tolist(), pa.string()),
            "order_approved_at": _ts(np.where(has_approved, approved, now)),
            "order_delivered_carrier_date": _ts(
                np.where(has_carrier, carrier, now), ~(has_carrier | ships)
            ),
            "order_delivered_customer_date": _ts(
                np.where(step == "delivered", now, delivered),
                ~(has_delivered | (step == "delivered")),
            ),
            UPDATED_AT: _ts(times),
        },
    )
    ctx.batch.update("orders", new, old, "status_updates", "update")


def _new_places(
    ctx: _Ctx, n: int, old_zip: Any, group: I64, *, sellers: bool = False
) -> tuple[pa.Array, I64]:
    """A new place per group whose zip differs from every old zip of the group's rows."""
    tries = 4
    zips, city = gen.places().sample(ctx.rng, n * tries, sellers=sellers)
    text = gen.zip_strings(zips).to_numpy(zero_copy_only=False).reshape(n, tries)
    clash = np.zeros((n, tries), dtype=np.bool_)
    for j in range(tries):  # one step per candidate
        same = (text[group, j] == old_zip).astype(np.float64)
        clash[:, j] = np.bincount(group, weights=same, minlength=n) > 0
    pick = np.argmax(~clash, axis=1)
    flat = np.arange(n) * tries + pick
    return gen.zip_strings(zips[flat]), city[flat]


def _moved(ctx: _Ctx, name: str, rows: I64, group: I64, *, n: int, change: str) -> None:
    """Rows of ``name`` get the new place of their group (one new place per group)."""
    prefix = name.removesuffix("s")
    table = ctx.tables[name]
    old = table.take(pa.array(rows))
    zip_col, city_col, state_col = (f"{prefix}_{c}" for c in ("zip_code_prefix", "city", "state"))
    zips, city = _new_places(ctx, n, _np(old, zip_col), group, sellers=name == "sellers")
    geo = gen.places()
    key = source_table(name).row_key[0]
    new = _partial(
        name,
        {
            key: old[key],
            zip_col: zips.take(pa.array(group)),
            city_col: geo.names.take(pa.array(city[group])),
            state_col: geo.states.take(pa.array(city[group])),
            UPDATED_AT: _ts(ctx.batch.times(n)[group]),
        },
    )
    ctx.batch.update(name, new, old, change, "update")


def _customer_moves(ctx: _Ctx, k: int) -> None:
    """Customer_unique_ids move: all their customer rows get one new zip, city and state."""
    uid = ctx.tables["customers"]["customer_unique_id"]
    chosen = _pick_people(ctx, k, "customer_moves")
    rows = np.flatnonzero(pc.is_in(uid, value_set=chosen).to_numpy(zero_copy_only=False))
    group = pc.index_in(uid.take(pa.array(rows)), value_set=chosen).to_numpy()
    _moved(ctx, "customers", rows, group.astype(np.int64), n=len(chosen), change="customer_moves")


def _pick_people(ctx: _Ctx, k: int, change: str) -> pa.Array:
    """Up to ``k`` random customer_unique_ids not yet touched by this batch (sorted)."""
    uids = pc.unique(pc.drop_null(ctx.tables["customers"]["customer_unique_id"]))
    uids = uids.take(pc.sort_indices(uids))
    taken = pa.array(sorted(ctx.taken_uids), pa.string())
    uids = uids.filter(pc.invert(pc.is_in(uids, value_set=taken)))
    chosen = uids.take(pa.array(_sample(ctx.rng, np.arange(len(uids)), k, change)))
    ctx.taken_uids.update(chosen.to_pylist())
    return chosen


def _seller_moves(ctx: _Ctx, k: int) -> None:
    """Sellers relocate to a new zip, city and state."""
    n = ctx.tables["sellers"].num_rows
    rows = _sample(ctx.rng, np.arange(n), k, "seller_moves")
    group = np.arange(len(rows), dtype=np.int64)
    _moved(ctx, "sellers", rows, group, n=len(rows), change="seller_moves")


def _remeasure(rng: np.random.Generator, old: pa.ChunkedArray, typical: int) -> I64:
    """A different positive measure: the old one ± 5-25 % (at least 1), or a typical one."""
    values = np.asarray(old.fill_null(typical).to_numpy(), dtype=np.int64)
    delta = np.maximum(1, np.round(values * rng.uniform(0.05, 0.25, len(values)))).astype(np.int64)
    sign = np.where(rng.random(len(values)) < 0.5, -1, 1)
    new = values + sign * delta
    return np.where(new < 1, values + delta, new).astype(np.int64)


_MEASURES = (
    ("product_weight_g", 700),
    ("product_length_cm", 25),
    ("product_height_cm", 13),
    ("product_width_cm", 20),
)


def _product_updates(ctx: _Ctx, k: int) -> None:
    """Products get another real category, new measures, or both."""
    rng, products = ctx.rng, ctx.tables["products"]
    rows = _sample(rng, np.arange(products.num_rows), k, "product_updates")
    if not len(rows):
        return
    old = products.take(pa.array(rows))
    m = len(rows)
    kind = gen.choose(rng, m, (0.4, 0.4, 0.2))  # 0 category, 1 measures, 2 both
    cats = gen.categories()["product_category_name"]
    old_idx = pc.index_in(old["product_category_name"], value_set=cats).fill_null(-1)
    old_idx_np = np.asarray(old_idx.to_numpy(), dtype=np.int64)
    new_idx = rng.integers(0, len(cats) - 1, m)
    new_idx += (old_idx_np >= 0) & (new_idx >= old_idx_np)
    recat = pa.array(kind != 1)
    columns: dict[str, Any] = {
        "product_id": old["product_id"],
        "product_category_name": pc.if_else(
            recat, cats.take(pa.array(new_idx)), old["product_category_name"]
        ),
    }
    for col, typical in _MEASURES:
        columns[col] = pc.if_else(
            pa.array(kind != 0), pa.array(_remeasure(rng, old[col], typical)), old[col]
        )
    columns[UPDATED_AT] = _ts(ctx.batch.times(m))
    ctx.batch.update("products", _partial("products", columns), old, "product_updates", "update")


# -- deletes --------------------------------------------------------------------------------------
def _soft_deletes(ctx: _Ctx, k: int) -> None:
    """Orders and their live items, payments and reviews get ``deleted_at`` = ``updated_at``."""
    rows = ctx.pick_orders(ctx.live_orders(), k, "soft_deletes")
    if not len(rows):
        return
    ids = ctx.orders["order_id"].take(pa.array(rows)).combine_chunks()
    times = ctx.batch.times(len(rows))
    for name in ("orders", *_CHILDREN):
        old = _select(ctx.tables[name], ids, live_only=True)
        when = _ts(times[_parent(old, ids)])
        new = _partial(name, {**_key_columns(name, old), DELETED_AT: when, UPDATED_AT: when})
        ctx.batch.update(name, new, old, "soft_deletes", "soft_delete")


def _hard_deletes(ctx: _Ctx, k: int) -> None:
    """Orders deleted together with all their items, payments and reviews."""
    rows = ctx.pick_orders(np.ones(len(ctx.taken), dtype=np.bool_), k, "hard_deletes")
    if not len(rows):
        return
    ids = ctx.orders["order_id"].take(pa.array(rows)).combine_chunks()
    times = ctx.batch.times(len(rows))
    for name in (*_CHILDREN, "orders"):
        old = _select(ctx.tables[name], ids, live_only=False)
        ctx.batch.delete(name, old, times[_parent(old, ids)], "hard_deletes")


# -- late updates ---------------------------------------------------------------------------------
def _late_times(ctx: _Ctx, name: str, n: int) -> I64:
    """The table's old max updated_at, then times less than 3 s before it."""
    top = ctx.max_us[name]
    out = top - ctx.rng.integers(1, 3 * US, n)
    out[:1] = top
    return out.astype(np.int64)


def _late_reviews(ctx: _Ctx, k: int) -> int:
    reviews = ctx.tables["order_reviews"]
    if k == 0 or "order_reviews" not in ctx.max_us:
        return 0
    top = ctx.max_us["order_reviews"]
    answer, has_answer = _micros(reviews, "review_answer_timestamp")
    created, has_created = _micros(reviews, "review_creation_date")
    parent = _parent(reviews, ctx.orders["order_id"].combine_chunks())
    live = np.asarray(pc.is_null(reviews[DELETED_AT]).to_numpy(zero_copy_only=False))
    free = (parent >= 0) & ~ctx.taken[np.clip(parent, 0, None)]
    ok = (
        live
        & free
        & has_answer
        & has_created
        & (answer < top - 10 * US)
        & (created < top - DAY * US)
    )
    rows = _sample(ctx.rng, np.flatnonzero(ok), k, "late_updates")
    ctx.taken[parent[rows]] = True
    old = reviews.take(pa.array(rows))
    times = _late_times(ctx, "order_reviews", len(rows))
    new = _partial(
        "order_reviews",
        {
            **_key_columns("order_reviews", old),
            "review_answer_timestamp": _ts(times // US * US),
            UPDATED_AT: _ts(times),
        },
    )
    ctx.batch.update("order_reviews", new, old, "late_updates", "update")
    return len(rows)


def _late_orders(ctx: _Ctx, k: int) -> int:
    if k == 0 or "orders" not in ctx.max_us:
        return 0
    _, has_estimate = _micros(ctx.orders, "order_estimated_delivery_date")
    rows = ctx.pick_orders(ctx.live_orders() & has_estimate, k, "late_updates")
    old = ctx.orders.take(pa.array(rows))
    estimate, _ = _micros(old, "order_estimated_delivery_date")
    shift = ctx.rng.integers(1, 11, len(rows)) * DAY * US
    new = _partial(
        "orders",
        {
            "order_id": old["order_id"],
            "order_estimated_delivery_date": _ts(estimate + shift),
            UPDATED_AT: _ts(_late_times(ctx, "orders", len(rows))),
        },
    )
    ctx.batch.update("orders", new, old, "late_updates", "update")
    return len(rows)


def _late_updates(ctx: _Ctx, k: int) -> None:
    """Updates visible late: review answers and estimated delivery dates, old updated_at."""
    done = _late_reviews(ctx, (k + 1) // 2)
    _late_orders(ctx, k - done)


# -- dirty rows -----------------------------------------------------------------------------------
def _dirty_orders(ctx: _Ctx, n: int, defect: str) -> None:
    """New orders with no customer, or delivered before they were bought."""
    times = ctx.batch.times(n)
    seconds = times // US
    bad = defect == "bad_timestamp"
    none = np.zeros(n, dtype=np.bool_)
    columns: dict[str, Any] = {
        "order_id": gen.random_ids(ctx.rng, n),
        "customer_id": pa.nulls(n, pa.string()),
        "order_status": pa.array(["delivered" if bad else "created"] * n, pa.string()),
        "order_purchase_timestamp": gen.timestamps(seconds),
        "order_estimated_delivery_date": gen.timestamps(seconds - seconds % DAY + 20 * DAY),
        UPDATED_AT: _ts(times),
    }
    customers = ctx.tables["customers"]["customer_id"]
    if bad and len(customers):
        columns["customer_id"] = customers.take(pa.array(ctx.rng.integers(0, len(customers), n)))
    if bad:
        columns["order_approved_at"] = gen.timestamps(seconds + 3600, none)
        columns["order_delivered_carrier_date"] = gen.timestamps(seconds + DAY, none)
        columns["order_delivered_customer_date"] = gen.timestamps(seconds - 3 * DAY, none)
    ctx.batch.insert("orders", gen.build_table("orders", columns), "dirty", defect)


def _dirty_items(ctx: _Ctx, n: int, defect: str) -> None:
    """Extra items on existing orders: a negative price or an unknown product."""
    rows = ctx.pick_orders(ctx.live_orders(), n, "dirty")
    if not len(rows):
        return
    ids = ctx.orders["order_id"].take(pa.array(rows)).combine_chunks()
    items = _select(ctx.tables["order_items"], ids, live_only=False)
    last = np.zeros(len(rows), dtype=np.int64)
    np.maximum.at(last, _parent(items, ids), _np(items, "order_item_id").astype(np.int64))
    pairs = _sale_pairs(ctx)
    pairs = pairs.take(pa.array(ctx.rng.integers(0, pairs.num_rows, len(rows))))
    times = ctx.batch.times(len(rows))
    price = pairs["price"]
    product = pairs["product_id"]
    if defect == "negative_price":
        price = pc.negate(price)
    else:
        product = gen.random_ids(ctx.rng, len(rows))
    table = gen.build_table(
        "order_items",
        {
            "order_id": ids,
            "order_item_id": pa.array(last + 1),
            "product_id": product,
            "seller_id": pairs["seller_id"],
            "shipping_limit_date": gen.timestamps(times // US + 6 * DAY),
            "price": price,
            "freight_value": pairs["freight_value"],
            UPDATED_AT: _ts(times),
        },
    )
    ctx.batch.insert("order_items", table, "dirty", defect)


def _dirty_reviews(ctx: _Ctx, n: int, defect: str) -> None:
    """New reviews scored outside 1-5, or copies of a review under a new review_id."""
    rng = ctx.rng
    if defect == "score_out_of_range":
        rows = ctx.pick_orders(ctx.live_orders(), n, "dirty")
        times = ctx.batch.times(len(rows))
        seconds = times // US
        score = np.asarray([0, 6, 7, 8, 9])[rng.integers(0, 5, len(rows))]
        title, message = gen.review_texts(rng, np.full(len(rows), 5, dtype=np.int64))
        columns: dict[str, Any] = {
            "review_id": gen.random_ids(rng, len(rows)),
            "order_id": ctx.orders["order_id"].take(pa.array(rows)),
            "review_score": pa.array(score),
            "review_comment_title": title,
            "review_comment_message": message,
            "review_creation_date": gen.timestamps(seconds - seconds % DAY),
            "review_answer_timestamp": gen.timestamps(seconds),
            UPDATED_AT: _ts(times),
        }
        table = gen.build_table("order_reviews", columns)
    else:
        reviews = ctx.tables["order_reviews"]
        parent = _parent(reviews, ctx.orders["order_id"].combine_chunks())
        free = (parent >= 0) & ~ctx.taken[np.clip(parent, 0, None)]
        rows = _sample(rng, np.flatnonzero(free), n, "dirty")
        ctx.taken[parent[rows]] = True
        table = reviews.take(pa.array(rows))
        table = gen.set_column(table, "review_id", gen.random_ids(rng, len(rows)))
        table = gen.set_column(table, UPDATED_AT, _ts(ctx.batch.times(len(rows))))
        table = gen.set_column(table, DELETED_AT, pa.nulls(len(rows), pa.timestamp("us")))
    ctx.batch.insert("order_reviews", table, "dirty", defect)


def _dirty_geolocation(ctx: _Ctx, db: SourceDatabase, n: int) -> None:
    """Copies of existing GPS points under new geolocation ids."""
    if not len(ctx.geo_ids) or n == 0:
        return
    source = ctx.geo_ids[ctx.rng.integers(0, len(ctx.geo_ids), n)]
    wanted = np.unique(source)
    geo = source_table("geolocation")
    marks = ", ".join(db.param(i + 1) for i in range(len(wanted)))
    sql = f'SELECT * FROM {db.qualified(geo)} WHERE "geolocation_id" IN ({marks})'
    found = db.cast_to_catalog(geo, db.query(sql, [int(v) for v in wanted]))
    found = found.sort_by("geolocation_id")
    copies = found.take(pa.array(np.searchsorted(_np(found, "geolocation_id"), source)))
    ids = int(ctx.geo_ids[-1]) + 1 + np.arange(n, dtype=np.int64)
    copies = gen.set_column(copies, "geolocation_id", pa.array(ids))
    copies = gen.set_column(copies, UPDATED_AT, _ts(ctx.batch.times(n)))
    copies = gen.set_column(copies, DELETED_AT, pa.nulls(n, pa.timestamp("us")))
    ctx.batch.insert("geolocation", copies.select(geo.arrow_schema().names), "dirty", "duplicate")


def _dirty(ctx: _Ctx, db: SourceDatabase, k: int) -> None:
    """``k`` dirty rows, the defects of :data:`_DIRTY_KINDS` in rotation."""
    per_kind = np.bincount(np.arange(k) % len(_DIRTY_KINDS), minlength=len(_DIRTY_KINDS))
    for (table, defect), n in zip(_DIRTY_KINDS, per_kind.tolist(), strict=True):
        if n == 0:
            continue
        if table == "orders":
            _dirty_orders(ctx, n, defect)
        elif table == "order_items":
            _dirty_items(ctx, n, defect)
        elif table == "order_reviews":
            _dirty_reviews(ctx, n, defect)
        else:
            _dirty_geolocation(ctx, db, n)


# -- entry point ----------------------------------------------------------------------------------
def apply_changes(db: SourceDatabase, spec: ChangeSpec) -> ChangeManifest:
    """Plan one batch of ``spec`` changes over the current source and write it in bulk."""
    ctx = _snapshot(db, spec)
    _new_orders(ctx, spec.new_orders)
    _status_updates(ctx, spec.status_updates)
    _customer_moves(ctx, spec.customer_moves)
    _product_updates(ctx, spec.product_updates)
    _seller_moves(ctx, spec.seller_moves)
    _soft_deletes(ctx, spec.soft_deletes)
    _hard_deletes(ctx, spec.hard_deletes)
    _late_updates(ctx, spec.late_updates)
    _dirty(ctx, db, spec.dirty)
    for op, name, data in ctx.batch.writes:
        table = source_table(name)
        if op == "upsert":
            db.upsert(table, data)
        elif op == "update":
            db.update_rows(table, data)
        else:
            db.delete_rows(table, data)
    batch_time = pa.scalar(ctx.batch.start_us, pa.int64()).cast(pa.timestamp("us")).as_py()
    log.info("applied change batch at %s: %s", batch_time, ctx.batch.counts)
    return ChangeManifest(batch_time, spec.seed, ctx.batch.counts, ctx.batch.changes)
