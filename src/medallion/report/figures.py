"""The business figures: named Gold queries drawn as charts, with the data behind them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from markupsafe import Markup

from medallion.errors import MedallionError
from medallion.report.charts import Chart
from medallion.report.model import Section, Table, table
from medallion.report.run import LakeViews
from medallion.report.style import ACCENT_COLOUR
from medallion.settings import redact_url


@dataclass(frozen=True)
class Figure:
    query: str
    title: str
    charts: tuple[Chart, ...]


FIGURES = (
    Figure(
        "monthly_revenue",
        "Monthly revenue and orders",
        (
            Chart("line", "month", "revenue", "revenue (BRL)"),
            Chart("vbar", "month", "orders", "orders"),
        ),
    ),
    Figure(
        "top_categories",
        "Top categories by revenue",
        (Chart("hbar", "category", "revenue", "revenue (BRL)"),),
    ),
    Figure(
        "rfm_segments",
        "Customers per RFM segment",
        (Chart("hbar", "segment", "customers", "customers"),),
    ),
    Figure(
        "delivery_by_state",
        "Delivery performance by customer state",
        (
            Chart("vbar", "state", "avg_delivery_days", "average delivery days"),
            Chart(
                "vbar", "state", "late_share", "late deliveries", percent=True, colour=ACCENT_COLOUR
            ),
        ),
    ),
    Figure(
        "seller_reliability",
        "Seller reliability bands (late-delivery rate)",
        (
            Chart("vbar", "late_rate_band", "sellers", "sellers"),
            Chart(
                "vbar",
                "late_rate_band",
                "avg_review_score",
                "average review score",
                colour=ACCENT_COLOUR,
            ),
        ),
    ),
    Figure(
        "day_type_effects",
        "Weekdays, weekends and holidays",
        (
            Chart("vbar", "day_type", "orders_per_day", "orders per day"),
            Chart(
                "vbar", "day_type", "revenue_per_day", "revenue per day (BRL)", colour=ACCENT_COLOUR
            ),
        ),
    ),
)


@dataclass(frozen=True)
class FigureView:
    """A figure drawn, or why not: ``error`` (the query failed) or no ``data`` (no rows yet)."""

    query: str
    title: str
    error: str | None = None
    charts: tuple[Markup, ...] = ()
    data: Table | None = None

    @property
    def rows(self) -> str:
        return f"{len(self.data.rows):,}" if self.data else "0"


def figure_view(views: LakeViews, figure: Figure) -> FigureView:
    try:
        result = views.query(figure.query)
    except MedallionError as exc:
        return FigureView(figure.query, figure.title, error=redact_url(str(exc)))
    rows = result.to_pylist()
    if not rows:
        return FigureView(figure.query, figure.title)
    charts = tuple(c.render(rows) for c in figure.charts)
    columns = list(result.column_names)
    data = table(columns, [[r[c] for c in columns] for r in rows])
    return FigureView(figure.query, figure.title, charts=charts, data=data)


def business_section(views: LakeViews) -> Section:
    """The figures, their queries two at a time (DuckDB runs them without the GIL; after a
    run that moved Gold each one reads its tables again)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        figures = tuple(pool.map(partial(figure_view, views), FIGURES))
    return Section("business", "Business metrics (Gold)", figures)
