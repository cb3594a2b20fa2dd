"""The built-in kinds of check (unique, not null, rule, relationship, drift, freshness,
schema contract, reconciliation) as functions that return a :class:`Check`: a query that
returns violating rows, or a measure, plus a severity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa

from medallion.catalog import SourceTable

LAYER = "check"
SAMPLE_ROWS = 5


class Severity(StrEnum):
    WARN = "warn"
    FAIL = "fail"


class CheckStatus(StrEnum):
    """A check's outcome, as stored in ``audit.dq_results.status``."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Need:
    """Another table a check reads: ``layer`` is bronze, silver, gold or source."""

    alias: str
    layer: str
    table: str
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Check:
    name: str
    layer: str
    table: str
    kind: str
    severity: Severity
    sql: str = ""  # violating rows, over ``t`` (the checked table) and the needs' aliases
    measure: str = ""  # drift / freshness: one row with an ``observed`` number
    threshold: float | None = None
    needs: tuple[Need, ...] = ()
    expected_schema: pa.Schema | None = None  # schema contract

    @property
    def full_name(self) -> str:
        return f"{self.layer}.{self.table}.{self.name}"


@dataclass
class Result:
    check: Check
    status: CheckStatus
    failing_rows: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    observed: float | None = None
    details: str = ""


# -- built-in checks --------------------------------------------------------------------------
LIVE = "NOT coalesce(is_deleted, false)"


def unique(layer: str, table: str, cols: Sequence[str], where: str = "TRUE") -> Check:
    keys = ", ".join(cols)
    return Check(
        f"{'_'.join(cols)}_unique",
        layer,
        table,
        "unique",
        Severity.FAIL,
        f"SELECT {keys}, count(*) AS copies FROM t WHERE {where} "
        f"GROUP BY {keys} HAVING count(*) > 1",
    )


def not_null(layer: str, table: str, col: str, severity: Severity = Severity.FAIL) -> Check:
    return Check(
        f"{col}_not_null",
        layer,
        table,
        "not_null",
        severity,
        f"SELECT * FROM t WHERE {col} IS NULL",
    )


def rule_check(
    layer: str,
    table: str,
    name: str,
    violation: str,
    *,
    severity: Severity,
    needs: tuple[Need, ...] = (),
) -> Check:
    """A Silver contract rule re-checked on the live Silver rows."""
    return Check(
        name,
        layer,
        table,
        "rule",
        severity,
        f"SELECT * FROM t c WHERE {LIVE} AND coalesce(({violation}), false)",
        needs=needs,
    )


def relationship(
    layer: str, table: str, col: str, *, parent: Need, parent_col: str, where: str = "TRUE"
) -> Check:
    return Check(
        f"{col}_in_{parent.table}",
        layer,
        table,
        "relationships",
        Severity.FAIL,
        f"SELECT c.* FROM t c WHERE {where} AND c.{col} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {parent.alias} p WHERE p.{parent_col} = c.{col})",
        needs=(parent,),
    )


def row_count_drift(layer: str, table: str, threshold: float, where: str = "TRUE") -> Check:
    return Check(
        "row_count_drift",
        layer,
        table,
        "row_count_drift",
        Severity.WARN,
        measure=f"SELECT count(*) AS observed FROM t WHERE {where}",
        threshold=threshold,
    )


def freshness(layer: str, table: str, source: SourceTable, max_lag_s: float) -> Check:
    """How far the layer's newest ``updated_at`` trails the source's (seconds)."""
    need = Need("src", "source", source.name, ("updated_at",))
    return Check(
        "freshness",
        layer,
        table,
        "freshness",
        Severity.WARN,
        measure="SELECT coalesce(epoch((SELECT max(updated_at) FROM src)) - "
        "epoch((SELECT max(updated_at) FROM t)), 0) AS observed",
        threshold=max_lag_s,
        needs=(need,),
    )


def schema_contract(layer: str, table: str, expected: pa.Schema) -> Check:
    return Check("schema_contract", layer, table, "schema", Severity.FAIL, expected_schema=expected)


def reconcile_keys(
    layer: str,
    table: str,
    keys: Sequence[str],
    *,
    upstream: Need,
    upstream_rows: str,
    here_rows: str = f"SELECT * FROM t WHERE {LIVE}",
    excused: Need | None = None,
) -> Check:
    """Every live upstream key is live here (unless excused, e.g. quarantined), and every
    live key here is live upstream. ``*_rows`` are queries returning the live rows."""
    match = " AND ".join(f"a.{k} = b.{k}" for k in keys)
    cols = ", ".join(f"a.{k}" for k in keys)
    excuse = ""
    if excused is not None:
        on = " AND ".join(f"a.{k} = q.{k}" for k in keys)
        excuse = f" AND NOT EXISTS (SELECT 1 FROM {excused.alias} q WHERE {on})"
    return Check(
        f"reconcile_with_{upstream.layer}",
        layer,
        table,
        "reconciliation",
        Severity.FAIL,
        f"""
        WITH up AS ({upstream_rows}), here AS ({here_rows})
        SELECT {cols}, 'missing here' AS problem FROM up a
        WHERE NOT EXISTS (SELECT 1 FROM here b WHERE {match}){excuse}
        UNION ALL
        SELECT {cols}, 'not live upstream' AS problem FROM here a
        WHERE NOT EXISTS (SELECT 1 FROM up b WHERE {match})
        """,
        needs=(upstream, *((excused,) if excused else ())),
    )


def reconcile_sum(
    layer: str,
    table: str,
    col: str,
    *,
    upstream: Need,
    upstream_rows: str,
    here_rows: str = f"SELECT * FROM t WHERE {LIVE}",
) -> Check:
    return Check(
        f"{col}_sum_matches_{upstream.layer}",
        layer,
        table,
        "reconciliation",
        Severity.FAIL,
        f"""
        SELECT here, upstream, here - upstream AS difference FROM (
            SELECT (SELECT coalesce(sum({col}), 0) FROM ({here_rows})) AS here,
                (SELECT coalesce(sum({col}), 0) FROM ({upstream_rows})) AS upstream)
        WHERE here <> upstream
        """,
        needs=(upstream,),
    )


def bronze_live(alias: str, keys: Sequence[str]) -> str:
    """The live rows of a Bronze history: the latest row per key, when it is an upsert."""
    part = ", ".join(keys)
    return (
        f"SELECT * FROM {alias} QUALIFY row_number() OVER (PARTITION BY {part} "
        "ORDER BY _source_updated_at DESC, _ingested_at DESC, _op ASC) = 1 AND _op = 'upsert'"
    )


SOURCE_LIVE = "SELECT * FROM src WHERE deleted_at IS NULL"
