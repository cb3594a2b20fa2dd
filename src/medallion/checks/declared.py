"""Which checks every table of every layer has, derived from the declarations (catalog,
Silver contracts, Gold model)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from medallion.catalog import SOURCE_TABLES, SourceTable, bronze_schema, source_table
from medallion.checks.inputs import SOURCE
from medallion.checks.kinds import (
    ALL_ROWS,
    LIVE_ROWS,
    SOURCE_LIVE,
    Check,
    Keyed,
    Need,
    Severity,
    Total,
    bronze_live,
    freshness,
    live_rows,
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
from medallion.gold.model import GOLD_TABLES, Dimension, Fact, GoldTable
from medallion.settings import Settings
from medallion.silver.contracts import Action, Kind, SilverTable, silver_tables
from medallion.silver.transform import all_rules


# -- the declarations ------------------------------------------------------------------------
def bronze_checks(table: SourceTable, *, portable_keys: bool = False) -> list[Check]:
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
            fingerprinted=True,
            portable=portable_keys,
        ),
    ]


def silver_checks(spec: SilverTable, drift: float, max_lag_s: float) -> list[Check]:
    counted = LIVE_ROWS if spec.kind is Kind.UPSERT else ALL_ROWS
    checks = [row_count_drift("silver", spec.name, drift, counted)]
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
        parent = Need(f"ref_{ref.table}", "silver", ref.table, ref.key) if ref else None
        severity = Severity.FAIL if rule.action is Action.QUARANTINE else Severity.WARN
        checks.append(
            rule_check(
                "silver",
                spec.name,
                rule.name,
                rule.violation,
                severity=severity,
                parent=parent,
                columns=ref.columns if ref else (),
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


SILVER_LIVE = live_rows("s")


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
        locality=Keyed((("t", natural_key),)),
        columns=(*natural_key, "is_current"),
    )


def gold_checks(drift: float, tables: Sequence[GoldTable] = GOLD_TABLES) -> list[Check]:
    """Each Gold table's checks, from what its kind declares."""
    checks: list[Check] = []
    for g in tables:
        checks += [unique("gold", g.name, g.grain), *_key_checks(g)]
        if isinstance(g, Dimension):
            checks.append(one_current_version(g.name, g.fold.spec.natural_key))
        else:  # an SCD2 dimension only grows: its size is not expected to be stable
            checks.append(row_count_drift("gold", g.name, drift))
        if isinstance(g, Fact):
            checks += _mirror_checks(g)
    return checks


def _key_checks(g: GoldTable) -> list[Check]:
    """Every surrogate key points at a member of its dimension (0: the unknown member)."""
    checks = []
    for sk, dim in g.dimension_keys.items():
        parent = Need("d", "gold", dim, (sk,))
        checks.append(not_null("gold", g.name, sk))
        checks.append(relationship("gold", g.name, sk, parent=parent, parent_col=sk))
    for key in g.date_keys:
        parent = Need("d", "gold", "dim_date", ("date_key",))
        where = f"{key} <> 0"  # 0: unknown date
        checks.append(
            relationship("gold", g.name, key, parent=parent, parent_col="date_key", where=where)
        )
    return checks


def _mirror_checks(fact: Fact) -> list[Check]:
    """A fact has one row per live row of the Silver table it mirrors, and the same totals."""
    if fact.mirrors is None:
        return []
    cols = (*fact.grain, *fact.totals, "is_deleted")
    upstream = Need("s", fact.mirrors.layer, fact.mirrors.name, cols)
    every = ALL_ROWS
    live = SILVER_LIVE
    return [
        reconcile_keys(
            "gold", fact.name, fact.grain, upstream=upstream, upstream_rows=live, here_rows=every
        ),
        *(
            reconcile_sum(
                "gold", fact.name, c, upstream=upstream, upstream_rows=live, here_rows=every
            )
            for c in fact.totals
        ),
    ]


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


SOURCE_TOTALS = "source_totals"  # Bronze task metrics: the totals below, by Total.key
SOURCE_VERSION = "source_version"  # and the table's version, as a check keeps it


def source_totals(
    table: SourceTable, settings: Settings
) -> tuple[tuple[Total, ...], tuple[str, ...]]:
    """The totals the checks compare with over the rows of source table ``table``, and the
    columns they read: Bronze computes them from the rows it reads anyway, so that a check
    does not read the source again (:meth:`CheckRunner._total_since`)."""
    return _source_totals(table.name, portable_keys(settings))


def portable_keys(settings: Settings) -> bool:
    """Whether the key fingerprints must hash alike on every engine: a lake side is summed
    by the configured engine, the source side by DuckDB in this process
    (:func:`~medallion.checks.kinds.key_hash`)."""
    return settings.engine != "duckdb"


@cache
def _source_totals(table: str, portable: bool) -> tuple[tuple[Total, ...], tuple[str, ...]]:
    totals: dict[str, Total] = {}
    columns: dict[str, None] = {}
    for check in declared_checks(portable_keys=portable):
        for alias, (layer, name) in check.inputs.items():
            if (layer, name) != (SOURCE, table):
                continue
            pairs = [t for pair in check.agree for t in pair]
            mine = [t for t in (*check.totals, *pairs) if t.rows.alias == alias]
            totals |= {t.key: t for t in mine}
            need = next(n for n in check.needs if n.alias == alias)
            if any(not t.newest_update for t in mine):  # rows to ship with the keys
                columns |= dict.fromkeys(need.columns or ())
    return tuple(totals.values()), tuple(columns)


@cache  # every check task of a run asks for the same declarations
def declared_checks(
    drift: float = 0.5, max_lag_s: float = 86_400.0, *, portable_keys: bool = False
) -> tuple[Check, ...]:
    """Every check of every layer, with the drift threshold and the freshness limit; key
    fingerprints hashed alike on every engine when ``portable_keys`` (:func:`portable_keys`)."""
    bronze = [c for t in SOURCE_TABLES for c in bronze_checks(t, portable_keys=portable_keys)]
    checks = [*bronze, bronze_revenue()]
    checks += [c for spec in silver_tables() for c in silver_checks(spec, drift, max_lag_s)]
    checks += gold_checks(drift)
    names = [c.full_name for c in checks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:  # pragma: no cover - guards the declarations above
        raise MedallionError(f"checks declared twice: {', '.join(dupes)}")
    return tuple(checks)
