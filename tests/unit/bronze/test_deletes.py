"""Which keys Bronze holds live: the latest row per key decides, a delete winning a full tie."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from medallion.bronze.deletes import _live_keys
from medallion.catalog import source_table

CUSTOMERS = source_table("customers")
T1 = datetime(2018, 1, 1)
T2 = T1 + timedelta(days=1)
I1, I2 = datetime(2026, 1, 1), datetime(2026, 1, 2)


def history(rows: list[tuple[str, datetime, datetime, str]]) -> pa.Table:
    key, updated, ingested, op = zip(*rows, strict=True)
    return pa.table(
        {
            "customer_id": pa.array(key, pa.string()),
            "_source_updated_at": pa.array(updated, pa.timestamp("us")),
            "_ingested_at": pa.array(ingested, pa.timestamp("us")),
            "_op": pa.array(op, pa.string()),
        }
    )


def test_the_latest_row_decides_and_a_delete_wins_a_full_tie() -> None:
    held = history(
        [
            ("deleted_later", T1, I1, "upsert"),
            ("deleted_later", T2, I1, "delete"),
            ("reinserted", T1, I1, "delete"),
            ("reinserted", T2, I2, "upsert"),
            ("full_tie", T2, I1, "upsert"),
            ("full_tie", T2, I1, "delete"),
            ("ingested_later_delete", T2, I1, "upsert"),
            ("ingested_later_delete", T2, I2, "delete"),
            ("ingested_later_upsert", T2, I1, "delete"),
            ("ingested_later_upsert", T2, I2, "upsert"),
            ("late_old_row", T2, I1, "upsert"),
            ("late_old_row", T1, I2, "delete"),  # an older source version ingested later
            ("only", T1, I1, "upsert"),
        ]
    )
    live = _live_keys(held, CUSTOMERS).sort_by("customer_id").to_pylist()
    assert live == [
        {"customer_id": "ingested_later_upsert", "_source_updated_at": T2},
        {"customer_id": "late_old_row", "_source_updated_at": T2},
        {"customer_id": "only", "_source_updated_at": T1},
        {"customer_id": "reinserted", "_source_updated_at": T2},
    ]
