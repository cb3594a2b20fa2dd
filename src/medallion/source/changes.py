"""One batch of realistic changes applied to an existing source database.

:func:`apply_changes` reads the tables it needs as Arrow, plans every change set-based from that
snapshot, writes them with bulk upserts, updates and deletes, and returns a
:class:`ChangeManifest` that lists each changed row (key, operation, old and new values).

The clock is logical: the batch time is the newest ``updated_at`` in the source plus one day, and
each changed row gets the batch time plus a small per-change offset in seconds. Late updates are
the exception on purpose: they carry an ``updated_at`` at or just before their table's previous
maximum, like commits that became visible late. A key is touched by at most one change type per
batch, and the batch is deterministic for a seed and a given database.

The change types live in :mod:`~medallion.source.new_orders`, :mod:`~medallion.source.updates`
and :mod:`~medallion.source.dirty_changes` (rows broken by the defects of
:mod:`~medallion.source.defects`); the batch they share is :mod:`~medallion.source.batch`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from medallion.catalog import source_table
from medallion.errors import ConfigError
from medallion.source.batch import iso, snapshot
from medallion.source.db import SourceDatabase
from medallion.source.dirty_changes import dirty
from medallion.source.new_orders import new_orders
from medallion.source.updates import (
    customer_moves,
    hard_deletes,
    late_updates,
    product_updates,
    seller_moves,
    soft_deletes,
    status_updates,
)

log = logging.getLogger(__name__)


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
            "batch_time": iso(self.batch_time),
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


def apply_changes(db: SourceDatabase, spec: ChangeSpec) -> ChangeManifest:
    """Plan one batch of ``spec`` changes over the current source and write it in bulk."""
    ctx = snapshot(db, spec.seed)
    new_orders(ctx, spec.new_orders)
    status_updates(ctx, spec.status_updates)
    customer_moves(ctx, spec.customer_moves)
    product_updates(ctx, spec.product_updates)
    seller_moves(ctx, spec.seller_moves)
    soft_deletes(ctx, spec.soft_deletes)
    hard_deletes(ctx, spec.hard_deletes)
    late_updates(ctx, spec.late_updates)
    dirty(ctx, spec.dirty)
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
