"""Which checks every table of every layer has, derived from the declarations (catalog,
Silver contracts, Gold model)."""

from __future__ import annotations

from medallion.catalog import SOURCE_TABLES, SourceTable, bronze_schema, source_table
from medallion.checks.kinds import (
    LIVE,
    SOURCE_LIVE,
    Check,
    Need,
    Severity,
    bronze_live,
    freshness,
    not_null,
    reconcile_keys,
    reconcile_sum,
    relationship,
    row_count_drift,
    rule_check,
    schema_contract,
    unique,
)
from medallion.errors import MedallionError
from medallion.gold.model import GOLD_TABLES, GoldKind
from medallion.silver.contracts import Action, Kind, SilverTable, silver_tables
from medallion.silver.transform import all_rules


# -- the declarations ------------------------------------------------------------------------
def bronze_checks(table: SourceTable) -> list[Check]:
    keys = table.row_key
    src = Need("src", "source", table.name, (*keys, "deleted_at"))
    return [
        schema_contract("bronze", table.name, bronze_schema(table)),
        reconcile_keys(
            "bronze",
            table.name,
            keys,
            upstream=src,
            upstream_rows=SOURCE_LIVE,
            here_rows=bronze_live("t", keys),
        ),
    ]


def silver_checks(spec: SilverTable, drift: float, max_lag_s: float) -> list[Check]:
    checks = [
        row_count_drift("silver", spec.name, drift, LIVE if spec.kind is Kind.UPSERT else "TRUE")
    ]
    if spec.kind is Kind.AGGREGATE:
        return [*checks, unique("silver", spec.name, spec.key)]
    checks += [
        unique("silver", spec.name, spec.key),
        *(not_null("silver", spec.name, k) for k in spec.key),
    ]
    for rule in all_rules(spec):
        if rule.batch_only:
            continue  # judged against the batch it arrived in, not re-checkable on Silver
        ref = rule.reference
        needs = (Need(f"ref_{ref.table}", "silver", ref.table, ref.key),) if ref else ()
        severity = Severity.FAIL if rule.action is Action.QUARANTINE else Severity.WARN
        checks.append(
            rule_check(
                "silver", spec.name, rule.name, rule.violation, severity=severity, needs=needs
            )
        )
    source = source_table(spec.bronze)
    bronze = Need(
        "b", "bronze", source.name, (*source.row_key, "_source_updated_at", "_ingested_at", "_op")
    )
    quarantined = Need("q", "quarantine", spec.name, source.row_key)
    checks += [
        freshness("silver", spec.name, source, max_lag_s),
        reconcile_keys(
            "silver",
            spec.name,
            spec.key,
            upstream=bronze,
            upstream_rows=bronze_live("b", source.row_key),
            excused=quarantined,
        ),
    ]
    return checks


SILVER_LIVE_ORDERS = f"SELECT * FROM s WHERE {LIVE}"


def one_current_version(dim: str, natural_key: tuple[str, ...]) -> Check:
    key = ", ".join(natural_key)
    return Check(
        "one_current_version",
        "gold",
        dim,
        "scd2",
        Severity.FAIL,
        f"SELECT {key}, count(*) FILTER (WHERE is_current) AS current_versions FROM t "
        f"GROUP BY {key} HAVING count(*) FILTER (WHERE is_current) > 1",
    )


def gold_checks(drift: float) -> list[Check]:
    checks: list[Check] = []
    for g in GOLD_TABLES:  # grains and foreign keys come from the Gold declarations
        if g.kind is not GoldKind.SCD2:
            checks.append(unique("gold", g.name, g.grain))
            checks.append(row_count_drift("gold", g.name, drift))
        for sk, dim in g.dimension_keys.items():
            checks.append(not_null("gold", g.name, sk))
            parent = Need("d", "gold", dim, (sk,))
            checks.append(relationship("gold", g.name, sk, parent=parent, parent_col=sk))
        if g.kind is GoldKind.SCD2:
            assert g.dimension is not None
            checks.append(one_current_version(g.name, g.dimension.spec.natural_key))
    orders = Need("s", "silver", "orders", ("order_id", "is_deleted"))
    payments = Need(
        "s",
        "silver",
        "order_payments",
        ("order_id", "payment_sequential", "payment_value", "is_deleted"),
    )
    items = Need("s", "silver", "order_items", ("order_id", "order_item_id", "is_deleted"))
    every = "SELECT * FROM t"
    checks += [
        reconcile_keys(
            "gold",
            "fact_order",
            ("order_id",),
            upstream=orders,
            upstream_rows=SILVER_LIVE_ORDERS,
            here_rows=every,
        ),
        reconcile_keys(
            "gold",
            "fact_order_item",
            ("order_id", "order_item_id"),
            upstream=items,
            upstream_rows=SILVER_LIVE_ORDERS,
            here_rows=every,
        ),
        reconcile_sum(
            "gold",
            "fact_payment",
            "payment_value",
            upstream=payments,
            upstream_rows=SILVER_LIVE_ORDERS,
            here_rows=every,
        ),
    ]
    return checks


def bronze_revenue() -> Check:
    table = source_table("order_payments")
    src = Need("src", "source", table.name, (*table.row_key, "payment_value", "deleted_at"))
    return reconcile_sum(
        "bronze",
        table.name,
        "payment_value",
        upstream=src,
        upstream_rows=SOURCE_LIVE,
        here_rows=bronze_live("t", table.row_key),
    )


def declared_checks(drift: float = 0.5, max_lag_s: float = 86_400.0) -> list[Check]:
    """Every check of every layer, with the drift threshold and the freshness limit."""
    checks = [c for t in SOURCE_TABLES for c in bronze_checks(t)] + [bronze_revenue()]
    checks += [c for spec in silver_tables() for c in silver_checks(spec, drift, max_lag_s)]
    checks += gold_checks(drift)
    names = [c.full_name for c in checks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:  # pragma: no cover - guards the declarations above
        raise MedallionError(f"checks declared twice: {', '.join(dupes)}")
    return checks
