"""Silver contracts, declared once as data: target columns and types, normalisation,
rules with their action, references, and the table's kind.

A column's ``expr`` is DuckDB SQL over the Bronze columns; a rule's ``violation`` is SQL that
is TRUE for a row that breaks it (NULL counts as not broken, so each rule says what it means).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from medallion.registry import Registry


class Action(StrEnum):
    QUARANTINE = "quarantine"
    WARN = "warn"


class Kind(StrEnum):
    UPSERT = "upsert"  # one current row per key, MERGEd
    AGGREGATE = "aggregate"  # rebuilt from Bronze's current state when Bronze changes


@dataclass(frozen=True)
class Col:
    name: str
    type: str  # DuckDB type of the Silver column
    expr: str  # SQL over Bronze columns
    # the one Bronze column ``expr`` reads, when it is costly and its values repeat (a city
    # over a million points, 164 distinct at scale 1): conformed once per distinct value and
    # joined back, the same values as row by row at a tenth of the cost
    per_value_of: str | None = None


@dataclass(frozen=True)
class Reference:
    """``columns`` must exist as ``key`` of Silver ``table`` (NULL columns are not checked)."""

    columns: tuple[str, ...]
    table: str
    key: tuple[str, ...]

    @property
    def rule_name(self) -> str:
        return f"{'_'.join(self.columns)}_exists_in_{self.table}"


@dataclass(frozen=True)
class Rule:
    name: str
    violation: str  # SQL over the conformed columns, TRUE when the row breaks the rule
    reason: str
    action: Action = Action.QUARANTINE
    reference: Reference | None = None  # the parent it looks up (its rows wait for it)
    batch_only: bool = False  # judged against the batch it arrived in; not re-checkable later


@dataclass(frozen=True)
class Lookup:
    """Columns taken from another Silver table by a join (products <- translation)."""

    table: str
    on: str  # column in both tables
    columns: tuple[Col, ...]  # exprs over the lookup table, alias ``l``


@dataclass(frozen=True)
class SilverTable:
    name: str
    bronze: str
    key: tuple[str, ...]
    columns: tuple[Col, ...]
    rules: tuple[Rule, ...] = ()
    references: tuple[Reference, ...] = ()
    lookup: Lookup | None = None
    kind: Kind = Kind.UPSERT
    unique_content: tuple[str, ...] = ()  # no two live keys may carry the same values here

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def upstream(self) -> tuple[str, ...]:
        """Silver tables this one reads (references and lookups)."""
        names = [r.table for r in self.references]
        if self.lookup:
            names.append(self.lookup.table)
        return tuple(dict.fromkeys(n for n in names if n != self.name))


# -- normalisation snippets (DuckDB SQL) ------------------------------------------------------
def text(col: str) -> str:
    return f"nullif(trim({col}), '')"


def lower_id(col: str) -> str:
    return f"lower(nullif(trim({col}), ''))"


SPACING_ACCENTS = "\u00b4`\u2018\u2019"  # written in place of an apostrophe


def city(col: str) -> str:
    """Lower-case, accents stripped, spaces collapsed; a state or country written after the
    city ('sao paulo / sp', 'rio de janeiro, rio de janeiro, brasil', 'santos - sp') is cut;
    a zip code or an e-mail address in place of a city becomes NULL (the row is kept: its
    orders must not be lost over a typo; a warn rule counts it). Accents written as spacing
    characters (acute accent U+00B4, grave accent, curly quotes: ``santa barbara d\u00b4oeste``)
    become the apostrophe (``d'oeste``)."""
    apostrophe = f"regexp_replace(trim({col}), '[{SPACING_ACCENTS}]', chr(39), 'g')"
    cleaned = f"regexp_replace(lower(strip_accents({apostrophe})), '\\s+', ' ', 'g')"
    first = f"split_part(regexp_replace({cleaned}, '[/\\\\,]', '/', 'g'), '/', 1)"
    name = f"trim(regexp_replace({first}, '\\s+-\\s+[a-z]{{2}}$', ''))"
    not_a_city = f"regexp_full_match({name}, '[0-9 -]*') OR contains({name}, '@')"
    return f"CASE WHEN {not_a_city} THEN NULL ELSE {name} END"


def state(col: str) -> str:
    return f"upper(nullif(trim({col}), ''))"


def zip_prefix(col: str) -> str:
    """Zip prefixes as 5-character text; a prefix that lost its leading zeros gets them back."""
    trimmed = f"nullif(trim({col}), '')"
    padded = f"lpad({trimmed}, 5, '0')"
    return (
        f"CASE WHEN regexp_full_match({trimmed}, '[0-9]{{1,5}}') THEN {padded} ELSE {trimmed} END"
    )


def required(*cols: str) -> tuple[Rule, ...]:
    return tuple(Rule(f"{c}_required", f"{c} IS NULL", f"{c} is missing") for c in cols)


def plausible_time(*cols: str) -> Rule:
    bad = " OR ".join(
        f"({c} < TIMESTAMP '2000-01-01' OR {c} >= TIMESTAMP '2100-01-01')" for c in cols
    )
    return Rule("timestamps_plausible", bad, "a timestamp lies before 2000 or after 2099")


def non_negative(*cols: str) -> tuple[Rule, ...]:
    return tuple(Rule(f"{c}_non_negative", f"{c} < 0", f"{c} is negative") for c in cols)


def valid_zip(col: str) -> Rule:
    return Rule(
        f"{col}_format", f"NOT regexp_full_match({col}, '[0-9]{{5}}')", f"{col} is not 5 digits"
    )


def valid_state(col: str) -> Rule:
    return Rule(
        f"{col}_format",
        f"NOT regexp_full_match({col}, '[A-Z]{{2}}')",
        f"{col} is not a 2-letter state",
    )


ORDER_STATUSES = (
    "created",
    "approved",
    "invoiced",
    "processing",
    "shipped",
    "delivered",
    "canceled",
    "unavailable",
)
PAYMENT_TYPES = ("credit_card", "boleto", "voucher", "debit_card", "not_defined")


def accepted(col: str, values: tuple[str, ...]) -> Rule:
    listed = ", ".join(f"'{v}'" for v in values)
    return Rule(
        f"{col}_accepted", f"{col} NOT IN ({listed})", f"{col} is not one of {', '.join(values)}"
    )


def ts(col: str) -> Col:
    return Col(col, "TIMESTAMP", col)


ORDER_TIMES = (
    "order_purchase_timestamp",
    "order_approved_at",
    "order_delivered_carrier_date",
    "order_delivered_customer_date",
    "order_estimated_delivery_date",
)

SILVER_TABLES: tuple[SilverTable, ...] = (
    SilverTable(
        "product_category_name_translation",
        "product_category_name_translation",
        key=("product_category_name",),
        columns=(
            Col("product_category_name", "VARCHAR", "lower(trim(product_category_name))"),
            Col("product_category_name_english", "VARCHAR", text("product_category_name_english")),
        ),
        rules=(
            Rule(
                "english_name_present",
                "product_category_name_english IS NULL",
                "category has no English name",
                Action.WARN,
            ),
        ),
    ),
    SilverTable(
        "customers",
        "customers",
        key=("customer_id",),
        columns=(
            Col("customer_id", "VARCHAR", lower_id("customer_id")),
            Col("customer_unique_id", "VARCHAR", lower_id("customer_unique_id")),
            Col("customer_zip_code_prefix", "VARCHAR", zip_prefix("customer_zip_code_prefix")),
            Col("customer_city", "VARCHAR", city("customer_city")),
            Col("customer_state", "VARCHAR", state("customer_state")),
        ),
        rules=(
            *required("customer_unique_id"),
            valid_zip("customer_zip_code_prefix"),
            valid_state("customer_state"),
        ),
    ),
    SilverTable(
        "sellers",
        "sellers",
        key=("seller_id",),
        columns=(
            Col("seller_id", "VARCHAR", lower_id("seller_id")),
            Col("seller_zip_code_prefix", "VARCHAR", zip_prefix("seller_zip_code_prefix")),
            Col("seller_city", "VARCHAR", city("seller_city")),
            Col("seller_state", "VARCHAR", state("seller_state")),
        ),
        rules=(
            valid_zip("seller_zip_code_prefix"),
            valid_state("seller_state"),
            Rule(
                "seller_city_present",
                "seller_city IS NULL",
                "seller_city is missing, or held a zip code or e-mail and was cleared",
                Action.WARN,
            ),
        ),
    ),
    SilverTable(
        "products",
        "products",
        key=("product_id",),
        columns=(
            Col("product_id", "VARCHAR", lower_id("product_id")),
            Col(
                "product_category_name", "VARCHAR", "lower(nullif(trim(product_category_name), ''))"
            ),
            Col("product_name_length", "SMALLINT", "product_name_lenght"),
            Col("product_description_length", "INTEGER", "product_description_lenght"),
            Col("product_photos_qty", "SMALLINT", "product_photos_qty"),
            Col("product_weight_g", "INTEGER", "product_weight_g"),
            Col("product_length_cm", "SMALLINT", "product_length_cm"),
            Col("product_height_cm", "SMALLINT", "product_height_cm"),
            Col("product_width_cm", "SMALLINT", "product_width_cm"),
        ),
        rules=(
            *non_negative(
                "product_weight_g",
                "product_length_cm",
                "product_height_cm",
                "product_width_cm",
                "product_photos_qty",
            ),
            Rule(
                "category_present",
                "product_category_name IS NULL",
                "product has no category",
                Action.WARN,
            ),
        ),
        lookup=Lookup(
            "product_category_name_translation",
            on="product_category_name",
            columns=(
                Col(
                    "product_category_name_english",
                    "VARCHAR",
                    "coalesce(l.product_category_name_english, s.product_category_name)",
                ),
                Col(
                    "category_translated",
                    "BOOLEAN",
                    "s.product_category_name IS NULL "
                    "OR l.product_category_name_english IS NOT NULL",
                ),
            ),
        ),
    ),
    SilverTable(
        "geolocation",
        "geolocation",
        key=("zip_code_prefix",),
        columns=(
            Col("geolocation_id", "BIGINT", "geolocation_id"),
            Col("zip_code_prefix", "VARCHAR", zip_prefix("geolocation_zip_code_prefix")),
            Col("lat", "DOUBLE", "geolocation_lat"),
            Col("lng", "DOUBLE", "geolocation_lng"),
            Col("city", "VARCHAR", city("geolocation_city"), per_value_of="geolocation_city"),
            Col("state", "VARCHAR", state("geolocation_state")),
        ),
        kind=Kind.AGGREGATE,
    ),
    SilverTable(
        "orders",
        "orders",
        key=("order_id",),
        columns=(
            Col("order_id", "VARCHAR", lower_id("order_id")),
            Col("customer_id", "VARCHAR", lower_id("customer_id")),
            Col("order_status", "VARCHAR", "lower(trim(order_status))"),
            *(ts(c) for c in ORDER_TIMES),
        ),
        rules=(
            *required("customer_id", "order_purchase_timestamp"),
            accepted("order_status", ORDER_STATUSES),
            plausible_time(*ORDER_TIMES),
            Rule(
                "delivered_after_purchase",
                "order_delivered_customer_date < order_purchase_timestamp",
                "delivered to the customer before it was purchased",
            ),
            Rule(
                "approved_after_purchase",
                "order_approved_at < order_purchase_timestamp",
                "approved before it was purchased",
            ),
            Rule(
                "delivered_has_date",
                "order_status = 'delivered' AND order_delivered_customer_date IS NULL",
                "delivered order without a delivery date",
                Action.WARN,
            ),
        ),
        references=(Reference(("customer_id",), "customers", ("customer_id",)),),
    ),
    SilverTable(
        "order_items",
        "order_items",
        key=("order_id", "order_item_id"),
        columns=(
            Col("order_id", "VARCHAR", lower_id("order_id")),
            Col("order_item_id", "SMALLINT", "order_item_id"),
            Col("product_id", "VARCHAR", lower_id("product_id")),
            Col("seller_id", "VARCHAR", lower_id("seller_id")),
            ts("shipping_limit_date"),
            Col("price", "DECIMAL(12,2)", "price"),
            Col("freight_value", "DECIMAL(12,2)", "freight_value"),
        ),
        rules=(
            *required("product_id", "seller_id", "price"),
            *non_negative("price", "freight_value"),
            Rule("order_item_id_positive", "order_item_id < 1", "order_item_id is not positive"),
            plausible_time("shipping_limit_date"),
        ),
        references=(
            Reference(("order_id",), "orders", ("order_id",)),
            Reference(("product_id",), "products", ("product_id",)),
            Reference(("seller_id",), "sellers", ("seller_id",)),
        ),
    ),
    SilverTable(
        "order_payments",
        "order_payments",
        key=("order_id", "payment_sequential"),
        columns=(
            Col("order_id", "VARCHAR", lower_id("order_id")),
            Col("payment_sequential", "SMALLINT", "payment_sequential"),
            Col("payment_type", "VARCHAR", "lower(trim(payment_type))"),
            Col("payment_installments", "SMALLINT", "payment_installments"),
            Col("payment_value", "DECIMAL(12,2)", "payment_value"),
        ),
        rules=(
            *required("payment_type", "payment_value"),
            accepted("payment_type", PAYMENT_TYPES),
            *non_negative("payment_installments", "payment_value"),
        ),
        references=(Reference(("order_id",), "orders", ("order_id",)),),
    ),
    SilverTable(
        "order_reviews",
        "order_reviews",
        key=("review_id", "order_id"),
        columns=(
            Col("review_id", "VARCHAR", lower_id("review_id")),
            Col("order_id", "VARCHAR", lower_id("order_id")),
            Col("review_score", "SMALLINT", "review_score"),
            Col("review_comment_title", "VARCHAR", text("review_comment_title")),
            Col("review_comment_message", "VARCHAR", text("review_comment_message")),
            ts("review_creation_date"),
            ts("review_answer_timestamp"),
        ),
        rules=(
            *required("review_score", "review_creation_date"),
            Rule(
                "review_score_range", "review_score NOT BETWEEN 1 AND 5", "review_score is not 1-5"
            ),
            plausible_time("review_creation_date", "review_answer_timestamp"),
            Rule(
                "answered_after_creation",
                "review_answer_timestamp < review_creation_date",
                "answered before the review was created",
            ),
        ),
        references=(Reference(("order_id",), "orders", ("order_id",)),),
        unique_content=(
            "order_id",
            "review_score",
            "review_comment_title",
            "review_comment_message",
            "review_creation_date",
            "review_answer_timestamp",
        ),
    ),
)

_REGISTRY = Registry("Silver table", SILVER_TABLES)


def silver_table(name: str) -> SilverTable:
    return _REGISTRY[name]


def silver_tables() -> tuple[SilverTable, ...]:
    return SILVER_TABLES
