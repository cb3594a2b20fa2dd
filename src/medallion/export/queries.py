"""The named queries (``medallion query``) in each warehouse's SQL: transpiled once from
DuckDB's dialect with sqlglot, with the Gold tables qualified by the dataset or schema."""

from __future__ import annotations

from functools import cache

import sqlglot
from sqlglot import exp

from medallion.gold.queries import named_query

DIALECTS = {"bigquery": "bigquery", "postgresql": "postgres", "duckdb": "duckdb"}


@cache
def warehouse_sql(name: str, dialect: str, namespace: str = "", catalog: str = "") -> str:
    """The named query ``name`` for ``dialect`` (bigquery, postgresql, duckdb), its tables
    in ``namespace`` (a BigQuery dataset, a PostgreSQL schema) of ``catalog`` (a project)."""
    tree = sqlglot.parse_one(named_query(name).sql, read="duckdb")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name in ctes:
            continue
        if namespace:
            table.set("db", exp.to_identifier(namespace))
        if catalog:
            table.set("catalog", exp.to_identifier(catalog))
    if dialect == "bigquery":  # sqlglot writes FORMAT_DATE, which a TIMESTAMP does not take
        for node in list(tree.find_all(exp.TimeToStr)):
            node.replace(
                exp.Anonymous(this="FORMAT_TIMESTAMP", expressions=[node.args["format"], node.this])
            )
    return tree.sql(dialect=DIALECTS[dialect])
