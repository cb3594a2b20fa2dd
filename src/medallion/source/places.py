"""Reference data shipped with the package: the real product categories and the Brazilian
states and cities (zip prefix ranges, centres, sampling shares)."""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pyarrow as pa

from medallion.source.arrays import F64, I64, Rng, allocate


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
