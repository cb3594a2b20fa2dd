"""Synthetic Olist-shaped source data: deterministic per seed, vectorised, at any scale.

:func:`generate` builds the nine source tables with the catalog's Arrow schemas, following the
profile of SOURCE.md; with ``dirty_rate > 0`` it also corrupts or duplicates a share of rows and
lists every one of them in :attr:`GeneratedData.dirty`. :func:`write_to_source` loads the result
into a source database. The building blocks (ids, places, categories, Arrow constructors) are
shared with :mod:`medallion.source.changes`.

Times are handled as int64 seconds (or microseconds) since the Unix epoch, naive UTC.
"""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from medallion.catalog import SOURCE_TABLES, source_table
from medallion.errors import ConfigError
from medallion.source.db import SourceDatabase

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Rng = np.random.Generator

DAY = 86_400
US = 1_000_000

# -- profile (SOURCE.md; SF 1 = the Kaggle size) --------------------------------------------------
SF1_ORDERS = 99_441
SF1_PRODUCTS = 32_951
SF1_SELLERS = 3_095
SF1_GEOLOCATION = 1_000_163
SF1_GEO_ZIPS = 19_015
SF1_CUSTOMER_ZIPS = 14_994
UNIQUE_CUSTOMER_SHARE = 96_096 / 99_441

ORDER_STATUSES = (
    "delivered",
    "shipped",
    "canceled",
    "unavailable",
    "invoiced",
    "processing",
    "created",
    "approved",
)
_STATUS_SHARES = (0.970, 0.011, 0.006, 0.006, 0.003, 0.003, 0.00005, 0.00002)
SCORES = (5, 4, 1, 3, 2)
# delivered orders; with the ~3 % others (below) the overall mix is SOURCE.md's
_SCORE_SHARES = (0.5912, 0.1974, 0.1000, 0.0814, 0.0299)
_UNHAPPY_SCORE_SHARES = (0.15, 0.05, 0.60, 0.10, 0.10)  # reviews of undelivered orders
PAYMENT_TYPES = ("credit_card", "boleto", "voucher", "debit_card", "not_defined")
_SINGLE_PAYMENT_SHARES = (0.773, 0.2046, 0.0062, 0.0162)  # with the multi-payment rows: SOURCE.md
# credit-card installments 0..24 (Kaggle counts, without the non-card payments)
_INSTALLMENT_WEIGHTS = (
    2, 25800, 12413, 10461, 7098, 5239, 3920, 1626, 4268, 644, 5328, 23, 133,
    16, 15, 74, 5, 8, 27, 0, 17, 3, 1, 1, 18,
)  # fmt: skip
_HOUR_WEIGHTS = (2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 4, 6, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, 6, 4)

DEFECTS = (
    "duplicate",
    "null_required",
    "negative_price",
    "unknown_reference",
    "bad_timestamp",
    "score_out_of_range",
)
DIRTY_SCHEMA = pa.schema([("table", pa.string()), ("key", pa.string()), ("defect", pa.string())])


_TITLES = (
    ("Péssimo", "Não recebi", "Produto com defeito", "Não recomendo", "Horrível"),
    ("Bom", "Regular", "Razoável", "Ok"),
    ("recomendo", "Ótimo", "Muito bom", "Super recomendo", "Excelente", "Adorei", "Perfeito"),
)
_MESSAGES = (
    (
        "Não recebi o produto",
        "Produto veio com defeito, quero trocar.",
        "Ainda não recebi meu pedido\r\nJá passou do prazo de entrega",
        "Comprei 2 unidades e recebi apenas 1",
        "Péssimo, não recomendo",
        'O produto é "original"? Parece falsificado.',
        "Recebi um produto diferente do anunciado",
    ),
    (
        "Produto ok",
        "Razoável, poderia ser melhor.",
        "Chegou no prazo, mas a embalagem estava amassada.",
        "O produto é bom\nmas a entrega demorou",
    ),
    (
        "Produto muito bom, chegou antes do prazo.",
        "Recomendo!",
        "Ótimo produto, entrega rápida",
        'Gostei muito do "kit", tudo certo.',
        "Chegou tudo certinho\r\nMuito obrigada",
        "Excelente qualidade",
        "Bom custo benefício",
        "Vendedor nota 10, recomendo.",
        "Produto de acordo com a descrição.",
    ),
)
_MESSAGE_SEPARATORS = (" ", ", ", "\n", "\r\n", ". ")


def epoch(year: int, month: int, day: int) -> int:
    """Seconds since the Unix epoch of a UTC midnight."""
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


FIRST_PURCHASE = epoch(2016, 9, 4)
LAST_PURCHASE_DAY = epoch(2018, 10, 17)
DIMENSION_TIME = epoch(2016, 9, 1)
_BLACK_FRIDAY = epoch(2017, 11, 24)
# daily purchase intensity between knots (relative), linear in between
_GROWTH_KNOTS = (
    (epoch(2016, 9, 4), 0.01),
    (epoch(2016, 12, 31), 0.01),
    (epoch(2017, 1, 1), 0.08),
    (epoch(2017, 11, 30), 1.0),
    (epoch(2018, 8, 31), 1.0),
    (epoch(2018, 9, 1), 0.002),
    (epoch(2018, 10, 17), 0.002),
)


# -- public configuration and result --------------------------------------------------------------
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


