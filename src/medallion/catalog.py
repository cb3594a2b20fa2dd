"""The source tables, declared once as data and read by every layer.

Each :class:`SourceTable` names its Kaggle file stem (the table name in the source database),
its short lake name, its business columns in file order with their types, and its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from medallion.errors import CatalogError

UPDATED_AT = "updated_at"
DELETED_AT = "deleted_at"


class ColumnType(StrEnum):
    """Logical column types; each maps to an Arrow type and a SQL type per dialect."""

    ID = "id"  # 32-character lowercase hex
    TEXT = "text"
    ZIP = "zip"  # 5-character zip code prefix, leading zeros kept
    INT = "int"
    FLOAT = "float"
    MONEY = "money"  # BRL with 2 decimals, exact
    TIMESTAMP = "timestamp"

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]

    def sql(self, dialect: str) -> str:
        return _SQL[dialect][self]

    @property
    def is_text(self) -> bool:
        return self in (ColumnType.ID, ColumnType.TEXT, ColumnType.ZIP)


_ARROW: dict[ColumnType, pa.DataType] = {
    ColumnType.ID: pa.string(),
    ColumnType.TEXT: pa.string(),
    ColumnType.ZIP: pa.string(),
    ColumnType.INT: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.MONEY: pa.decimal128(12, 2),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
}

# SQLite keeps timestamps as ISO text (what ADBC writes) and money as REAL; Bronze casts
# both back to exact Arrow types, so the lake is the same whichever source is used.
_SQL: dict[str, dict[ColumnType, str]] = {
    "sqlite": {
        ColumnType.ID: "TEXT",
        ColumnType.TEXT: "TEXT",
        ColumnType.ZIP: "TEXT",
        ColumnType.INT: "INTEGER",
        ColumnType.FLOAT: "REAL",
        ColumnType.MONEY: "REAL",
        ColumnType.TIMESTAMP: "TEXT",
    },
    "postgresql": {
        ColumnType.ID: "TEXT",
        ColumnType.TEXT: "TEXT",
        ColumnType.ZIP: "TEXT",
        ColumnType.INT: "BIGINT",
        ColumnType.FLOAT: "DOUBLE PRECISION",
        ColumnType.MONEY: "NUMERIC(12,2)",
        ColumnType.TIMESTAMP: "TIMESTAMP",
    },
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(frozen=True)
class SourceTable:
    """One operational table: the Kaggle file it mirrors and how it is keyed and tracked."""

    name: str  # short lake name, e.g. "orders"
    source_name: str  # table name in the source database = Kaggle file stem
    columns: tuple[Column, ...]  # business columns in Kaggle file order
    key: tuple[str, ...]  # natural key; empty when the table has none
    surrogate_key: str | None = None  # source-side surrogate for keyless tables
    watermark: str = UPDATED_AT

    @property
    def csv_file(self) -> str:
        return f"{self.source_name}.csv"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def row_key(self) -> tuple[str, ...]:
        """The columns that identify one source row (natural key, else the surrogate)."""
        if self.key:
            return self.key
        assert self.surrogate_key is not None
        return (self.surrogate_key,)

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Every source column: surrogate, business columns, then change tracking."""
        extra = (Column(self.surrogate_key, ColumnType.INT, False),) if self.surrogate_key else ()
        tracking = (
            Column(UPDATED_AT, ColumnType.TIMESTAMP, False),
            Column(DELETED_AT, ColumnType.TIMESTAMP, True),
        )
        return extra + self.columns + tracking

    def column(self, name: str) -> Column:
        for col in self.all_columns:
            if col.name == name:
                return col
        valid = ", ".join(c.name for c in self.all_columns)
        raise CatalogError(f"table {self.name} has no column {name!r}; columns: {valid}")

    def arrow_schema(self, *, business_only: bool = False) -> pa.Schema:
        cols = self.columns if business_only else self.all_columns
        return pa.schema([pa.field(c.name, c.type.arrow, c.nullable) for c in cols])


def _cols(*spec: tuple[str, ColumnType] | tuple[str, ColumnType, bool]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in spec)


ID_, TX, ZP, INT, FLT, MON, TS = (
    ColumnType.ID,
    ColumnType.TEXT,
    ColumnType.ZIP,
    ColumnType.INT,
    ColumnType.FLOAT,
    ColumnType.MONEY,
    ColumnType.TIMESTAMP,
)

