"""Silver's generated SQL, without a lake."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from medallion.engine import DuckDBEngine
from medallion.silver.contracts import silver_table
from medallion.silver.transform import _content_json, _native_json

# every character JSON escapes, quotes, backslashes, text beyond ASCII, empty and NULL
TEXTS = [None, "", "plain", 'a"b', "a\\b", "é ü 中文 😀", "/x/", "\x7f"] + [
    f"x{chr(c)}y" for c in range(0x20)
]


def test_duckdbs_own_json_is_the_portable_content_text() -> None:
    """The content hash is stored and compared across runs and engines: DuckDB's
    ``to_json`` may stand in for the portable text only while the two are the same."""
    n = len(TEXTS)
    rows = pa.table(
        {
            "order_id": TEXTS,
            "review_score": pa.array([None if i % 5 == 0 else i - 3 for i in range(n)], pa.int16()),
            "review_comment_title": list(reversed(TEXTS)),
            "review_comment_message": TEXTS,
            "review_creation_date": pa.array(
                [
                    None if i % 7 == 0 else datetime(2017, 1, 1, 0, 0, i, 1234 * (i % 2))
                    for i in range(n)
                ],
                pa.timestamp("us"),
            ),
            "review_answer_timestamp": [datetime(1999, 12, 31, 23, 59, 59)] * n,
        }
    )
    spec = silver_table("order_reviews")
    assert set(spec.unique_content) <= set(rows.column_names)
    got = DuckDBEngine().query(
        f"SELECT {_content_json(spec)} AS portable, {_native_json(spec)} AS native FROM r",
        {"r": rows},
    )
    assert got["native"].to_pylist() == got["portable"].to_pylist()
    assert got["portable"][3].as_py().startswith('{"order_id":"a\\"b",')
