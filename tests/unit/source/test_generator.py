"""The generator: configuration, determinism, dirty rows and loading into a source database."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.errors import ConfigError
from medallion.source.db import open_source
from medallion.source.defects import DEFECT_NAMES
from medallion.source.generator import (
    GeneratedData,
    GeneratorConfig,
    generate,
    write_to_source,
)


def secs(table: pa.Table, col: str) -> tuple[np.ndarray, np.ndarray]:
    """A timestamp column as int64 seconds (0 where NULL) and its validity."""
    arr = table[col].cast(pa.int64())
    return arr.fill_null(0).to_numpy() // 1_000_000, pc.is_valid(arr).to_numpy()


def isin(values: pa.ChunkedArray, reference: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.is_in(values, value_set=reference.combine_chunks())


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": 0}, {"scale": -1}, {"scale": math.nan}, {"scale": 1, "dirty_rate": -0.1},
     {"scale": 1, "dirty_rate": 0.51}, {"scale": 1, "seed": -3}],
)  # fmt: skip
def test_bad_config_is_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"generator \w+ must be"):
        GeneratorConfig(**kwargs)  # type: ignore[arg-type]


def test_same_seed_same_data_other_seed_other_data(data: Callable[..., GeneratedData]) -> None:
    first, again = data(0.01, seed=5), generate(GeneratorConfig(scale=0.01, seed=5))
    other = data(0.01, seed=6)
    for name in first.tables:
        assert first.tables[name].equals(again.tables[name]), name
        if name != "product_category_name_translation":
            assert not first.tables[name].equals(other.tables[name]), name
    dirty = generate(GeneratorConfig(scale=0.01, seed=5, dirty_rate=0.1))
    assert dirty.dirty.equals(data(0.01, seed=5, dirty_rate=0.1).dirty)


# -- dirty rows ---------------------------------------------------------------------------------
def listed(generated: GeneratedData, name: str, defect: str) -> pa.Table:
    """The rows of ``name`` that the dirty list names with ``defect``."""
    dirty = generated.dirty
    keys = dirty.filter(pc.and_(pc.equal(dirty["table"], name), pc.equal(dirty["defect"], defect)))
    table = generated.tables[name]
    cols = [pc.cast(table[c], pa.string()) for c in source_table(name).row_key]
    row_key = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, "|")
    found = table.filter(isin(row_key, keys["key"]))
    assert found.num_rows == keys.num_rows > 0, (name, defect)
    return found


def test_dirty_rows_are_listed_and_present(data: Callable[..., GeneratedData]) -> None:
    rate = 0.1
    generated, clean = data(0.01, dirty_rate=rate), data(0.01)
    t, dirty = generated.tables, generated.dirty
    assert set(pc.unique(dirty["defect"]).to_pylist()) == set(DEFECT_NAMES)
    assert pc.all(pc.is_valid(dirty["key"])).as_py()
    for name in ("orders", "order_items", "order_reviews", "geolocation"):
        n = pc.sum(pc.equal(dirty["table"], name)).as_py()
        assert n == round(rate * clean.tables[name].num_rows), name
    customers = t["customers"]["customer_id"]
    assert listed(generated, "orders", "null_required")["customer_id"].null_count > 0
    unknown = listed(generated, "orders", "unknown_reference")
    assert not pc.any(isin(unknown["customer_id"], customers)).as_py()
    bad = listed(generated, "orders", "bad_timestamp")
    purchase, _ = secs(bad, "order_purchase_timestamp")
    delivered, has_d = secs(bad, "order_delivered_customer_date")
    years = pc.year(bad["order_purchase_timestamp"]).to_numpy()
    assert ((has_d & (delivered < purchase)) | np.isin(years, [1900, 2100])).all()
    assert pc.all(pc.less(listed(generated, "order_items", "negative_price")["price"], 0)).as_py()
    assert listed(generated, "order_items", "null_required")["product_id"].null_count > 0
    odd = listed(generated, "order_items", "unknown_reference")
    known = pc.and_(isin(odd["product_id"], t["products"]["product_id"]),
                    isin(odd["seller_id"], t["sellers"]["seller_id"]))  # fmt: skip
    assert not pc.any(known).as_py()
    scores = listed(generated, "order_reviews", "score_out_of_range")["review_score"]
    assert set(scores.to_pylist()) <= {0, 6, 7, 8, 9}
    late = listed(generated, "order_reviews", "bad_timestamp")
    created, _ = secs(late, "review_creation_date")
    answered, _ = secs(late, "review_answer_timestamp")
    assert ((answered < created) | (pc.year(late["review_creation_date"]).to_numpy() == 2100)).all()
    copies = listed(generated, "order_reviews", "duplicate")
    content = ["order_id", "review_score", "review_creation_date", "review_answer_timestamp"]
    originals = t["order_reviews"].filter(
        pc.invert(isin(t["order_reviews"]["review_id"], copies["review_id"]))
    )
    assert (
        copies.select(content).join(originals.select(content), content).num_rows >= copies.num_rows
    )
    points = listed(generated, "geolocation", "duplicate")
    point = ["geolocation_zip_code_prefix", "geolocation_lat", "geolocation_lng"]
    assert points.select(point).join(clean.tables["geolocation"].select(point), point).num_rows == (
        points.num_rows
    )


def test_dirty_generation_leaves_other_rows_clean(data: Callable[..., GeneratedData]) -> None:
    generated, clean = data(0.01, dirty_rate=0.1), data(0.01)
    for name in ("customers", "order_payments", "products", "sellers"):
        assert generated.tables[name].equals(clean.tables[name]), name
    dirty_keys = set(generated.dirty["key"].to_pylist())
    for name in ("orders", "order_items", "order_reviews", "geolocation"):
        table = generated.tables[name]
        cols = [pc.cast(table[c], pa.string()) for c in source_table(name).row_key]
        keys = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, "|")
        keep = pc.invert(isin(keys, pa.chunked_array([pa.array(sorted(dirty_keys))])))
        assert table.filter(keep).equals(
            clean.tables[name].filter(keep.combine_chunks()[: clean.tables[name].num_rows])
        ), name


def test_write_to_source_round_trips(data: Callable[..., GeneratedData], tmp_path: Path) -> None:
    generated = data(0.01, dirty_rate=0.05)
    with open_source(str(tmp_path / "source.db"), create=True) as db:
        rows = write_to_source(db, generated)
        assert rows == generated.row_counts()
        for table in SOURCE_TABLES:
            back = db.read_table(table)
            keys = [(k, "ascending") for k in table.row_key]
            expected = generated.tables[table.name].sort_by(keys)
            assert back.sort_by(keys).cast(expected.schema).equals(expected), table.name
