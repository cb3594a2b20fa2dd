"""dim_date: one row per calendar day with Brazilian national holidays, plus the unknown member.

Holidays come from the ``holidays`` package (offline), public category only: Carnival and
Corpus Christi are in its ``optional`` category and are not national holidays. Names are in
English (as are month and day names), whatever the machine's locale.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.errors import DimDateError

UNKNOWN_DATE_KEY = 0
HOLIDAY_LANGUAGE = "en_US"
SCHEMA = pa.schema(
    [
        pa.field("date_key", pa.int32(), nullable=False),
        pa.field("date", pa.date32()),
        pa.field("year", pa.int16()),
        pa.field("quarter", pa.int16()),
        pa.field("month", pa.int16()),
        pa.field("month_name", pa.string()),
        pa.field("day", pa.int16()),
        pa.field("day_of_week", pa.int16()),
        pa.field("day_name", pa.string()),
        pa.field("week_of_year", pa.int16()),
        pa.field("is_weekend", pa.bool_()),
        pa.field("is_holiday", pa.bool_()),
        pa.field("holiday_name", pa.string()),
    ]
)


def build_dim_date(start: date, end: date) -> pa.Table:
    """Every day from ``start`` to ``end`` inclusive, then the unknown member (date_key 0)."""
    if start > end:
        raise DimDateError(f"dim_date: start {start} is after end {end}; swap them")
    days = pa.array(np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1))
    return pa.concat_tables([_calendar(days), _unknown_member()])


def _calendar(days: pa.Array) -> pa.Table:
    year, month, day = pc.year(days), pc.month(days), pc.day(days)
    dow = pc.day_of_week(days, count_from_zero=False, week_start=1)
    names, is_holiday = _holidays(days)
    columns = {
        "date_key": pc.add(pc.multiply(year, 10_000), pc.add(pc.multiply(month, 100), day)),
        "date": days,
        "year": year,
        "quarter": pc.quarter(days),
        "month": month,
        "month_name": pc.strftime(days, format="%B", locale="C"),
        "day": day,
        "day_of_week": dow,
        "day_name": pc.strftime(days, format="%A", locale="C"),
        "week_of_year": pc.iso_week(days),
        "is_weekend": pc.greater_equal(dow, 6),
        "is_holiday": is_holiday,
        "holiday_name": names,
    }
    return pa.table(columns).cast(SCHEMA)


def _holidays(days: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Holiday names (NULL on ordinary days) and the is_holiday flag, by a vectorised lookup."""
    import holidays  # 0.1 s to import: only a run that generates days pays it

    years = pc.unique(pc.year(days)).to_pylist()
    calendar = holidays.country_holidays(
        "BR", years=years, language=HOLIDAY_LANGUAGE, categories=(holidays.PUBLIC,)
    )
    found = pa.array(sorted(calendar), pa.date32())
    labels = pa.array([calendar[d] for d in found.to_pylist()], pa.string())
    index = pc.index_in(days, value_set=found)
    return pc.take(labels, index), pc.is_valid(index)


def _unknown_member() -> pa.Table:
    row = dict.fromkeys(SCHEMA.names) | {"date_key": UNKNOWN_DATE_KEY}
    return pa.Table.from_pylist([row], schema=SCHEMA)
