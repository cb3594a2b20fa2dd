"""Check tasks: one after each layer task that has checks, failing on a failed ``fail``
check so that what is downstream of that table is skipped."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from medallion.audit import AuditStore
from medallion.checks.declared import declared_checks, portable_keys
from medallion.checks.kinds import LAYER, Check, CheckStatus
from medallion.checks.runner import CheckRunner
from medallion.engine import engine_for
from medallion.errors import CheckFailed, ConfigError
from medallion.runner import RunContext, Task, TaskResult
from medallion.settings import Settings


# -- tasks -------------------------------------------------------------------------------------
def checks_by_table(settings: Settings) -> dict[tuple[str, str], list[Check]]:
    """The declared checks per (layer, table), with the thresholds from the settings."""
    grouped: dict[tuple[str, str], list[Check]] = {}
    overrides = settings.drift_thresholds
    declarations = declared_checks(
        settings.drift_threshold,
        settings.freshness_max_lag_s,
        portable_keys=portable_keys(settings),
    )
    for declared in declarations:
        where = f"{declared.layer}.{declared.table}"
        check = declared
        if declared.kind == "row_count_drift" and where in overrides:
            check = replace(declared, threshold=overrides[where])
        grouped.setdefault((check.layer, check.table), []).append(check)
    _refuse_unknown(overrides, grouped)
    return grouped


def _refuse_unknown(
    overrides: Mapping[str, float], grouped: Mapping[tuple[str, str], list[Check]]
) -> None:
    """A threshold for a table with no drift check would be silently ignored: refuse it."""
    drifting = sorted(
        f"{layer}.{table}"
        for (layer, table), checks in grouped.items()
        if any(c.kind == "row_count_drift" for c in checks)
    )
    unknown = sorted(set(overrides) - set(drifting))
    if unknown:
        raise ConfigError(
            f"drift_thresholds: no row-count drift check on {', '.join(unknown)}; "
            f"valid: {', '.join(drifting)}"
        )


def check_task(layer: str, table: str, also_after: Iterable[str] = ()) -> Task:
    """The task that checks one table after its layer task (and ``also_after``, the tasks
    writing other tables its checks read); fails on a failed ``fail`` check."""
    return Task(
        f"{LAYER}.{layer}.{table}",
        LAYER,
        f"{layer}.{table}",
        lambda ctx: run_table_checks(ctx, layer, table),
        tuple(dict.fromkeys((f"{layer}.{table}", *also_after))),
    )


def _read_by(checks: Iterable[Check]) -> set[str]:
    """The tables some check reads besides the one it checks, named as the tasks writing them."""
    return {f"{n.layer}.{n.table}" for c in checks for n in c.needs}


def run_table_checks(ctx: RunContext, layer: str, table: str) -> TaskResult:
    """Evaluate one table's checks; the task reports the rows of table data they read and
    how many were evaluated in full, incrementally, or stood unchanged."""
    grouped = checks_by_table(ctx.settings)
    with AuditStore(ctx.settings.audit_location) as audit:
        runner = CheckRunner(ctx, engine_for(ctx.settings))
        results = runner.run(grouped.get((layer, table), []), audit)
    failed = [r.check.name for r in results if r.status is CheckStatus.FAIL]
    warned = [r.check.name for r in results if r.status is CheckStatus.WARN]
    metrics = {
        "passed": len(results) - len(failed) - len(warned),
        "warned": warned,
        "failed": failed,
        "modes": runner.modes,
    }
    if failed:
        raise CheckFailed(f"{layer}.{table}: check(s) failed: {', '.join(failed)}")
    return TaskResult(rows_read=runner.inputs.rows_read, metrics=metrics)


def with_checks(tasks: list[Task], settings: Settings) -> list[Task]:
    """Add a check task after every layer task whose table has checks; tasks downstream of
    that table then wait for (and are skipped by a failure of) its checks."""
    grouped = checks_by_table(settings)
    names = {t.name for t in tasks}
    added = {
        t.name: check_task(t.layer, t.table, sorted(_read_by(grouped[t.layer, t.table]) & names))
        for t in tasks
        if (t.layer, t.table) in grouped
    }
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
