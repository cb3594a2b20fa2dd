"""Data-quality checks, declared as data and attached to tables of every layer.

A check is a query that returns violating rows, plus a severity (``warn`` or ``fail``); drift
and freshness checks measure one number instead. Results go to ``audit.dq_results`` with the
number of failing rows and a sample of them. A ``fail`` check that fails makes its check task
fail, so the tasks downstream of that table are skipped and the run ends non-zero.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import pyarrow as pa

from medallion.audit import AuditStore
from medallion.catalog import SOURCE_TABLES, SourceTable, bronze_schema, source_table
from medallion.engine import Engine, default_engine
from medallion.errors import CheckFailed, MedallionError
from medallion.gold.model import GOLD_TABLES, GoldKind, gold_table
from medallion.runner import RunContext, Task, TaskResult
from medallion.settings import Settings
from medallion.silver.contracts import Action, Kind, SilverTable, silver_tables
from medallion.silver.transform import all_rules, empty_silver_sql
from medallion.source.db import open_source
from medallion.storage import Lake

log = logging.getLogger(__name__)

LAYER = "check"
SAMPLE_ROWS = 5


class Severity(StrEnum):
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
    status: str  # pass | warn | fail
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


# -- running -------------------------------------------------------------------------------
class CheckRunner:
    """Reads what a table's checks need, evaluates them, and records the results."""

    def __init__(self, ctx: RunContext, engine: Engine | None = None) -> None:
        self.ctx = ctx
        self.lake = Lake.from_settings(ctx.settings)
        self.engine = engine or default_engine()
        self._cache: dict[tuple[str, str, tuple[str, ...] | None], pa.Table | None] = {}

    def _cached(self, layer: str, table: str, columns: tuple[str, ...] | None) -> pa.Table | None:
        """Each table is read once per runner, however many checks use it."""
        key = (layer, table, columns)
        if key not in self._cache:
            self._cache[key] = self.lake.read(layer, table, list(columns) if columns else None)
        return self._cache[key]

    def run(self, checks: Iterable[Check], audit: AuditStore) -> list[Result]:
        results = []
        for check in checks:
            result = self.evaluate(check, audit)
            audit.record_check(self.ctx.run_id, _row(result))
            results.append(result)
        return results

    def evaluate(self, check: Check, audit: AuditStore) -> Result:
        if check.expected_schema is not None:
            schema = self.lake.schema(check.layer, check.table)
            if schema is None:
                return self._absent(check)
            return _schema_result(check, schema)
        target = self._cached(check.layer, check.table, None)
        if target is None:
            return self._absent(check)
        tables = {"t": target, **{n.alias: self._read(n) for n in check.needs}}
        if check.measure:
            return self._measured(check, tables, audit)
        # the violations are gathered whole and sampled in Arrow: a LIMIT over a UNION ALL of
        # window-function CTEs hangs DuckDB 2.0 (seen on the reconciliation checks)
        found = self.engine.query(check.sql, tables)
        if found.num_rows == 0:
            return Result(check, "pass")
        sample = found.slice(0, SAMPLE_ROWS).to_pylist()
        return Result(check, _status(check), int(found.num_rows), sample)

    def _absent(self, check: Check) -> Result:
        """A table that was never written passes only when everything it is built from is
        empty too (an empty source); otherwise its absence fails."""
        rows = self._upstream_rows(check.layer, check.table)
        if rows == 0:
            return Result(check, "pass", details="table not written yet (its inputs are empty)")
        held = "cannot be read" if rows is None else f"hold {rows} rows"
        return Result(
            check,
            "fail",
            1,
            details=f"{check.layer}.{check.table} does not exist although its inputs {held}; "
            "run `medallion run` (or check --home)",
        )

    def _upstream_rows(self, layer: str, table: str) -> int | None:
        """Rows in the nearest existing tables this one is built from (None: unreadable)."""
        if layer == "bronze":
            try:
                with open_source(self.ctx.settings.source_location) as db:
                    return int(
                        db.scalar(f"SELECT count(*) FROM {db.qualified(source_table(table))}") or 0
                    )
            except MedallionError:
                return None
        if layer == "silver":
            inputs = [f"bronze.{next(s for s in silver_tables() if s.name == table).bronze}"]
        else:  # an optional input (streamed reviews) may rightly be missing
            spec = gold_table(table)
            inputs = [ref for ref in spec.inputs if ref not in spec.optional_inputs]
        total = 0
        for ref in inputs:
            up_layer, up_table = ref.split(".", 1)
            schema = self.lake.schema(up_layer, up_table)
            if schema is None:
                rows = self._upstream_rows(up_layer, up_table)
            else:
                data = self._cached(up_layer, up_table, (schema.names[0],))
                rows = 0 if data is None else data.num_rows
            if rows is None:
                return None
            total += rows
        return total

    def _measured(self, check: Check, tables: Mapping[str, pa.Table], audit: AuditStore) -> Result:
        observed = float(self.engine.query(check.measure, tables)["observed"][0].as_py() or 0)
        limit = check.threshold or 0.0
        if check.kind == "freshness":
            broken = observed > limit
            details = f"{observed:.0f} s behind the source (limit {limit:.0f} s)"
            return Result(
                check, _status(check) if broken else "pass", int(broken), [], observed, details
            )
        previous = audit.last_observed(check.full_name, self.ctx.run_id)
        if previous is None:
            return Result(check, "pass", observed=observed, details="first measurement")
        change = (observed - previous) / previous if previous else (1.0 if observed else 0.0)
        broken = abs(change) > limit
        details = f"{previous:.0f} -> {observed:.0f} rows ({change:+.1%}, limit ±{limit:.0%})"
        return Result(
            check, _status(check) if broken else "pass", int(broken), [], observed, details
        )

    def _read(self, need: Need) -> pa.Table:
        columns = list(need.columns) if need.columns else None
        if need.layer == "source":
            with open_source(self.ctx.settings.source_location) as db:
                return db.read_table(source_table(need.table), columns)
        data = self._cached(need.layer, need.table, need.columns)
        if data is not None:
            return data
        if need.layer == "silver":
            spec = next(s for s in silver_tables() if s.name == need.table)
            empty = self.engine.query(empty_silver_sql(spec))
            return empty.select(columns) if columns else empty
        if need.layer == "bronze":
            return bronze_schema(source_table(need.table)).empty_table().select(columns or [])
        return pa.table({c: pa.array([], pa.string()) for c in columns or []})