# -- Arrow and id building blocks -----------------------------------------------------------------
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def fixed_width_strings(chars: npt.NDArray[np.uint8]) -> pa.Array:
    """A string array from an (n, width) matrix of ASCII codes, without a Python loop."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars).tobytes()
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def random_ids(rng: Rng, n: int) -> pa.Array:
    """``n`` ids of 32 lowercase hex characters drawn from ``rng``."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    return fixed_width_strings(_HEX[nibbles])


def zip_strings(zips: npt.NDArray[np.integer]) -> pa.Array:
    """5-character zip code prefixes with leading zeros."""
    z = np.asarray(zips, dtype=np.int64)
    powers = 10 ** np.arange(4, -1, -1, dtype=np.int64)
    return fixed_width_strings(_DIGITS[(z[:, None] // powers) % 10])


def money(cents: npt.NDArray[np.integer], null: Mask | None = None) -> pa.Array:
    """Exact ``decimal128(12, 2)`` values from integer cents."""
    c = np.asarray(cents, dtype=np.int64)
    words = np.empty((len(c), 2), dtype=np.int64)
    words[:, 0] = c
    words[:, 1] = c >> 63  # sign extension of the 128-bit two's complement
    validity = None if null is None else pa.array(~null).buffers()[1]
    null_count = 0 if null is None else int(null.sum())
    return pa.Array.from_buffers(
        pa.decimal128(12, 2), len(c), [validity, pa.py_buffer(words.tobytes())], null_count
    )


def timestamps(
    seconds: npt.NDArray[np.integer], null: Mask | None = None, micros: int | I64 = 0
) -> pa.Array:
    """``timestamp[us]`` from epoch seconds (plus optional microseconds array or offset)."""
    us = np.asarray(seconds, dtype=np.int64) * US + micros
    return pa.array(us, pa.int64(), mask=null).cast(pa.timestamp("us"))


def build_table(name: str, columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    """A table with exactly the catalog schema of ``name``; ``deleted_at`` defaults to NULL."""
    schema = source_table(name).arrow_schema()
    n = len(next(iter(columns.values())))
    arrays = []
    for fld in schema:
        col = columns.get(fld.name)
        if col is None:
            col = pa.nulls(n, fld.type)
        arrays.append(col.cast(fld.type) if col.type != fld.type else col)
    return pa.Table.from_arrays(arrays, schema=schema)


def allocate(total: int, weights: npt.ArrayLike) -> I64:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    parts = np.floor(exact).astype(np.int64)
    short = total - int(parts.sum())
    if short:
        parts[np.argsort(-(exact - parts), kind="stable")[:short]] += 1
    return np.asarray(parts, dtype=np.int64)


def group_positions(counts: I64) -> tuple[I64, I64]:
    """For groups of ``counts`` rows: each row's group index and its 0-based position in it."""
    group = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(len(group), dtype=np.int64) - np.repeat(starts, counts)


def _lognormal(rng: Rng, median: float, sigma: float, n: int, *, low: float, high: float) -> F64:
    return np.clip(rng.lognormal(math.log(median), sigma, n), low, high)


def choose(rng: Rng, n: int, shares: tuple[float, ...]) -> I64:
    """``n`` random indices into ``shares`` (relative weights)."""
    p = np.asarray(shares, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)


def _day_start(seconds: I64) -> I64:
    return seconds - seconds % DAY


# -- reference data -------------------------------------------------------------------------------
@cache
def categories() -> pa.Table:
    """The 73 real product categories (most frequent first) with their English names.

    The two categories Olist never translated have an empty (NULL) English name.
    """
    rows = _data_rows("categories.csv")
    english = [r["product_category_name_english"] or None for r in rows]
    return pa.table(
        {
            "product_category_name": pa.array([r["product_category_name"] for r in rows]),
            "product_category_name_english": pa.array(english, pa.string()),
        }
    )


def _strip_accents(name: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("medallion").joinpath(f"data/{name}").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@dataclass(frozen=True)
class Places:
    """Cities with their zip prefix ranges, coordinates and the shares used for sampling."""

    states: pa.Array  # state code per city
    names: pa.Array  # canonical lowercase name without accents, per city
    accented: pa.Array  # the same name with accents, per city
    zip_low: I64
    zip_high: I64
    lat: F64
    lng: F64
    customer_p: F64  # probability that a customer lives in the city
    city_weight: F64  # weight of the city within its state
    state_index: I64
    state_sellers: F64  # sellers per state at SF 1

    def sample(self, rng: Rng, n: int, *, sellers: bool = False) -> tuple[I64, I64]:
        """``n`` random places: zip prefixes and city indices (sellers use seller shares)."""
        if sellers:
            city = self._cities_in_states(rng, allocate(n, self.state_sellers))
            city = city[rng.permutation(n)]
        else:
            city = rng.choice(len(self.lat), size=n, p=self.customer_p).astype(np.int64)
        return self.zip_for(rng, city), city

    def zip_for(self, rng: Rng, city: I64) -> I64:
        """A random zip prefix inside each city's range."""
        return rng.integers(self.zip_low[city], self.zip_high[city] + 1).astype(np.int64)

    def _cities_in_states(self, rng: Rng, per_state: I64) -> I64:
        parts = [np.empty(0, dtype=np.int64)]
        for state, count in enumerate(per_state):  # one step per state (27)
            cities = np.flatnonzero(self.state_index == state)
            p = self.city_weight[cities] / self.city_weight[cities].sum()
            parts.append(rng.choice(cities, size=int(count), p=p))
        return np.concatenate(parts).astype(np.int64)

    def city_of_zip(self, zips: I64) -> I64:
        """The city index of each zip prefix, -1 for a prefix outside every listed city."""
        order = np.argsort(self.zip_low)
        pos = np.searchsorted(self.zip_low[order], zips, side="right") - 1
        city = order[np.clip(pos, 0, None)]
        inside = (pos >= 0) & (zips <= self.zip_high[city])
        return np.where(inside, city, -1).astype(np.int64)


@cache
def places() -> Places:
    """The real Brazilian states and main cities of ``data/places.csv`` (zip ranges, centres)."""
    rows = _data_rows("places.csv")

    def floats(col: str) -> F64:
        return np.asarray([float(r[col]) for r in rows], dtype=np.float64)

    codes = [r["state"] for r in rows]
    state_codes = list(dict.fromkeys(codes))
    state_index = np.asarray([state_codes.index(c) for c in codes], dtype=np.int64)
    first = np.unique(state_index, return_index=True)[1]
    city_weight = floats("city_weight")
    state_total = np.bincount(state_index, weights=city_weight)
    customer_p = floats("state_customer_pct") * city_weight / state_total[state_index]
    return Places(
        states=pa.array(codes),
        names=pa.array([_strip_accents(r["city"]) for r in rows]),
        accented=pa.array([r["city"] for r in rows]),
        zip_low=floats("zip_from").astype(np.int64),
        zip_high=floats("zip_to").astype(np.int64),
        lat=floats("lat"),
        lng=floats("lng"),
        customer_p=customer_p / customer_p.sum(),
        city_weight=city_weight,
        state_index=state_index,
        state_sellers=floats("state_sellers_sf1")[first],
    )


# -- sizes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sizes:
    orders: int
    products: int
    sellers: int
    geolocation: int
    geo_zips: int
    customer_zips: int


def _sizes(scale: float) -> _Sizes:
    root = math.sqrt(scale)
    capped = min(1.0, scale)
    return _Sizes(
        orders=max(1, round(SF1_ORDERS * scale)),
        products=max(1, round(SF1_PRODUCTS * root)),
        sellers=max(1, round(SF1_SELLERS * root)),
        geolocation=max(1, round(SF1_GEOLOCATION * capped)),
        geo_zips=max(1, round(SF1_GEO_ZIPS * capped)),
        customer_zips=max(1, round(SF1_CUSTOMER_ZIPS * capped)),
    )


# -- dimension tables -----------------------------------------------------------------------------
def dimension_times(n: int, step_us: int = 1_000_000, start: int = DIMENSION_TIME) -> pa.Array:
    """Early, distinct change times for dimension rows: ``start`` + i * ``step_us``."""
    return timestamps(
        np.full(n, start, dtype=np.int64), micros=np.arange(n, dtype=np.int64) * step_us
    )


def _translation() -> pa.Table:
    cats = categories()
    translated = cats.filter(pc.is_valid(cats["product_category_name_english"]))
    return build_table(
        "product_category_name_translation",
        {
            "product_category_name": translated["product_category_name"],
            "product_category_name_english": translated["product_category_name_english"],
            # a day before the products: each product is labelled from its first version on
            "updated_at": dimension_times(translated.num_rows, start=DIMENSION_TIME - DAY),
        },
    )


@dataclass(frozen=True)
class _Sellers:
    table: pa.Table
    zips: I64


def _sellers(rng: Rng, n: int) -> _Sellers:
    geo = places()
    zips, city = geo.sample(rng, n, sellers=True)
    names = geo.names.take(pa.array(city))
    # a few seller cities hold the state or a zip code by mistake (Kaggle quirk)
    quirk = np.zeros(n, dtype=np.bool_)
    if n >= 300:
        quirk[rng.choice(n, size=max(1, round(n * 0.002)), replace=False)] = True
    zip_text = zip_strings(zips)
    odd = pc.if_else(
        pa.array(rng.random(n) < 0.5),
        pc.binary_join_element_wise(names, geo.states.take(pa.array(city)), " / "),
        pc.binary_join_element_wise(zip_text, pa.scalar("255"), ""),
    )
    table = build_table(
        "sellers",
        {
            "seller_id": random_ids(rng, n),
            "seller_zip_code_prefix": zip_text,
            "seller_city": pc.if_else(pa.array(quirk), pc.utf8_lower(odd), names),
            "seller_state": geo.states.take(pa.array(city)),
            "updated_at": dimension_times(n, 1_000_000, DIMENSION_TIME + DAY // 2),
        },
    )
    return _Sellers(table, zips)


@dataclass(frozen=True)
class _Products:
    table: pa.Table
    price_cents: I64
    weight_g: F64  # NaN when unknown
    seller: I64  # index of the seller that sells the product
    popularity: F64  # sampling probability in orders


def _products(rng: Rng, n: int, n_sellers: int) -> _Products:
    cats = categories()["product_category_name"]
    rank = np.arange(len(cats), dtype=np.float64)
    category = choose(rng, n, tuple(np.exp(-rank / 10)))
    perm = rng.permutation(n)
    n_blank = round(n * 610 / SF1_PRODUCTS)
    n_no_dims = max(1, round(n * 2 / SF1_PRODUCTS)) if n >= 10 else 0
    n_zero = max(1, round(n * 4 / SF1_PRODUCTS)) if n >= 10 else 0
    blank = np.zeros(n, dtype=np.bool_)
    blank[perm[:n_blank]] = True
    no_dims = np.zeros(n, dtype=np.bool_)
    no_dims[perm[n_blank : n_blank + n_no_dims]] = True
    weight = np.round(_lognormal(rng, 700, 1.3, n, low=2, high=40_425))
    weight[perm[n_blank + n_no_dims : n_blank + n_no_dims + n_zero]] = 0

    def measure(values: F64, null: Mask) -> pa.Array:
        return pa.array(np.round(values).astype(np.int64), pa.int64(), mask=null)

    table = build_table(
        "products",
        {
            "product_id": random_ids(rng, n),
            "product_category_name": pc.if_else(
                pa.array(blank), pa.scalar(None, pa.string()), cats.take(pa.array(category))
            ),
            "product_name_lenght": measure(np.clip(rng.normal(48, 10, n), 5, 76), blank),
            "product_description_lenght": measure(
                _lognormal(rng, 600, 0.65, n, low=4, high=3992), blank
            ),
            "product_photos_qty": measure(np.clip(rng.geometric(0.55, n), 1, 20), blank),
            "product_weight_g": measure(weight, no_dims),
            "product_length_cm": measure(_lognormal(rng, 25, 0.5, n, low=7, high=105), no_dims),
            "product_height_cm": measure(_lognormal(rng, 13, 0.7, n, low=2, high=105), no_dims),
            "product_width_cm": measure(_lognormal(rng, 20, 0.45, n, low=6, high=118), no_dims),
            "updated_at": dimension_times(n),
        },
    )
    seller_w = rng.lognormal(0, 1.2, n_sellers)
    popularity = rng.lognormal(0, 1.3, n)
    return _Products(
        table=table,
        price_cents=np.round(_lognormal(rng, 75, 0.9, n, low=0.85, high=6735) * 100).astype(
            np.int64
        ),
        weight_g=np.where(no_dims, np.nan, weight),
        seller=rng.choice(n_sellers, size=n, p=seller_w / seller_w.sum()).astype(np.int64),
        popularity=popularity / popularity.sum(),
    )


# -- orders and their customers -------------------------------------------------------------------
@dataclass(frozen=True)
class _Orders:
    ids: pa.Array
    status: I64  # index into ORDER_STATUSES
    purchase: I64
    approved: I64
    carrier: I64
    delivered: I64
    estimated: I64
    has_approved: Mask
    has_carrier: Mask
    has_delivered: Mask
    unique: I64  # customer_unique_id index
    micros: I64  # sub-second part of updated_at

    @property
    def n(self) -> int:
        return len(self.status)

    @property
    def last_event(self) -> I64:
        """The latest timestamp set on each order (the time of its last change)."""
        out = np.where(self.has_approved, self.approved, self.purchase)
        out = np.where(self.has_carrier, self.carrier, out)
        return np.where(self.has_delivered, self.delivered, out)

    @property
    def paid_at(self) -> I64:
        return np.where(self.has_approved, self.approved, self.purchase)


def purchase_times(rng: Rng, n: int) -> I64:
    """Purchase timestamps from 2016-09-04 to 2018-10-17, growing over time, by hour of day."""
    days = np.arange(FIRST_PURCHASE, LAST_PURCHASE_DAY + 1, DAY, dtype=np.int64)
    knots_t = np.asarray([k[0] for k in _GROWTH_KNOTS], dtype=np.float64)
    knots_v = np.asarray([k[1] for k in _GROWTH_KNOTS], dtype=np.float64)
    weight = np.interp(days.astype(np.float64), knots_t, knots_v)
    weight[days == _BLACK_FRIDAY] *= 4
    day = rng.choice(days, size=n, p=weight / weight.sum())
    hour = choose(rng, n, _HOUR_WEIGHTS)
    return (day + hour * 3600 + rng.integers(0, 3600, n)).astype(np.int64)


def _orders(rng: Rng, n: int) -> _Orders:
    purchase = purchase_times(rng, n)
    status = choose(rng, n, _STATUS_SHARES)
    name = np.asarray(ORDER_STATUSES)[status]
    canceled = name == "canceled"
    approved = purchase + _lognormal(rng, 1200, 1.8, n, low=60, high=20 * DAY).astype(np.int64)
    carrier = approved + _lognormal(rng, 2 * DAY, 0.8, n, low=3600, high=30 * DAY).astype(np.int64)
    delivered = carrier + _lognormal(rng, 7 * DAY, 0.6, n, low=DAY, high=90 * DAY).astype(np.int64)
    has_approved = (name != "created") & ~(canceled & (rng.random(n) < 0.23))
    has_carrier = np.isin(name, ["shipped", "delivered"]) | (
        canceled & has_approved & (rng.random(n) < 0.12)
    )
    has_delivered = (name == "delivered") | (canceled & has_carrier & (rng.random(n) < 0.08))
    n_unique = max(1, round(n * UNIQUE_CUSTOMER_SHARE))
    unique = np.empty(n, dtype=np.int64)
    perm = rng.permutation(n)
    unique[perm[:n_unique]] = np.arange(n_unique)
    unique[perm[n_unique:]] = rng.integers(0, n_unique, n - n_unique)
    return _Orders(
        ids=random_ids(rng, n),
        status=status,
        purchase=purchase,
        approved=approved,
        carrier=carrier,
        delivered=delivered,
        estimated=_day_start(purchase) + rng.integers(15, 35, n) * DAY,
        has_approved=has_approved,
        has_carrier=has_carrier,
        has_delivered=has_delivered,
        unique=unique,
        micros=rng.integers(0, US, n),
    )


def _orders_table(o: _Orders, customer_ids: pa.Array) -> pa.Table:
    return build_table(
        "orders",
        {
            "order_id": o.ids,
            "customer_id": customer_ids,
            "order_status": pa.array(ORDER_STATUSES).take(pa.array(o.status)),
            "order_purchase_timestamp": timestamps(o.purchase),
            "order_approved_at": timestamps(o.approved, ~o.has_approved),
            "order_delivered_carrier_date": timestamps(o.carrier, ~o.has_carrier),
            "order_delivered_customer_date": timestamps(o.delivered, ~o.has_delivered),
            "order_estimated_delivery_date": timestamps(o.estimated),
            "updated_at": timestamps(o.last_event, micros=o.micros),
        },
    )


def _customers(rng: Rng, o: _Orders, n_zips: int) -> tuple[pa.Table, I64]:
    """One customer row per order; rows of a customer_unique_id share one address."""
    geo = places()
    pool_zip, pool_city = geo.sample(rng, n_zips)
    n_unique = int(o.unique.max()) + 1
    home = rng.integers(0, n_zips, n_unique)[o.unique]
    city = pa.array(pool_city[home])
    table = build_table(
        "customers",
        {
            "customer_id": random_ids(rng, o.n),
            "customer_unique_id": random_ids(rng, n_unique).take(pa.array(o.unique)),
            "customer_zip_code_prefix": zip_strings(pool_zip[home]),
            "customer_city": geo.names.take(city),
            "customer_state": geo.states.take(city),
            "updated_at": timestamps(o.purchase, micros=rng.integers(0, US, o.n)),
        },
    )
    return table, pool_zip[home]


# -- items and payments ---------------------------------------------------------------------------
def _items(rng: Rng, o: _Orders, p: _Products, seller_ids: pa.Array) -> tuple[pa.Table, I64]:
    """Order items (90 % single) and each order's total in cents (price + freight)."""
    n = o.n
    extra = np.clip(2 + rng.geometric(0.753, n) - 1, 2, 21)
    count = np.where(rng.random(n) < 0.9, 1, extra).astype(np.int64)
    order, position = group_positions(count)
    first = rng.choice(len(p.price_cents), size=n, p=p.popularity)
    own = rng.choice(len(p.price_cents), size=len(order), p=p.popularity)
    same = (rng.random(n) < 0.5)[order]
    product = np.where(same | (position == 0), first[order], own)
    weight = np.nan_to_num(p.weight_g[product], nan=500.0)
    freight = np.round((700 + weight * 0.4) * rng.lognormal(0, 0.3, len(order))).astype(np.int64)
    freight[rng.random(len(order)) < 0.003] = 0
    price = p.price_cents[product]
    totals = np.bincount(order, weights=price + freight, minlength=n).astype(np.int64)
    shipping = o.paid_at[order] + rng.integers(2 * DAY, 8 * DAY, len(order))
    table = build_table(
        "order_items",
        {
            "order_id": o.ids.take(pa.array(order)),
            "order_item_id": pa.array(position + 1),
            "product_id": p.table["product_id"].take(pa.array(product)),
            "seller_id": seller_ids.take(pa.array(p.seller[product])),
            "shipping_limit_date": timestamps(shipping),
            "price": money(price),
            "freight_value": money(freight),
            "updated_at": timestamps(o.paid_at[order], micros=o.micros[order]),
        },
    )
    return table, totals


def split_cents(totals: I64, group: I64, weight: F64) -> I64:
    """Split each group's total into its rows by ``weight``; sums stay exact to the cent."""
    wsum = np.bincount(group, weights=weight, minlength=len(totals))
    safe = np.where(wsum[group] > 0, wsum[group], 1.0)
    share = np.floor(totals[group] * (weight / safe)).astype(np.int64)
    rest = totals - np.bincount(group, weights=share, minlength=len(totals)).astype(np.int64)
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    share[first] += rest[group[first]]
    return share


def installments(rng: Rng, kind: I64) -> I64:
    """Installments per payment: 0..24 for credit cards, 1 otherwise."""
    card = choose(rng, len(kind), tuple(float(w) for w in _INSTALLMENT_WEIGHTS))
    return np.where(kind == 0, card, 1).astype(np.int64)


def _payments(rng: Rng, o: _Orders, totals: I64, scale: float) -> pa.Table:
    n = o.n
    multi = rng.random(n) < 0.03
    count = np.where(multi, np.clip(1 + rng.geometric(0.67, n), 2, 29), 1).astype(np.int64)
    undefined = np.zeros(n, dtype=np.bool_)
    n_undefined = round(3 * scale)
    canceled = np.flatnonzero(np.asarray(ORDER_STATUSES)[o.status] == "canceled")
    if n_undefined and len(canceled):
        undefined[rng.choice(canceled, size=min(n_undefined, len(canceled)), replace=False)] = True
    count += undefined
    order, position = group_positions(count)
    is_undefined = undefined[order] & (position == count[order] - 1)
    single = choose(rng, len(order), _SINGLE_PAYMENT_SHARES)
    lead = np.where(rng.random(len(order)) < 0.75, 0, 2)
    kind = np.where(multi[order], np.where(position == 0, lead, 2), single)
    kind = np.where(is_undefined, 4, kind).astype(np.int64)
    weight = np.where(is_undefined, 0.0, rng.random(len(order)) + np.where(position == 0, 1.0, 0.1))
    value = split_cents(totals, order, weight)
    return build_table(
        "order_payments",
        {
            "order_id": o.ids.take(pa.array(order)),
            "payment_sequential": pa.array(position + 1),
            "payment_type": pa.array(PAYMENT_TYPES).take(pa.array(kind)),
            "payment_installments": pa.array(installments(rng, kind)),
            "payment_value": money(value),
            "updated_at": timestamps(o.paid_at[order], micros=o.micros[order]),
        },
    )


# -- reviews --------------------------------------------------------------------------------------
def review_texts(rng: Rng, score: I64) -> tuple[pa.Array, pa.Array]:
    """Titles (~12 % set) and messages (~41 % set) matching each review's score."""
    n = len(score)
    mood = np.where(score <= 2, 0, np.where(score == 3, 1, 2))

    def pick(options: tuple[tuple[str, ...], ...]) -> pa.Array:
        flat = pa.array([t for group in options for t in group])
        sizes = np.asarray([len(g) for g in options], dtype=np.int64)
        start = np.cumsum(sizes) - sizes
        index = start[mood] + (rng.random(n) * sizes[mood]).astype(np.int64)
        return flat.take(pa.array(index))

    title = pick(_TITLES)
    first, second = pick(_MESSAGES), pick(_MESSAGES)
    sep = pa.array(_MESSAGE_SEPARATORS).take(pa.array(rng.integers(0, len(_MESSAGE_SEPARATORS), n)))
    joined = pc.binary_join_element_wise(first, second, sep)
    message = pc.if_else(pa.array(rng.random(n) < 0.3), joined, first)
    none = pa.scalar(None, pa.string())
    return (
        pc.if_else(pa.array(rng.random(n) < 0.12), title, none),
        pc.if_else(pa.array(rng.random(n) < 0.41), message, none),
    )


def review_scores(rng: Rng, happy: Mask) -> I64:
    scores = np.asarray(SCORES, dtype=np.int64)
    good = scores[choose(rng, len(happy), _SCORE_SHARES)]
    bad = scores[choose(rng, len(happy), _UNHAPPY_SCORE_SHARES)]
    return np.where(happy, good, bad).astype(np.int64)


def _reviews(rng: Rng, o: _Orders) -> pa.Table:
    """~99.2 % of orders reviewed, ~0.55 % twice; ~0.8 % of review ids shared by two orders."""
    base = np.flatnonzero(rng.random(o.n) < 0.9923)
    again = rng.choice(base, size=round(len(base) * 0.0055), replace=False) if len(base) else base
    order = np.concatenate([base, np.sort(again)]).astype(np.int64)
    later = np.r_[np.zeros(len(base), np.int64), rng.integers(1, 30, len(again))] * DAY
    n = len(order)
    ref = np.where(o.has_delivered[order], o.delivered[order], o.estimated[order])
    wait = np.where(rng.random(n) < 0.85, 0, rng.integers(1, 6, n)) * DAY
    created = _day_start(ref) + DAY + wait + later
    answered = created + _lognormal(rng, DAY, 1.0, n, low=60, high=60 * DAY).astype(np.int64)
    ids = random_ids(rng, n)
    shared = round(len(base) * 0.008)
    if shared and len(base) >= 2 * shared:
        pair = rng.choice(len(base), size=2 * shared, replace=False)
        index = np.arange(n)
        index[pair[shared:]] = pair[:shared]
        ids = ids.take(pa.array(index))
    score = review_scores(rng, np.asarray(ORDER_STATUSES)[o.status[order]] == "delivered")
    title, message = review_texts(rng, score)
    return build_table(
        "order_reviews",
        {
            "review_id": ids,
            "order_id": o.ids.take(pa.array(order)),
            "review_score": pa.array(score),
            "review_comment_title": title,
            "review_comment_message": message,
            "review_creation_date": timestamps(created),
            "review_answer_timestamp": timestamps(answered),
            "updated_at": timestamps(answered, micros=rng.integers(0, US, n)),
        },
    )


# -- geolocation ----------------------------------------------------------------------------------
def _geolocation(rng: Rng, used_zips: I64, sizes: _Sizes) -> pa.Table:
    """GPS points for every used zip prefix plus others, a few outside Brazil."""
    geo = places()
    zips = np.unique(used_zips)
    want = max(sizes.geo_zips, len(zips))
    if want > len(zips):
        more, _ = geo.sample(rng, 4 * (want - len(zips)) + 100)
        more = more[~np.isin(more, zips)]
        _, first = np.unique(more, return_index=True)
        zips = np.sort(np.r_[zips, more[np.sort(first)][: want - len(zips)]])
    n = max(sizes.geolocation, len(zips))
    weight = rng.lognormal(0, 1.0, len(zips))
    count = 1 + rng.multinomial(n - len(zips), weight / weight.sum()).astype(np.int64)
    zip_of, _ = group_positions(count)
    point_zip = zips[zip_of]
    city = geo.city_of_zip(point_zip)
    # each prefix has its own centre near its city; points scatter around it
    h = (point_zip * 2_654_435_761) % 2**32 / 2**32
    lat = geo.lat[city] + (h - 0.5) * 0.16 + rng.normal(0, 0.01, n)
    lng = geo.lng[city] + ((h * 7919) % 1 - 0.5) * 0.16 + rng.normal(0, 0.01, n)
    n_abroad = max(1, round(n * 3e-5)) if n >= 1000 else 0
    abroad = rng.choice(n, size=n_abroad, replace=False)
    lat[abroad] = rng.uniform(36, 44, len(abroad))
    lng[abroad] = rng.uniform(-9.5, 3, len(abroad))
    return build_table(
        "geolocation",
        {
            "geolocation_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "geolocation_zip_code_prefix": zip_strings(point_zip),
            "geolocation_lat": pa.array(lat),
            "geolocation_lng": pa.array(lng),
            "geolocation_city": _city_spellings(rng, city),
            "geolocation_state": geo.states.take(pa.array(city)),
            "updated_at": geolocation_times(np.arange(1, n + 1, dtype=np.int64)),
        },
    )


def geolocation_times(ids: I64) -> pa.Array:
    """The change time of geolocation points: an early fixed time plus 40 ms per id."""
    return timestamps(np.full(len(ids), DIMENSION_TIME + DAY, np.int64), micros=ids * 40_000)


def _city_spellings(rng: Rng, city: I64) -> pa.Array:
    """Mostly the plain name, sometimes with accents; São Paulo sometimes just ``sp``."""
    geo = places()
    spellings = pa.concat_arrays([geo.names, geo.accented, pa.array(["sp"])])
    k = len(geo.names)
    u = rng.random(len(city))
    index = np.where(u < 0.25, city + k, city)
    sao_paulo = np.flatnonzero(pc.equal(geo.names, "sao paulo").to_numpy(zero_copy_only=False))
    index = np.where(np.isin(city, sao_paulo) & (u > 0.99), 2 * k, index)
    return spellings.take(pa.array(index))


# -- dirty rows -----------------------------------------------------------------------------------
def row_keys(name: str, table: pa.Table) -> pa.Array:
    """Each row's key values joined by ``|`` (the ``key`` of the dirty-row list)."""
    cols = [pc.cast(table[c], pa.string()) for c in source_table(name).row_key]
    if len(cols) == 1:
        return cols[0].combine_chunks()
    return pc.binary_join_element_wise(*cols, "|").combine_chunks()


def _replace(table: pa.Table, column: str, rows: I64, values: pa.Array) -> pa.Table:
    """Set ``column`` at the sorted positions ``rows`` to ``values``."""
    mask = np.zeros(table.num_rows, dtype=np.bool_)
    mask[rows] = True
    col = table[column].combine_chunks()
    return set_column(
        table, column, pc.replace_with_mask(col, pa.array(mask), values.cast(col.type))
    )


def set_column(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    """Replace a column, keeping its field (type and nullability)."""
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), values)


def _ts_column(table: pa.Table, column: str, rows: I64) -> I64:
    values = table[column].combine_chunks().take(pa.array(rows)).cast(pa.int64())
    return np.asarray(values.fill_null(0).to_numpy(), dtype=np.int64) // US


def _pick(rng: Rng, n: int, k: int, kinds: int) -> list[I64]:
    """``k`` distinct sorted rows out of ``n``, split into ``kinds`` random groups."""
    rows = rng.choice(n, size=min(k, n), replace=False)
    kind = rng.integers(0, kinds, len(rows))
    return [np.sort(rows[kind == i]).astype(np.int64) for i in range(kinds)]


def _dirty_list(name: str, table: pa.Table, rows: I64, defect: str) -> pa.Table:
    keys = row_keys(name, table.take(pa.array(rows)))
    return pa.table(
        {"table": pa.array([name] * len(rows), pa.string()), "key": keys,
         "defect": pa.array([defect] * len(rows), pa.string())},
        schema=DIRTY_SCHEMA,
    )  # fmt: skip


def _dirty_orders(rng: Rng, t: pa.Table, rate: float) -> tuple[pa.Table, list[pa.Table]]:
    nulls, unknown, bad = _pick(rng, t.num_rows, round(rate * t.num_rows), 3)
    t = _replace(t, "customer_id", nulls, pa.nulls(len(nulls), pa.string()))
    t = _replace(t, "customer_id", unknown, random_ids(rng, len(unknown)))
    purchase = _ts_column(t, "order_purchase_timestamp", bad)
    early = rng.random(len(bad)) < 0.5
    delivered, odd_year = bad[early], bad[~early]
    before = purchase[early] - rng.integers(1, 30, len(delivered)) * DAY
    t = _replace(t, "order_delivered_customer_date", delivered, timestamps(before))
    year = np.where(rng.random(len(odd_year)) < 0.5, epoch(1900, 1, 1), epoch(2100, 1, 1))
    t = _replace(t, "order_purchase_timestamp", odd_year, timestamps(year + purchase[~early] % DAY))
    lists = [
        _dirty_list("orders", t, nulls, "null_required"),
        _dirty_list("orders", t, unknown, "unknown_reference"),
        _dirty_list("orders", t, bad, "bad_timestamp"),
    ]
    return t, lists


def _dirty_items(rng: Rng, t: pa.Table, rate: float) -> tuple[pa.Table, list[pa.Table]]:
    negative, nulls, unknown = _pick(rng, t.num_rows, round(rate * t.num_rows), 3)
    price = t["price"].combine_chunks().take(pa.array(negative))
    t = _replace(t, "price", negative, pc.negate(price))
    t = _replace(t, "product_id", nulls, pa.nulls(len(nulls), pa.string()))
    seller = rng.random(len(unknown)) < 0.5
    t = _replace(t, "seller_id", unknown[seller], random_ids(rng, int(seller.sum())))
    t = _replace(t, "product_id", unknown[~seller], random_ids(rng, int((~seller).sum())))
    lists = [
        _dirty_list("order_items", t, negative, "negative_price"),
        _dirty_list("order_items", t, nulls, "null_required"),
        _dirty_list("order_items", t, unknown, "unknown_reference"),
    ]
    return t, lists


def _dirty_reviews(rng: Rng, t: pa.Table, rate: float) -> tuple[pa.Table, list[pa.Table]]:
    n = t.num_rows
    scores, bad, dup = _pick(rng, n, round(rate * n), 3)
    odd = np.asarray([0, 6, 7, 8, 9], dtype=np.int64)[rng.integers(0, 5, len(scores))]
    t = _replace(t, "review_score", scores, pa.array(odd))
    created = _ts_column(t, "review_creation_date", bad)
    late = rng.random(len(bad)) < 0.5
    answer = created[~late] - rng.integers(1, 6, int((~late).sum())) * DAY
    t = _replace(t, "review_answer_timestamp", bad[~late], timestamps(answer))
    future = epoch(2100, 1, 1) + created[late] % (365 * DAY)
    t = _replace(t, "review_creation_date", bad[late], timestamps(future))
    copies = t.take(pa.array(dup))
    copies = set_column(copies, "review_id", random_ids(rng, len(dup)))
    # the copy is inserted after its original, so "the later of two equal reviews" names it
    later = pc.add(copies["updated_at"], pa.scalar(1_000_000, pa.duration("us")))
    copies = set_column(copies, "updated_at", later.combine_chunks())
    lists = [
        _dirty_list("order_reviews", t, scores, "score_out_of_range"),
        _dirty_list("order_reviews", t, bad, "bad_timestamp"),
        _dirty_list("order_reviews", copies, np.arange(len(dup), dtype=np.int64), "duplicate"),
    ]
    return pa.concat_tables([t, copies]), lists


def _dirty_geolocation(rng: Rng, t: pa.Table, rate: float) -> tuple[pa.Table, list[pa.Table]]:
    k = round(rate * t.num_rows)
    source = np.sort(rng.choice(t.num_rows, size=k, replace=True)).astype(np.int64)
    ids = np.arange(t.num_rows + 1, t.num_rows + k + 1, dtype=np.int64)
    copies = t.take(pa.array(source))
    copies = set_column(copies, "geolocation_id", pa.array(ids))
    copies = set_column(copies, "updated_at", geolocation_times(ids))
    listed = _dirty_list("geolocation", copies, np.arange(k, dtype=np.int64), "duplicate")
    return pa.concat_tables([t, copies]), [listed]


def _inject_dirty(rng: Rng, tables: dict[str, pa.Table], rate: float) -> pa.Table:
    """Corrupt or duplicate about ``rate`` x rows of orders, items, reviews and geolocation."""
    lists: list[pa.Table] = []
    for name, inject in (
        ("orders", _dirty_orders),
        ("order_items", _dirty_items),
        ("order_reviews", _dirty_reviews),
        ("geolocation", _dirty_geolocation),
    ):
        tables[name], found = inject(rng, tables[name], rate)
        lists.extend(found)
    return pa.concat_tables([DIRTY_SCHEMA.empty_table(), *lists])


# -- entry points ---------------------------------------------------------------------------------
def generate(config: GeneratorConfig) -> GeneratedData:
    """The nine source tables at ``config.scale``, deterministic for ``config.seed``."""
    sizes = _sizes(config.scale)
    rngs = np.random.default_rng(config.seed).spawn(8)
    sellers = _sellers(rngs[0], sizes.sellers)
    products = _products(rngs[1], sizes.products, sizes.sellers)
    orders = _orders(rngs[2], sizes.orders)
    customers, customer_zips = _customers(rngs[3], orders, sizes.customer_zips)
    items, totals = _items(rngs[4], orders, products, sellers.table["seller_id"].combine_chunks())
    tables = {
        "customers": customers,
        "geolocation": _geolocation(rngs[5], np.r_[customer_zips, sellers.zips], sizes),
        "order_items": items,
        "order_payments": _payments(rngs[6], orders, totals, config.scale),
        "order_reviews": _reviews(rngs[7], orders),
        "orders": _orders_table(orders, customers["customer_id"].combine_chunks()),
        "products": products.table,
        "sellers": sellers.table,
        "product_category_name_translation": _translation(),
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
