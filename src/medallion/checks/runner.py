"""Evaluating checks: each table read once, violations sampled in Arrow, results recorded."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from medallion.audit import AuditStore
from medallion.catalog import TableRef, empty_bronze, source_table
from medallion.checks.kinds import (
    SAMPLE_ROWS,
    Check,
    CheckStatus,
    Need,
    Result,
    Severity,
)
from medallion.engine import Engine, default_engine
from medallion.errors import MedallionError
from medallion.gold.model import gold_table
from medallion.runner import RunContext
from medallion.silver.contracts import silver_tables
from medallion.silver.transform import empty_silver_sql
from medallion.source.db import open_source
from medallion.storage import Lake


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
            return Result(check, CheckStatus.PASS)
        sample = found.slice(0, SAMPLE_ROWS).to_pylist()
        return Result(check, _status(check), int(found.num_rows), sample)

    def _absent(self, check: Check) -> Result:
        """A table that was never written passes only when everything it is built from is
        empty too (an empty source); otherwise its absence fails."""
        rows = self._upstream_rows(check.layer, check.table)
        if rows == 0:
            return Result(
                check, CheckStatus.PASS, details="table not written yet (its inputs are empty)"
            )
        held = "cannot be read" if rows is None else f"hold {rows} rows"
        return Result(
            check,
            CheckStatus.FAIL,
            1,
            details=f"{check.layer}.{check.table} does not exist although its inputs {held}; "
            "run `medallion run` (or check --home)",
        )

    def _upstream_rows(self, layer: str, table: str) -> int | None:
        """Rows in the nearest existing tables this one is built from (None: unreadable)."""
        if layer == "bronze":
            try:
                with open_source(self.ctx.settings.source_location) as db:
                    return db.row_count(source_table(table))
            except MedallionError:
                return None
        if layer == "silver":
            inputs = [
                TableRef("bronze", next(s for s in silver_tables() if s.name == table).bronze)
            ]
        else:  # optional inputs (streamed reviews) may rightly be missing: not counted
            inputs = list(gold_table(table).inputs)
        total = 0
        for ref in inputs:
            up_layer, up_table = ref.layer, ref.name
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
            return _measured_result(check, broken, observed, details)
        previous = audit.last_observed(check.full_name, self.ctx.run_id)
        if previous is None:
            return Result(check, CheckStatus.PASS, observed=observed, details="first measurement")
        change = (observed - previous) / previous if previous else (1.0 if observed else 0.0)
        broken = abs(change) > limit
        details = f"{previous:.0f} -> {observed:.0f} rows ({change:+.1%}, limit ±{limit:.0%})"
        return _measured_result(check, broken, observed, details)

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
            return empty_bronze(need.table).select(columns or [])
        return pa.table({c: pa.array([], pa.string()) for c in columns or []})


def _measured_result(check: Check, broken: bool, observed: float, details: str) -> Result:
    status = _status(check) if broken else CheckStatus.PASS
    return Result(check, status, int(broken), [], observed, details)


def _status(check: Check) -> CheckStatus:
    return CheckStatus.FAIL if check.severity is Severity.FAIL else CheckStatus.WARN


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
        return Result(check, CheckStatus.PASS)
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
