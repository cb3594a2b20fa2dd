"""Reading, writing and loading the Olist Kaggle CSV files (real files and generated ones)."""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medallion.catalog import SourceTable, source_table
from medallion.errors import InputFileError
from medallion.source.db import SourceDatabase, open_source
from medallion.source.kaggle_csv import load_csv_dir, read_kaggle_csv, write_kaggle_csv

LOADED_AT = datetime(2024, 1, 2, 3, 4, 5)
LATER = LOADED_AT + timedelta(days=1)
REAL = {  # table -> sha256 of the uncompressed file (data README)
    "products": "3e6569628a17fbc75fd206ee357b59e20364b9afa90f5b6cd5b4d624c58aa9cc",
    "sellers": "1f643d2b950373b85735e7794b20986f528d7a000432e7c6f9bcbb44d0846a0e",
    "product_category_name_translation": (
        "a81f0d1f27b27e7293f761bc79e3ce8f348ee39c4b3ed3e49bde38f478586278"
    ),
}
ITEMS_HEADER = (
    '"order_id","order_item_id","product_id","seller_id","shipping_limit_date",'
    '"price","freight_value"\n'
)
ITEM_LINE = (
    '"00010242fe8c5a6d1ba2dd792cb16214",1,"4244733e06e7ecb4970a6e2683c13e61",'
    '"48436dadf9f0c01e3ddaa6fb8beb4c1d",2017-09-19 09:45:35,58.90,13.29\n'
)
REVIEWS_HEADER = (
    '"review_id","order_id","review_score","review_comment_title","review_comment_message",'
    '"review_creation_date","review_answer_timestamp"\n'
)


def _real(olist_dir: Path, name: str) -> tuple[SourceTable, Path]:
    table = source_table(name)
    return table, olist_dir / f"{table.csv_file}.gz"


def _file(directory: Path, name: str, text: str) -> Path:
    path = directory / source_table(name).csv_file
    path.write_bytes(text.encode())
    return path


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=source_table(name).arrow_schema(business_only=True))


def _round_trip(data: pa.Table, name: str, directory: Path) -> pa.Table:
    table = source_table(name)
    return read_kaggle_csv(write_kaggle_csv(data, table, directory), table).table


def _count(values: pa.ChunkedArray) -> int:
    return int(pc.sum(values).as_py() or 0)


def _error(path: Path, name: str) -> str:
    with pytest.raises(InputFileError) as info:
        read_kaggle_csv(path, source_table(name))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# -- the real files --------------------------------------------------------------------------


def test_real_products(olist_dir: Path) -> None:
    table, path = _real(olist_dir, "products")
    read = read_kaggle_csv(path, table)
    data = read.table
    assert (read.rows_in_file, read.duplicates_dropped, data.num_rows) == (32_951, 0, 32_951)
    assert data.schema == table.arrow_schema(business_only=True)
    no_category = pc.is_null(data["product_category_name"])
    assert _count(no_category) == 610
    for name in ("product_name_lenght", "product_description_lenght", "product_photos_qty"):
        assert pc.all(pc.equal(pc.is_null(data[name]), no_category)).as_py()
    for name in ("product_weight_g", "product_length_cm", "product_height_cm"):
        assert data[name].null_count == 2
    assert _count(pc.equal(data["product_weight_g"], 0)) == 4
    assert pc.count_distinct(data["product_category_name"]).as_py() == 73
    assert data["product_id"][0].as_py() == "1e9e8ef04dbcff4541ed26657ea517e5"


def test_real_sellers(olist_dir: Path) -> None:
    table, path = _real(olist_dir, "sellers")
    data = read_kaggle_csv(path, table).table
    assert data.num_rows == 3_095
    zips = data["seller_zip_code_prefix"]
    assert pc.min_max(pc.utf8_length(zips)).as_py() == {"min": 5, "max": 5}
    assert "01037" not in zips.to_pylist()  # the README example; not a seller zip
    assert "01044" in zips.to_pylist()
    assert _count(pc.starts_with(zips, "0")) == 1_027
    assert _count(pc.equal(data["seller_state"], "SP")) == 1_849
    assert pc.count_distinct(data["seller_state"]).as_py() == 23


