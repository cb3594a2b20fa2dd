"""The dimension tables of the generated source: category translations, sellers, products and
geolocation points. Their rows change early (before the first purchase), each at its own time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medallion.source.arrays import (
    DAY,
    F64,
    I64,
    Mask,
    Rng,
    build_table,
    choose,
    group_positions,
    lognormal,
    random_ids,
    timestamps,
    zip_strings,
)
from medallion.source.places import categories, places
from medallion.source.profile import DIMENSION_TIME, SF1_PRODUCTS, Sizes


def dimension_times(n: int, step_us: int = 1_000_000, start: int = DIMENSION_TIME) -> pa.Array:
    """Early, distinct change times for dimension rows: ``start`` + i * ``step_us``."""
    return timestamps(
        np.full(n, start, dtype=np.int64), micros=np.arange(n, dtype=np.int64) * step_us
    )


def build_translation() -> pa.Table:
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
class Sellers:
    table: pa.Table
    zips: I64


def build_sellers(rng: Rng, n: int) -> Sellers:
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
    return Sellers(table, zips)


@dataclass(frozen=True)
class Products:
    table: pa.Table
    price_cents: I64
    weight_g: F64  # NaN when unknown
    seller: I64  # index of the seller that sells the product
    popularity: F64  # sampling probability in orders


def build_products(rng: Rng, n: int, n_sellers: int) -> Products:
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
    weight = np.round(lognormal(rng, 700, 1.3, n, low=2, high=40_425))
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
                lognormal(rng, 600, 0.65, n, low=4, high=3992), blank
            ),
            "product_photos_qty": measure(np.clip(rng.geometric(0.55, n), 1, 20), blank),
            "product_weight_g": measure(weight, no_dims),
            "product_length_cm": measure(lognormal(rng, 25, 0.5, n, low=7, high=105), no_dims),
            "product_height_cm": measure(lognormal(rng, 13, 0.7, n, low=2, high=105), no_dims),
            "product_width_cm": measure(lognormal(rng, 20, 0.45, n, low=6, high=118), no_dims),
            "updated_at": dimension_times(n),
        },
    )
    seller_w = rng.lognormal(0, 1.2, n_sellers)
    popularity = rng.lognormal(0, 1.3, n)
    return Products(
        table=table,
        price_cents=np.round(lognormal(rng, 75, 0.9, n, low=0.85, high=6735) * 100).astype(
            np.int64
        ),
        weight_g=np.where(no_dims, np.nan, weight),
        seller=rng.choice(n_sellers, size=n, p=seller_w / seller_w.sum()).astype(np.int64),
        popularity=popularity / popularity.sum(),
    )


# -- geolocation ----------------------------------------------------------------------------------
def build_geolocation(rng: Rng, used_zips: I64, sizes: Sizes) -> pa.Table:
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