def _status(check: Check) -> str:
    return "fail" if check.severity is Severity.FAIL else "warn"


def _schema_result(check: Check, actual: pa.Schema) -> Result:
    expected = check.expected_schema
    assert expected is not None
    problems = []
    for f in expected:
        if f.name not in actual.names:
            problems.append({"column": f.name, "problem": "missing"})
        elif not _same_type(actual.field(f.name).type, f.type):
            problems.append(
                {"column": f.name, "problem": f"type {actual.field(f.name).type} != {f.type}"}
            )
    if not problems:
        return Result(check, "pass")
    return Result(check, _status(check), len(problems), problems[:SAMPLE_ROWS])


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Delta reads strings back as large/view types; those count as the same type."""
    text = (pa.string(), pa.large_string(), pa.string_view())
    return a == b or (a in text and b in text)


def _row(result: Result) -> dict[str, Any]:
    c = result.check
    return {
        "layer": c.layer,
        "table_name": c.table,
        "check_name": c.full_name,
        "severity": c.severity.value,
        "status": result.status,
        "failing_rows": result.failing_rows,
        "sample": json.dumps(result.sample, default=str) if result.sample else None,
        "observed": result.observed,
        "details": result.details or None,
    }


# -- tasks -------------------------------------------------------------------------------------
def checks_by_table(settings: Settings) -> dict[tuple[str, str], list[Check]]:
    """The declared checks per (layer, table), with the thresholds from the settings."""
    grouped: dict[tuple[str, str], list[Check]] = {}
    overrides = settings.drift_thresholds
    for declared in declared_checks(settings.drift_threshold, settings.freshness_max_lag_s):
        where = f"{declared.layer}.{declared.table}"
        check = declared
        if declared.kind == "row_count_drift" and where in overrides:
            check = replace(declared, threshold=overrides[where])
        grouped.setdefault((check.layer, check.table), []).append(check)
    return grouped


def check_task(layer: str, table: str) -> Task:
    """The task that checks one table after its layer task; fails on a failed ``fail`` check."""
    return Task(
        f"{LAYER}.{layer}.{table}",
        LAYER,
        f"{layer}.{table}",
        lambda ctx: run_table_checks(ctx, layer, table),
        (f"{layer}.{table}",),
    )


def run_table_checks(ctx: RunContext, layer: str, table: str) -> TaskResult:
    grouped = checks_by_table(ctx.settings)
    with AuditStore(ctx.settings.audit_location) as audit:
        results = CheckRunner(ctx).run(grouped.get((layer, table), []), audit)
    failed = [r.check.name for r in results if r.status == "fail"]
    warned = [r.check.name for r in results if r.status == "warn"]
    metrics = {
        "passed": len(results) - len(failed) - len(warned),
        "warned": warned,
        "failed": failed,
    }
    if failed:
        raise CheckFailed(f"{layer}.{table}: check(s) failed: {', '.join(failed)}")
    return TaskResult(rows_read=len(results), metrics=metrics)


def with_checks(tasks: list[Task], settings: Settings) -> list[Task]:
    """Add a check task after every layer task whose table has checks; tasks downstream of
    that table then wait for (and are skipped by a failure of) its checks."""
    grouped = checks_by_table(settings)
    added = {t.name: check_task(t.layer, t.table) for t in tasks if (t.layer, t.table) in grouped}
    rewired = [
        replace(
            t,
            upstream=tuple(
                dict.fromkeys(
                    u2 for u in t.upstream for u2 in (u, added[u].name if u in added else u)
                )
            ),
        )
        for t in tasks
    ]
    return rewired + list(added.values())


def check_only_tasks(settings: Settings) -> list[Task]:
    """Every table's checks, with no layer task before them (``medallion check``)."""
    return [
        replace(check_task(layer, table), upstream=()) for layer, table in checks_by_table(settings)
    ]
