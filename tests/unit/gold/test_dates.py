"""dim_date: calendar attributes, Brazilian national holidays, the unknown member."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medallion.errors import MedallionError
from medallion.gold.dates import SCHEMA, build_dim_date

START, END = date(2016, 9, 1), date(2018, 12, 31)


@pytest.fixture(scope="module")
def dim() -> pa.Table:
    return build_dim_date(START, END)


def day(dim: pa.Table, d: date) -> dict[str, Any]:
    rows: list[dict[str, Any]] = dim.filter(
        pc.equal(dim["date"], pa.scalar(d, pa.date32()))
    ).to_pylist()
    (row,) = rows
    return row


def test_every_date_once_plus_the_unknown_member(dim: pa.Table) -> None:
    days = (END - START).days + 1
    dates = dim["date"].drop_null().to_pylist()
    assert dates == [START + timedelta(n) for n in range(days)]
    assert dim.num_rows == days + 1
    assert dim.schema == SCHEMA
    assert pc.count_distinct(dim["date_key"]).as_py() == dim.num_rows


def test_unknown_member(dim: pa.Table) -> None:
    (unknown,) = dim.filter(pc.equal(dim["date_key"], 0)).to_pylist()
    assert unknown["date"] is None
    assert {k: v for k, v in unknown.items() if v is not None} == {"date_key": 0}


def test_calendar_attributes(dim: pa.Table) -> None:
    assert day(dim, date(2018, 1, 1)) | {"holiday_name": None} == {
        "date_key": 20180101, "date": date(2018, 1, 1), "year": 2018, "quarter": 1, "month": 1,
        "month_name": "January", "day": 1, "day_of_week": 1, "day_name": "Monday",
        "week_of_year": 1, "is_weekend": False, "is_holiday": True, "holiday_name": None,
    }  # fmt: skip
    sunday = day(dim, date(2017, 1, 1))
    assert (sunday["day_of_week"], sunday["week_of_year"], sunday["is_weekend"]) == (7, 52, True)
    assert day(dim, date(2018, 12, 31))["week_of_year"] == 1  # ISO week of the next year
    assert day(dim, date(2016, 11, 30))["quarter"] == 4


@pytest.mark.parametrize(
    ("d", "is_holiday"),
    [
        (date(2017, 1, 1), True),  # Confraternização Universal
        (date(2018, 9, 7), True),  # Independence Day
        (date(2017, 11, 15), True),  # Proclamation of the Republic
        (date(2017, 2, 28), False),  # Carnival: the package's optional category
        (date(2017, 6, 15), False),  # Corpus Christi: optional too
        (date(2017, 3, 14), False),
    ],
)
def test_national_holidays_only(dim: pa.Table, d: date, is_holiday: bool) -> None:
    row = day(dim, d)
    assert row["is_holiday"] is is_holiday
    assert (row["holiday_name"] is not None) is is_holiday


def test_holiday_names_are_fixed(dim: pa.Table) -> None:
    assert day(dim, date(2018, 9, 7))["holiday_name"] == "Independence Day"
    assert pc.sum(dim["is_holiday"]).as_py() == 5 + 9 + 9  # Sep-Dec 2016, then 9 a year


def test_reversed_range_is_an_error() -> None:
    with pytest.raises(MedallionError, match="start 2018-01-02 is after end 2018-01-01"):
        build_dim_date(date(2018, 1, 2), date(2018, 1, 1))
