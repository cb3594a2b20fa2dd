"""A check's state between runs, as kept in ``audit.check_state``: the version of every table it
read, its last result and its maintained totals. Pure: encoding and comparing only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from medallion.checks.inputs import Version
from medallion.checks.kinds import Check, CheckStatus

# a total: a row count, a (money) sum, a newest time (None: the newest of no row)
Value = int | float | Decimal | datetime | None


class Mode(StrEnum):
    """How a check was evaluated."""

    FULL = "full"  # every row of every input
    INCREMENTAL = "incremental"  # what moved since the recorded versions
    UNCHANGED = "unchanged"  # nothing it reads moved: the recorded result stands


@dataclass(frozen=True)
class CheckState:
    """What a check saw last time: enough to stand on it or to build on it."""

    definition: str
    versions: dict[str, Version]
    tables: dict[str, str | None]
    status: CheckStatus
    failing_rows: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    observed: float | None = None
    totals: dict[str, Value] = field(default_factory=dict)
    runs_since_full: int = 0
    passed_at: datetime | None = None
    full_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CheckState:
        return cls(
            definition=row["definition"],
            versions=json.loads(row["versions"]),
            tables=json.loads(row["tables"]),
            status=CheckStatus(row["status"]),
            failing_rows=int(row["failing_rows"] or 0),
            sample=json.loads(row["sample"]) if row["sample"] else [],
            observed=row["observed"],
            totals=decode_totals(row["totals"]),
            runs_since_full=int(row["runs_since_full"] or 0),
            passed_at=row["passed_at"],
            full_at=row["full_at"],
        )

    def moved(self, versions: Mapping[str, Version]) -> dict[str, Version]:
        """The inputs whose version is not the recorded one, with the recorded version."""
        return {k: self.versions.get(k) for k, v in versions.items() if self.versions.get(k) != v}


def definition(check: Check) -> str:
    """A digest of what a check computes (not its severity or threshold, which judge the
    result): a state recorded under another definition is not built on."""
    parts = (
        check.kind,
        check.sql,
        check.measure,
        check.needs,
        check.totals,
        *((check.agree,) if check.agree else ()),  # (states of checks without it stand)
        check.locality,
        check.columns,
        str(check.expected_schema),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def encode_totals(totals: Mapping[str, Value]) -> str:
    """JSON, a Decimal as its exact text, a time as ``{"time": ISO text}``."""
    return json.dumps({k: _encoded(v) for k, v in totals.items()})


def _encoded(value: Value) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return {"time": value.isoformat()} if isinstance(value, datetime) else value


def decode_totals(text: str | None) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for k, v in json.loads(text or "{}").items():
        if isinstance(v, dict):
            values[k] = datetime.fromisoformat(v["time"])
        elif v is not None:
            values[k] = Decimal(v) if isinstance(v, str) else v
    return values


def describe_versions(versions: Mapping[str, Version]) -> str:
    """``silver.orders v5, quarantine.orders (not written), source.orders``: where an
    evaluation stood (a source table has a fingerprint, not a version)."""
    return ", ".join(
        f"{name} v{v}" if isinstance(v, int) else name if v else f"{name} (not written)"
        for name, v in versions.items()
    )
