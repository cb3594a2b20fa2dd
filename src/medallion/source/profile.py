"""The profile of the synthetic data (SOURCE.md; SF 1 = the Kaggle size): table sizes, value
distributions, review texts and the purchase calendar."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

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
STATUS_SHARES = (0.970, 0.011, 0.006, 0.006, 0.003, 0.003, 0.00005, 0.00002)
SCORES = (5, 4, 1, 3, 2)
# delivered orders; with the ~3 % others (below) the overall mix is SOURCE.md's
SCORE_SHARES = (0.5912, 0.1974, 0.1000, 0.0814, 0.0299)
UNHAPPY_SCORE_SHARES = (0.15, 0.05, 0.60, 0.10, 0.10)  # reviews of undelivered orders
PAYMENT_TYPES = ("credit_card", "boleto", "voucher", "debit_card", "not_defined")
SINGLE_PAYMENT_SHARES = (0.773, 0.2046, 0.0062, 0.0162)  # with the multi-payment rows: SOURCE.md
# credit-card installments 0..24 (Kaggle counts, without the non-card payments)
INSTALLMENT_WEIGHTS = (
    2, 25800, 12413, 10461, 7098, 5239, 3920, 1626, 4268, 644, 5328, 23, 133,
    16, 15, 74, 5, 8, 27, 0, 17, 3, 1, 1, 18,
)  # fmt: skip
HOUR_WEIGHTS = (2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 4, 6, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, 6, 4)

TITLES = (
    ("Péssimo", "Não recebi", "Produto com defeito", "Não recomendo", "Horrível"),
    ("Bom", "Regular", "Razoável", "Ok"),
    ("recomendo", "Ótimo", "Muito bom", "Super recomendo", "Excelente", "Adorei", "Perfeito"),
)
MESSAGES = (
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
MESSAGE_SEPARATORS = (" ", ", ", "\n", "\r\n", ". ")


def epoch(year: int, month: int, day: int) -> int:
    """Seconds since the Unix epoch of a UTC midnight."""
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


FIRST_PURCHASE = epoch(2016, 9, 4)
LAST_PURCHASE_DAY = epoch(2018, 10, 17)
DIMENSION_TIME = epoch(2016, 9, 1)
BLACK_FRIDAY = epoch(2017, 11, 24)
# daily purchase intensity between knots (relative), linear in between
GROWTH_KNOTS = (
    (epoch(2016, 9, 4), 0.01),
    (epoch(2016, 12, 31), 0.01),
    (epoch(2017, 1, 1), 0.08),
    (epoch(2017, 11, 30), 1.0),
    (epoch(2018, 8, 31), 1.0),
    (epoch(2018, 9, 1), 0.002),
    (epoch(2018, 10, 17), 0.002),
)


@dataclass(frozen=True)
class Sizes:
    """Row counts at one scale: facts grow linearly, catalogues with its square root, and
    geolocation stops at the Kaggle size."""

    orders: int
    products: int
    sellers: int
    geolocation: int
    geo_zips: int
    customer_zips: int


def sizes(scale: float) -> Sizes:
    root = math.sqrt(scale)
    capped = min(1.0, scale)
    return Sizes(
        orders=max(1, round(SF1_ORDERS * scale)),
        products=max(1, round(SF1_PRODUCTS * root)),
        sellers=max(1, round(SF1_SELLERS * root)),
        geolocation=max(1, round(SF1_GEOLOCATION * capped)),
        geo_zips=max(1, round(SF1_GEO_ZIPS * capped)),
        customer_zips=max(1, round(SF1_CUSTOMER_ZIPS * capped)),
    )
