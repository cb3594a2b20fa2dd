"""A lake of small hand-written Delta tables with an audit store, for testing checks: each
step runs the checks as a check task does (recording their state) and can evaluate them in
full on the side (recording nothing), to compare the two."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from medallion.audit import AuditStore
from medallion.checks import Check, CheckRunner, Result
from medallion.engine import default_engine
from medallion.runner import RunContext, new_run_id
from medallion.settings import Settings
from medallion.storage import CDF


@dataclass
class Step:
    """One run of the checks: each check's result and how the runner got it."""

    results: dict[str, Result]
    rows_read: int
    run_id: str

    def __getitem__(self, name: str) -> Result:
        return self.results[name]

    def mode(self, name: str) -> str:
        """full, incremental or unchanged, from the result's details."""
        details = self.results[name].details or ""
        return next((m for m in ("incremental", "unchanged") if details.startswith(m)), "full")


class CheckLake:
    def __init__(self, home: Path, *, full_every: int = 0, audit_url: str = "") -> None:
        self.settings = Settings(
            home=home, retries=0, check_full_every=full_every, audit_url=audit_url
        )

    def uri(self, layer: str, table: str) -> str:
        return f"{self.settings.lake_location}/{layer}/{table}"

    def write(
        self, layer: str, table: str, rows: pa.Table, mode: str = "append", *, cdf: bool = True
    ) -> None:
        write_deltalake(
            self.uri(layer, table),
            rows,
            mode=mode,  # type: ignore[arg-type]
            configuration=CDF if cdf else None,
            schema_mode="overwrite" if mode == "overwrite" else None,
        )

    def table(self, layer: str, table: str) -> DeltaTable:
        return DeltaTable(self.uri(layer, table))

    def run(self, checks: list[Check], *, full: bool = False) -> Step:
        """The checks as a check task runs them: on their recorded state, recording anew."""
        ctx = RunContext(new_run_id(), self.settings, job="test", full_checks=full)
        with AuditStore(self.settings.audit_location) as audit:
            runner = CheckRunner(ctx, default_engine())
            results = runner.run(checks, audit)
        return Step({r.check.full_name: r for r in results}, runner.inputs.rows_read, ctx.run_id)

    def full(self, checks: list[Check], run_id: str | None = None) -> Step:
        """Every check evaluated in full, nothing recorded; as run ``run_id`` (drift compares
        with the runs before it)."""
        ctx = RunContext(run_id or new_run_id(), self.settings, job="test", full_checks=True)
        with AuditStore(self.settings.audit_location) as audit:
            runner = CheckRunner(ctx)
            results = [runner.evaluate(c, audit) for c in checks]
        return Step({r.check.full_name: r for r in results}, runner.inputs.rows_read, ctx.run_id)

    def same_as_full(self, checks: list[Check], step: Step) -> None:
        """Each check's verdict in ``step`` is the full evaluation's."""
        full = self.full(checks, step.run_id)
        got = {name: verdict(r) for name, r in step.results.items()}
        assert got == {name: verdict(r) for name, r in full.results.items()}


def verdict(result: Result) -> tuple[str, int, float | None]:
    """What must not depend on how a check was evaluated."""
    return (result.status.value, result.failing_rows, result.observed)
