"""Synthetic Olist-shaped source data: deterministic per seed, vectorised, at any scale.

:func:`generate` builds the nine source tables with the catalog's Arrow schemas, following the
profile of SOURCE.md (:mod:`~medallion.source.profile`; the tables are built in
:mod:`~medallion.source.dimensions` and :mod:`~medallion.source.orders`); with
``dirty_rate > 0`` it also corrupts or copies a share of rows with the defects of
:mod:`~medallion.source.defects` and lists every one of them in :attr:`GeneratedData.dirty`.
:func:`write_to_source` loads the result into a source database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from medallion.catalog import SOURCE_TABLES
from medallion.errors import ConfigError
from medallion.source.arrays import I64, Rng, replace_rows, row_keys
from medallion.source.db import SourceDatabase
from medallion.source.defects import DEFECTS, Defect, defects_of
from medallion.source.dimensions import (
    build_geolocation,
    build_products,
    build_sellers,
    build_translation,
)
from medallion.source.orders import (
    build_customers,
    build_items,
    build_orders,
    build_payments,
    build_reviews,
    draw_orders,
)
from medallion.source.profile import sizes

DIRTY_SCHEMA = pa.schema([("table", pa.string()), ("key", pa.string()), ("defect", pa.string())])
_DIRTY_TABLES = tuple(dict.fromkeys(d.table for d in DEFECTS))  # in the order they are corrupted
_COPIED_WITH_REPLACEMENT = frozenset({"geolocation"})  # a point may be copied more than once


@dataclass(frozen=True)
class GeneratorConfig:
    """Scale factor (1 = the Kaggle size), random seed and share of dirty rows."""

    scale: float
    seed: int = 42
    dirty_rate: float = 0.0

    def __post_init__(self) -> None:
        if (
            not (isinstance(self.scale, int | float) and math.isfinite(self.scale))
            or self.scale <= 0
        ):
            raise ConfigError(f"generator scale must be a number > 0, got {self.scale!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"generator seed must be an integer >= 0, got {self.seed!r}")
        if not 0 <= self.dirty_rate <= 0.5:
            raise ConfigError(
                f"generator dirty_rate must be within 0..0.5, got {self.dirty_rate!r}"
            )


@dataclass(frozen=True)
class GeneratedData:
    """The source tables by short name (catalog schemas) and the list of injected dirty rows."""

    tables: dict[str, pa.Table]
    dirty: pa.Table

    def row_counts(self) -> dict[str, int]:
        return {name: table.num_rows for name, table in self.tables.items()}


# -- dirty rows -----------------------------------------------------------------------------------
def _pick(rng: Rng, n: int, k: int, kinds: int) -> list[I64]:
    """``k`` distinct sorted rows out of ``n``, split into ``kinds`` random groups."""
    rows = rng.choice(n, size=min(k, n), replace=False)
    kind = rng.integers(0, kinds, len(rows))
    return [np.sort(rows[kind == i]).astype(np.int64) for i in range(kinds)]


def _dirty_list(name: str, rows: pa.Table, defect: str) -> pa.Table:
    return pa.table(
        {"table": pa.array([name] * rows.num_rows, pa.string()), "key": row_keys(name, rows),
         "defect": pa.array([defect] * rows.num_rows, pa.string())},
        schema=DIRTY_SCHEMA,
    )  # fmt: skip


def _corrupt(
    rng: Rng, name: str, t: pa.Table, defects: tuple[Defect, ...], groups: list[I64]
) -> tuple[pa.Table, list[pa.Table]]:
    """Corrupt each group of rows with its defect (in place, or as extra copies at the end)."""
    copies, lists = [], []
    for defect, rows in zip(defects, groups, strict=True):
        bad = defect.corrupt(rng, t.take(pa.array(rows)), t.num_rows)  # serial keys run 1..n
        if defect.copy:
            copies.append(bad)
        else:
            for column in defect.columns:
                t = replace_rows(t, column, rows, bad[column].combine_chunks())
        lists.append(_dirty_list(name, bad, defect.name))
    return (pa.concat_tables([t, *copies]) if copies else t), lists


def _inject_dirty(rng: Rng, tables: dict[str, pa.Table], rate: float) -> pa.Table:
    """Corrupt or copy about ``rate`` x rows of each table that has defects; the dirty list."""
    lists: list[pa.Table] = []
    for name in _DIRTY_TABLES:
        n, defects = tables[name].num_rows, defects_of(name)
        k = round(rate * n)
        if name in _COPIED_WITH_REPLACEMENT:
            groups = [np.sort(rng.choice(n, size=k, replace=True)).astype(np.int64)]
        else:
            groups = _pick(rng, n, k, len(defects))
        tables[name], found = _corrupt(rng, name, tables[name], defects, groups)
        lists.extend(found)
    return pa.concat_tables([DIRTY_SCHEMA.empty_table(), *lists])


# -- entry points ---------------------------------------------------------------------------------
def generate(config: GeneratorConfig) -> GeneratedData:
    """The nine source tables at ``config.scale``, deterministic for ``config.seed``."""
    size = sizes(config.scale)
    rngs = np.random.default_rng(config.seed).spawn(8)
    sellers = build_sellers(rngs[0], size.sellers)
    products = build_products(rngs[1], size.products, size.sellers)
    orders = draw_orders(rngs[2], size.orders)
    customers, customer_zips = build_customers(rngs[3], orders, size.customer_zips)
    seller_ids = sellers.table["seller_id"].combine_chunks()
    items, totals = build_items(rngs[4], orders, products, seller_ids)
    tables = {
        "customers": customers,
        "geolocation": build_geolocation(rngs[5], np.r_[customer_zips, sellers.zips], size),
        "order_items": items,
        "order_payments": build_payments(rngs[6], orders, totals, config.scale),
        "order_reviews": build_reviews(rngs[7], orders),
        "orders": build_orders(orders, customers["customer_id"].combine_chunks()),
        "products": products.table,
        "sellers": sellers.table,
        "product_category_name_translation": build_translation(),
    }
    dirty = DIRTY_SCHEMA.empty_table()
    if config.dirty_rate > 0:
        dirty_rng = np.random.default_rng([config.seed, 0xD1127])
        dirty = _inject_dirty(dirty_rng, tables, config.dirty_rate)
    return GeneratedData(tables={t.name: tables[t.name] for t in SOURCE_TABLES}, dirty=dirty)


def write_to_source(db: SourceDatabase, data: GeneratedData) -> dict[str, int]:
    """Create the source tables and upsert every generated table; rows written per table."""
    db.create_tables(SOURCE_TABLES)
    return {t.name: db.upsert(t, data.tables[t.name]) for t in SOURCE_TABLES}
