"""Data-quality checks, declared as data and attached to tables of every layer.

A check is a query that returns violating rows, plus a severity (``warn`` or ``fail``); drift
and freshness checks measure one number instead. Results go to ``audit.dq_results`` with the
number of failing rows and a sample of them. A ``fail`` check that fails makes its check task
fail, so the tasks downstream of that table are skipped and the run ends non-zero.
"""

from __future__ import annotations

from medallion.checks.declared import declared_checks
from medallion.checks.kinds import Check, CheckStatus, Need, Result, Severity
from medallion.checks.runner import CheckRunner
from medallion.checks.tasks import check_only_tasks, checks_by_table, with_checks

__all__ = [
    "Check",
    "CheckRunner",
    "CheckStatus",
    "Need",
    "Result",
    "Severity",
    "check_only_tasks",
    "checks_by_table",
    "declared_checks",
    "with_checks",
]
