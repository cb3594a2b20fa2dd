"""Silver's generated SQL, without a lake."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from medallion.engine import DuckDBEngine
from medallion.silver.contracts import Col, Reference, SilverTable, silver_table
from medallion.silver.transform import _conformed_select, _content_json, _native_json, check

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


CITY_PARTS = ["sao paulo", "S\u00e3o  Paulo ", "santa barbara d\u00b4oeste", "rio / rj",
              "santos - sp", "12345", "a@b", "", " ", "\u00c9vora, brasil", "-"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(cities=st.lists(st.one_of(st.none(), st.sampled_from(CITY_PARTS), st.text(max_size=6))))
def test_a_column_conformed_per_distinct_value_equals_it_conformed_row_by_row(
    cities: list[str | None],
) -> None:
    """Geolocation's city is conformed once per distinct value and joined back: every row,
    NULLs, repeats and broken values included, gets what the row-by-row expression gives it,
    and no row is lost or doubled by the join."""
    spec = silver_table("geolocation")
    assert any(c.per_value_of for c in spec.columns)
    row_by_row = replace(spec, columns=tuple(replace(c, per_value_of=None) for c in spec.columns))
    n = len(cities)
    bronze = pa.table(
        {
            "geolocation_id": [str(i) for i in range(n)],
            "geolocation_zip_code_prefix": ["1001"] * n,
            "geolocation_lat": ["-23.5"] * n,
            "geolocation_lng": ["-46.6"] * n,
            "geolocation_city": pa.array(cities, pa.string()),
            "geolocation_state": ["sp"] * n,
            "updated_at": pa.array([datetime(2018, 1, 1)] * n, pa.timestamp("us")),
            "deleted_at": pa.nulls(n, pa.timestamp("us")),
            "_op": ["upsert"] * n,
            "_source_updated_at": pa.array([datetime(2018, 1, 1)] * n, pa.timestamp("us")),
            "_ingested_at": pa.array([datetime(2018, 1, 2)] * n, pa.timestamp("us")),
            "_run_id": ["r"] * n,
        }
    )
    engine = DuckDBEngine()

    def conformed(s: SilverTable) -> list[dict[str, object]]:
        sql = f"SELECT * FROM ({_conformed_select(s)}) ORDER BY geolocation_id"
        return engine.query(sql, {"bronze": bronze}).to_pylist()

    assert conformed(spec) == conformed(row_by_row)


# a child whose two columns both name a row of one parent table
TWO_PARENTS = SilverTable(
    "child",
    "child",
    key=("k",),
    columns=(Col("k", "VARCHAR", "k"), Col("a", "VARCHAR", "a"), Col("b", "VARCHAR", "b")),
    references=(Reference(("a",), "p", ("id",)), Reference(("b",), "p", ("id",))),
)
IDS = [f"p{i}" for i in range(8)]


@settings(max_examples=40, deadline=None)
@given(
    held=st.sets(st.sampled_from(IDS)),
    named=st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from(IDS)), st.sampled_from(IDS)), max_size=6
    ),
)
def test_a_reference_rule_judges_a_row_by_the_whole_parent_table(
    held: set[str], named: list[tuple[str | None, str]]
) -> None:
    """The parents a batch names are read by its keys alone (:func:`_asked_parents_sql`), and
    each row still breaks exactly the rules whose key the parent lacks, a NULL breaking
    none, two references to one table each judged on its own column."""
    n = len(named)
    stamp = pa.array([datetime(2020, 1, 1)] * n, pa.timestamp("us"))
    bronze = pa.table(
        {
            "k": [f"c{i}" for i in range(n)],
            "a": [a for a, _ in named],
            "b": [b for _, b in named],
            "updated_at": stamp,
            "deleted_at": pa.nulls(n, pa.timestamp("us")),
            "_source_updated_at": stamp,
            "_ingested_at": stamp,
            "_op": ["upsert"] * n,
            "_run_id": ["r"] * n,
        }
    )
    parents = pa.table({"id": pa.array([*sorted(held), "unrelated"], pa.string())})
    checked = check(TWO_PARENTS, bronze, {"p": parents}, engine=DuckDBEngine())
    got = {r["k"]: sorted(r["_broken"]) for r in checked.rows.to_pylist()}  # type: ignore[union-attr]
    want = {
        f"c{i}": sorted(
            ["a_exists_in_p"] * (a is not None and a not in held)
            + ["b_exists_in_p"] * (b not in held)
        )
        for i, (a, b) in enumerate(named)
    }
    assert got == want