def test_real_translation(olist_dir: Path) -> None:
    table, path = _real(olist_dir, "product_category_name_translation")
    data = read_kaggle_csv(path, table).table
    assert data.num_rows == 71
    assert data.column_names[0] == "product_category_name"
    assert data.slice(70).to_pylist() == [
        {
            "product_category_name": "seguros_e_servicos",
            "product_category_name_english": "security_and_services",
        }
    ]
    assert "pc_gamer" not in data["product_category_name"].to_pylist()


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_round_trip_byte_for_byte(olist_dir: Path, tmp_path: Path, name: str) -> None:
    table, path = _real(olist_dir, name)
    written = write_kaggle_csv(read_kaggle_csv(path, table).table, table, tmp_path)
    assert written.name == table.csv_file
    assert written.read_bytes() == gzip.decompress(path.read_bytes())
    assert hashlib.sha256(written.read_bytes()).hexdigest() == REAL[name]


# -- generated files -------------------------------------------------------------------------

REVIEW_ROWS: list[dict[str, Any]] = [
    {
        "review_id": "7bc2406110b926393aa56f80a40eba40",
        "order_id": "73fc7af87114b39712e6da79b0a377eb",
        "review_score": 4,
        "review_comment_title": None,
        "review_comment_message": None,
        "review_creation_date": datetime(2018, 1, 18),
        "review_answer_timestamp": datetime(2018, 1, 18, 21, 46, 59),
    },
    {
        "review_id": "80e641a11e56f04c1ad469d5645fdfde",
        "order_id": "a548910a1c6147796b98fdf73dbeba33",
        "review_score": 5,
        "review_comment_title": "",
        "review_comment_message": 'Ótimo, "recomendo"\r\nchegou antes,\nobrigado',
        "review_creation_date": datetime(2018, 3, 10),
        "review_answer_timestamp": None,
    },
    {
        "review_id": "228ce5500dc1d8e020d8d1322874b6f0",
        "order_id": "f9e4b658b201a9f2ecdecbb34bed034b",
        "review_score": None,
        "review_comment_title": "10/10",
        "review_comment_message": "Parabéns lojas lannister adorei comprar pela Internet",
        "review_creation_date": datetime(2018, 2, 17),
        "review_answer_timestamp": datetime(2018, 2, 18, 13, 2, 51),
    },
]


def test_reviews_quoting_and_round_trip(tmp_path: Path) -> None:
    data = _table("order_reviews", REVIEW_ROWS)
    path = write_kaggle_csv(data, source_table("order_reviews"), tmp_path)
    assert path.read_bytes().decode() == REVIEWS_HEADER + (
        '"7bc2406110b926393aa56f80a40eba40",'
        '"73fc7af87114b39712e6da79b0a377eb",4,,,2018-01-18 00:00:00,2018-01-18 21:46:59\n'
        '"80e641a11e56f04c1ad469d5645fdfde",a548910a1c6147796b98fdf73dbeba33,5,"",'
        '"Ótimo, ""recomendo""\r\nchegou antes,\nobrigado",2018-03-10 00:00:00,\n'
        '"228ce5500dc1d8e020d8d1322874b6f0",f9e4b658b201a9f2ecdecbb34bed034b,,"10/10",'
        "Parabéns lojas lannister adorei comprar pela Internet,"
        "2018-02-17 00:00:00,2018-02-18 13:02:51\n"
    )
    assert read_kaggle_csv(path, source_table("order_reviews")).table.equals(data)
    gz = tmp_path / f"{path.name}.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_kaggle_csv(gz, source_table("order_reviews")).table.equals(data)


def test_items_money_exact(tmp_path: Path) -> None:
    path = _file(tmp_path, "order_items", ITEMS_HEADER + ITEM_LINE)
    data = read_kaggle_csv(path, source_table("order_items")).table
    row = data.to_pylist()[0]
    assert (row["price"], row["freight_value"]) == (Decimal("58.90"), Decimal("13.29"))
    assert row["shipping_limit_date"] == datetime(2017, 9, 19, 9, 45, 35)
    assert data.schema.field("price").type == pa.decimal128(12, 2)
    path.unlink()
    assert write_kaggle_csv(data, source_table("order_items"), tmp_path).read_text() == (
        ITEMS_HEADER + ITEM_LINE
    )


def test_duplicate_keys_keep_the_last(tmp_path: Path) -> None:
    second = ITEM_LINE.replace("58.90", "60.00")
    other = ITEM_LINE.replace(",1,", ",2,")
    path = _file(tmp_path, "order_items", ITEMS_HEADER + ITEM_LINE + other + second)
    read = read_kaggle_csv(path, source_table("order_items"))
    assert (read.rows_in_file, read.duplicates_dropped) == (3, 1)
    assert read.table["order_item_id"].to_pylist() == [2, 1]
    assert read.table["price"].to_pylist() == [Decimal("58.90"), Decimal("60.00")]