SOURCE_TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "customers",
        "olist_customers_dataset",
        _cols(
            ("customer_id", ID_, False),
            ("customer_unique_id", ID_),
            ("customer_zip_code_prefix", ZP),
            ("customer_city", TX),
            ("customer_state", TX),
        ),
        key=("customer_id",),
    ),
    SourceTable(
        "geolocation",
        "olist_geolocation_dataset",
        _cols(
            ("geolocation_zip_code_prefix", ZP),
            ("geolocation_lat", FLT),
            ("geolocation_lng", FLT),
            ("geolocation_city", TX),
            ("geolocation_state", TX),
        ),
        key=(),
        surrogate_key="geolocation_id",
    ),
    SourceTable(
        "order_items",
        "olist_order_items_dataset",
        _cols(
            ("order_id", ID_, False),
            ("order_item_id", INT, False),
            ("product_id", ID_),
            ("seller_id", ID_),
            ("shipping_limit_date", TS),
            ("price", MON),
            ("freight_value", MON),
        ),
        key=("order_id", "order_item_id"),
    ),
    SourceTable(
        "order_payments",
        "olist_order_payments_dataset",
        _cols(
            ("order_id", ID_, False),
            ("payment_sequential", INT, False),
            ("payment_type", TX),
            ("payment_installments", INT),
            ("payment_value", MON),
        ),
        key=("order_id", "payment_sequential"),
    ),
    SourceTable(
        "order_reviews",
        "olist_order_reviews_dataset",
        _cols(
            ("review_id", ID_, False),
            ("order_id", ID_, False),
            ("review_score", INT),
            ("review_comment_title", TX),
            ("review_comment_message", TX),
            ("review_creation_date", TS),
            ("review_answer_timestamp", TS),
        ),
        key=("review_id", "order_id"),
    ),
    SourceTable(
        "orders",
        "olist_orders_dataset",
        _cols(
            ("order_id", ID_, False),
            ("customer_id", ID_),
            ("order_status", TX),
            ("order_purchase_timestamp", TS),
            ("order_approved_at", TS),
            ("order_delivered_carrier_date", TS),
            ("order_delivered_customer_date", TS),
            ("order_estimated_delivery_date", TS),
        ),
        key=("order_id",),
    ),
    SourceTable(
        "products",
        "olist_products_dataset",
        _cols(
            ("product_id", ID_, False),
            ("product_category_name", TX),
            ("product_name_lenght", INT),
            ("product_description_lenght", INT),
            ("product_photos_qty", INT),
            ("product_weight_g", INT),
            ("product_length_cm", INT),
            ("product_height_cm", INT),
            ("product_width_cm", INT),
        ),
        key=("product_id",),
    ),
    SourceTable(
        "sellers",
        "olist_sellers_dataset",
        _cols(
            ("seller_id", ID_, False),
            ("seller_zip_code_prefix", ZP),
            ("seller_city", TX),
            ("seller_state", TX),
        ),
        key=("seller_id",),
    ),
    SourceTable(
        "product_category_name_translation",
        "product_category_name_translation",
        _cols(("product_category_name", TX, False), ("product_category_name_english", TX)),
        key=("product_category_name",),
    ),
)

_BY_NAME = {t.name: t for t in SOURCE_TABLES}
_BY_SOURCE_NAME = {t.source_name: t for t in SOURCE_TABLES}
if len(_BY_NAME) != len(SOURCE_TABLES):  # pragma: no cover - guards the declarations above
    raise CatalogError("duplicate source table name in the catalog")


def source_table(name: str) -> SourceTable:
    """A table by short lake name or by source (Kaggle file stem) name."""
    found = _BY_NAME.get(name) or _BY_SOURCE_NAME.get(name)
    if found is None:
        valid = ", ".join(_BY_NAME)
        raise CatalogError(f"unknown table {name!r}; valid tables: {valid}")
    return found


def source_tables(names: list[str] | tuple[str, ...] | None = None) -> tuple[SourceTable, ...]:
    """The named tables (all when ``names`` is empty), in catalog order."""
    if not names:
        return SOURCE_TABLES
    wanted = {source_table(n).name for n in names}
    return tuple(t for t in SOURCE_TABLES if t.name in wanted)


# Lineage columns every Bronze row carries after the source columns.
META_FIELDS = (
    pa.field("_run_id", pa.string(), False),
    pa.field("_ingested_at", pa.timestamp("us"), False),
    pa.field("_source_updated_at", pa.timestamp("us")),
    pa.field("_op", pa.string(), False),
    pa.field("_ingest_date", pa.date32(), False),
)


def empty_bronze(name: str) -> pa.Table:
    """A Bronze table of source table ``name`` with no rows (one never extracted)."""
    return bronze_schema(source_table(name)).empty_table()


def bronze_schema(table: SourceTable, extra_columns: tuple[str, ...] = ()) -> pa.Schema:
    """Catalog columns (typed), evolved extra source columns (text), then lineage columns.

    Only the key is required: a tombstone carries nothing else.
    """
    keys = set(table.row_key)
    fields = [f.with_nullable(f.name not in keys) for f in table.arrow_schema()]
    fields += [pa.field(name, pa.string()) for name in extra_columns]
    return pa.schema(fields + list(META_FIELDS))


@dataclass(frozen=True, order=True)
class TableRef:
    """A table of the lake (or the source), named by layer and table: ``silver.orders``."""

    layer: str
    name: str

    @classmethod
    def parse(cls, text: str) -> TableRef:
        layer, sep, name = text.partition(".")
        if not sep or not layer or not name:
            raise CatalogError(f"{text!r} is not a table reference (layer.table)")
        return cls(layer, name)

    def __str__(self) -> str:
        return f"{self.layer}.{self.name}"


def silver_ref(name: str) -> TableRef:
    return TableRef("silver", name)


def gold_ref(name: str) -> TableRef:
    return TableRef("gold", name)
