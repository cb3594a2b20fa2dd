"""The Exports section: what Gold was exported where (audit rows of job ``medallion_export``,
one per table and export), the latest state of every (destination, table)."""

from __future__ import annotations

from dataclasses import dataclass

from medallion.report.formats import fmt_time
from medallion.report.model import Section, Table, badge, table
from medallion.report.run import RunData, task_metrics
from medallion.report.style import Row

COLUMNS = ("destination", "table", "status", "rows", "bytes", "seconds", "Delta version", "when")


@dataclass(frozen=True)
class Exports:
    latest: Table | None  # None: nothing was ever exported
    destinations: int


def export_section(data: RunData) -> Section:
    latest: dict[tuple[str, str], Row] = {}
    for row in data.exports:  # oldest first: the last one per destination and table wins
        destination = str(task_metrics(row).get("destination") or "?")
        latest[destination, str(row["table_name"])] = row
    if not latest:
        return Section("exports", "Exports", Exports(None, 0))
    cells = []
    for (destination, name), row in sorted(latest.items()):
        metrics = task_metrics(row)
        status = row["status"] if row["status"] != "SUCCESS" else metrics.get("status", "SUCCESS")
        cells.append((destination, name, badge(str(status)), row["rows_written"],
                      metrics.get("bytes"), metrics.get("seconds"), row["delta_version"],
                      fmt_time(row["ended_at"] or row["started_at"])))  # fmt: skip
    destinations = len({d for d, _ in latest})
    return Section("exports", "Exports", Exports(table(COLUMNS, cells), destinations))