# any text but NUL, which no text column can hold (a file with one is refused)
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
HEX_ID = st.text("0123456789abcdef", min_size=32, max_size=32)
MONEY = st.decimals(
    min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2
)
TIMESTAMP = st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(
    lambda t: t.replace(microsecond=0)
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(TEXT, st.none() | TEXT, st.none() | TEXT, st.none() | TIMESTAMP),
        max_size=8,
    ),
    st.lists(st.tuples(st.none() | MONEY, st.none() | MONEY, HEX_ID), max_size=8),
)
def test_property_text_and_money_round_trip(
    reviews: list[tuple[str, str | None, str | None, datetime | None]],
    items: list[tuple[Decimal | None, Decimal | None, str]],
) -> None:
    review_rows = [
        {
            "review_id": f"{i:032x}",
            "order_id": order_id,
            "review_score": i - 3,
            "review_comment_title": title,
            "review_comment_message": message,
            "review_creation_date": created,
            "review_answer_timestamp": None,
        }
        for i, (order_id, title, message, created) in enumerate(reviews)
    ]
    item_rows = [
        {"order_id": seller, "order_item_id": i, "seller_id": seller, "price": price}
        | {"freight_value": freight, "product_id": None, "shipping_limit_date": None}
        for i, (price, freight, seller) in enumerate(items)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in (("order_reviews", review_rows), ("order_items", item_rows)):
            data = _table(name, rows)
            assert _round_trip(data, name, Path(tmp)).equals(data)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.text("0123456789", min_size=5, max_size=5),
            st.none() | st.floats(allow_nan=False),
            st.none() | st.floats(-90, 90),
        ),
        max_size=8,
    )
)
def test_property_zip_and_float_round_trip(rows: list[tuple[str | None, Any, Any]]) -> None:
    data = _table(
        "geolocation",
        [
            {"geolocation_zip_code_prefix": z, "geolocation_lat": lat, "geolocation_lng": lng}
            for z, lat, lng in rows
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        assert _round_trip(data, "geolocation", Path(tmp)).equals(data)


# -- errors ----------------------------------------------------------------------------------


def test_header_with_misspelled_column(tmp_path: Path) -> None:
    header = '"product_id","product_category_name","product_name_length","product_photos_qty"'
    path = _file(tmp_path, "products", header + "\n")
    message = _error(path, "products")
    assert "line 1" in message
    assert "missing column(s): product_name_lenght, product_description_lenght" in message
    assert "unexpected column(s): product_name_length" in message


def test_row_with_wrong_field_count_names_its_line(tmp_path: Path) -> None:
    good = REVIEWS_HEADER + '"1a",b,5,,"two\nlines",2018-01-01 00:00:00,\n'
    path = _file(tmp_path, "order_reviews", good + "c,d,5,,,,,extra\n")
    message = _error(path, "order_reviews")
    assert "line 4: expected 7 fields, found 8" in message


def test_non_numeric_price_names_column_line_and_value(tmp_path: Path) -> None:
    bad = ITEM_LINE.replace(",1,", ",2,").replace("58.90", "12,5")
    bad = bad.replace(",12,5,", ',"12,5",')
    path = _file(tmp_path, "order_items", ITEMS_HEADER + ITEM_LINE + bad)
    message = _error(path, "order_items")
    assert "line 3: column price: '12,5' is not an amount" in message


def test_bad_timestamp_and_int(tmp_path: Path) -> None:
    path = _file(tmp_path, "order_items", ITEMS_HEADER + ITEM_LINE.replace("09-19", "02-30"))
    assert "line 2: column shipping_limit_date: '2017-02-30 09:45:35'" in _error(
        path, "order_items"
    )
    path = _file(tmp_path, "order_items", ITEMS_HEADER + ITEM_LINE.replace(",1,", ",1.5,"))
    assert "line 2: column order_item_id: '1.5' is not an integer" in _error(path, "order_items")


def test_null_key_names_its_line(tmp_path: Path) -> None:
    nokey = ITEM_LINE.replace('"00010242fe8c5a6d1ba2dd792cb16214"', "")
    path = _file(tmp_path, "order_items", ITEMS_HEADER + ITEM_LINE + nokey)
    assert "line 3: key column order_id is empty" in _error(path, "order_items")


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in _error(_file(tmp_path, "sellers", ""), "sellers")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Any:
    with open_source(str(tmp_path / "source.db"), create=True) as db:
        yield db


def _load_error(db: SourceDatabase, directory: Path, tables: list[str] | None = None) -> str:
    with pytest.raises(InputFileError) as info:
        load_csv_dir(db, directory, loaded_at=LOADED_AT, tables=tables)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_directory_errors(sqlite_db: SourceDatabase, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert _load_error(sqlite_db, missing) == f"CSV directory {missing} does not exist"
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _load_error(sqlite_db, empty)
    assert "no Kaggle CSV file" in message
    assert "olist_orders_dataset.csv" in message
    _file(empty, "order_items", ITEMS_HEADER + ITEM_LINE)
    assert "olist_orders_dataset.csv" in _load_error(sqlite_db, empty, ["orders", "order_items"])


# -- loading ---------------------------------------------------------------------------------


def _updated_at(db: SourceDatabase, name: str) -> list[Any]:
    return db.read_table(source_table(name), ["updated_at"])["updated_at"].to_pylist()


def _assert_real_load(db: SourceDatabase, olist_dir: Path) -> None:
    results = load_csv_dir(db, olist_dir, loaded_at=LOADED_AT)
    assert [(r.table, r.rows_in_file, r.rows_upserted) for r in results] == [
        ("products", 32_951, 32_951),
        ("sellers", 3_095, 3_095),
        ("product_category_name_translation", 71, 71),
    ]
    load_csv_dir(db, olist_dir, loaded_at=LATER)
    tables = [source_table(r.table) for r in results]
    stats = {s["table"]: (s["rows"], s["max_updated_at"]) for s in db.stats(tables)}
    assert stats == {
        "products": (32_951, LOADED_AT),
        "sellers": (3_095, LOADED_AT),
        "product_category_name_translation": (71, LOADED_AT),
    }
    sellers = db.read_table(source_table("sellers"))
    assert "01044" in sellers["seller_zip_code_prefix"].to_pylist()


def test_load_real_files_into_sqlite(
    sqlite_db: SourceDatabase, olist_dir: Path, tmp_path: Path
) -> None:
    _assert_real_load(sqlite_db, olist_dir)
    table, path = _real(olist_dir, "sellers")
    sellers = read_kaggle_csv(path, table).table
    moved = sellers.set_column(
        2,
        "seller_city",
        pc.if_else(
            pc.equal(sellers["seller_id"], sellers["seller_id"][0]),
            "nova cidade",
            sellers["seller_city"],
        ),
    )
    write_kaggle_csv(moved, table, tmp_path / "csv")
    load_csv_dir(sqlite_db, tmp_path / "csv", loaded_at=LATER, tables=["sellers"])
    assert sorted(set(_updated_at(sqlite_db, "sellers"))) == [LOADED_AT, LATER]
    assert _updated_at(sqlite_db, "sellers").count(LATER) == 1


def test_load_geolocation_numbers_rows(sqlite_db: SourceDatabase, tmp_path: Path) -> None:
    text = (
        '"geolocation_zip_code_prefix","geolocation_lat","geolocation_lng",'
        '"geolocation_city","geolocation_state"\n'
        '"01037",-23.54562128115268,-46.63929204800168,sao paulo,SP\n'
        '"01037",-23.54562128115268,-46.63929204800168,sao paulo,SP\n'
        '"01046",-23.546081127035535,-46.64482029837157,são paulo,SP\n'
    )
    _file(tmp_path, "geolocation", text)
    for loaded_at in (LOADED_AT, LATER):
        [result] = load_csv_dir(sqlite_db, tmp_path, loaded_at=loaded_at)
        assert (result.rows_in_file, result.duplicates_dropped) == (3, 0)
    geo = sqlite_db.read_table(source_table("geolocation"))
    assert geo["geolocation_id"].to_pylist() == [1, 2, 3]
    assert set(geo["updated_at"].to_pylist()) == {LOADED_AT}


SELLERS_HEADER = "seller_id,seller_zip_code_prefix,seller_city,seller_state\n"


def test_a_stray_quote_inside_an_unquoted_field_is_kept_literally(tmp_path: Path) -> None:
    path = _file(tmp_path, "sellers", SELLERS_HEADER + "a" * 32 + ',01037,sao pa"ulo,SP\n')
    read = read_kaggle_csv(path, source_table("sellers"))
    assert read.table["seller_city"].to_pylist() == ['sao pa"ulo']


def test_a_nul_byte_is_refused_with_its_line(tmp_path: Path) -> None:
    rows = "a" * 32 + ",01037,santos,SP\n" + "b" * 32 + ",01037,ri\x00o,SP\n"
    message = _error(_file(tmp_path, "sellers", SELLERS_HEADER + rows), "sellers")
    assert "line 3: a NUL byte" in message


def test_binary_garbage_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "olist_sellers_dataset.csv"
    path.write_bytes(SELLERS_HEADER.encode() + bytes(range(128, 256)) * 20)
    message = _error(path, "sellers")
    assert "line 2: not UTF-8 text (byte 0x80)" in message
    assert message.isascii() and "\\x" not in message
