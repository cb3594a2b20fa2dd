"""Compare a source table's live columns with its declaration."""

from __future__ import annotations

from dataclasses import dataclass

from medallion.catalog import META_FIELDS, ColumnType, SourceTable
from medallion.errors import SchemaDriftError

_FAMILIES = {
    "text": ("char", "text", "clob", "string", "uuid"),
    "int": ("int",),
    "float": ("real", "floa", "doub"),
    "numeric": ("numeric", "decimal"),
    "timestamp": ("timestamp", "datetime"),
    "date": ("date",),  # after timestamp: 'datetime' contains 'date'
}
_ALLOWED: dict[ColumnType, set[str]] = {
    ColumnType.ID: {"text"},
    ColumnType.TEXT: {"text"},
    ColumnType.ZIP: {"text"},
    ColumnType.INT: {"int"},
    ColumnType.FLOAT: {"float", "numeric"},
    ColumnType.MONEY: {"numeric"},  # a float would round cents silently (but see SQLite)
    ColumnType.TIMESTAMP: {"timestamp", "text"},  # SQLite keeps ISO-8601 text
}


def type_family(sql_type: str) -> str:
    lowered = sql_type.lower()
    for family, needles in _FAMILIES.items():
        if any(n in lowered for n in needles):
            return family
    return lowered or "untyped"


@dataclass(frozen=True)
class Drift:
    new_columns: tuple[str, ...]


def check_drift(table: SourceTable, live: dict[str, str], dialect: str) -> Drift:
    """New columns are reported; a dropped or retyped declared column raises. SQLite has no
    exact numeric type: its money columns are REAL, checked value by value when read."""
    dropped = [c.name for c in table.all_columns if c.name not in live]
    if dropped:
        raise SchemaDriftError(
            f"source table {table.source_name} lost column(s) {', '.join(dropped)}; "
            "restore them or update the catalog declaration"
        )
    for col in table.all_columns:
        family = type_family(live[col.name])
        allowed = _ALLOWED[col.type] | ({"float"} if dialect == "sqlite" else set())
        if family not in allowed:
            raise SchemaDriftError(
                f"source column {table.source_name}.{col.name} changed type to {live[col.name]} "
                f"(declared {col.type.value}); restore it or update the catalog declaration"
            )
    declared = {c.name for c in table.all_columns}
    new = tuple(name for name in live if name not in declared)
    taken = {n.lower(): n for n in [*declared, *(f.name for f in META_FIELDS)]}
    for name in new:
        if name.lower() in taken:
            raise SchemaDriftError(
                f"new source column {table.source_name}.{name} clashes with the column "
                f"{taken[name.lower()]} (names are compared without case; names starting with "
                "'_' are Bronze's own); rename it in the source"
            )
    return Drift(new)
