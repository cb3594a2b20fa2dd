"""Looking at the lake and its logs: the audit log, quarantine, SQL, queries, the report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from medallion.audit import AuditStore
from medallion.catalog import source_table
from medallion.engine import default_engine, query_read_only
from medallion.settings import Settings
from medallion.silver.contracts import silver_table
from medallion.silver.layer import silver_table_names
from medallion.storage import DeltaHandle, Lake


def audit_log(
    settings: Settings, last: int | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Audit rows (one per task attempt), oldest first."""
    with AuditStore(settings.audit_location) as audit:
        return audit.run_logs(last=last, run_id=run_id)


def quarantine_summary(
    settings: Settings, tables: list[str] | None = None, *, kept: bool = False
) -> list[dict[str, Any]]:
    """Quarantined rows per table and rule, with one example reason; ``kept``: answered
    from the answer kept for the report while no quarantine table changed rows since."""
    lake = Lake.from_settings(settings)
    names = (
        [silver_table(source_table(t).name).name for t in tables]
        if tables
        else silver_table_names()
    )
    handles = {name: lake.table("quarantine", name) for name in names}
    if kept:
        compute = partial(_quarantined, handles)
        summary = _kept(settings, "_quarantine", handles, compute, _QUARANTINE_RECIPE)
    else:
        summary = _quarantined(handles)
    rows: list[dict[str, Any]] = summary.to_pylist()
    return rows


def _quarantined(handles: dict[str, DeltaHandle]) -> pa.Table:
    """Per table (in the order given), its rules by rows quarantined."""
    summaries = [_QUARANTINED.empty_table()]
    for name, held in handles.items():
        rows = held.read(["_rule", "_reason"]) if held.row_count() != 0 else None
        if rows is None or rows.num_rows == 0:
            continue
        summary = default_engine().query(
            "SELECT _rule AS rule, count(*) AS rows, min(_reason) AS reason FROM q "
            "GROUP BY _rule ORDER BY rows DESC, rule",
            {"q": rows},
        )
        table = pa.array([name] * summary.num_rows, pa.string())
        summaries.append(summary.add_column(0, "table", table).cast(_QUARANTINED))
    return pa.concat_tables(summaries)


_QUARANTINED = pa.schema(
    [("table", pa.string()), ("rule", pa.string()), ("rows", pa.int64()), ("reason", pa.string())]
)
_QUARANTINE_RECIPE = f"quarantine summary 1: {_QUARANTINED}"  # a new one makes kept ones stale


def stream_quarantine_summary(settings: Settings) -> list[dict[str, Any]]:
    """Quarantined review events per consume run and reason, and how many of them Silver has
    merged since (held for an order that arrived later)."""
    lake = Lake.from_settings(settings)
    columns = ["topic", "partition", "offset", "reason", "_quarantine_run_id"]
    held = lake.read("quarantine", "review_events", columns)
    if held is None or held.num_rows == 0:
        return []
    merged = lake.read("silver", "review_events", ["_topic", "_partition", "_offset"])
    if merged is None:
        merged = pa.table({"_topic": pa.array([], pa.string()),
                           "_partition": pa.array([], pa.int32()),
                           "_offset": pa.array([], pa.int64())})  # fmt: skip
    summary = default_engine().query(
        'SELECT q._quarantine_run_id AS run_id, q.reason, count(*) AS "rows", '
        "count(s._offset) AS released FROM q LEFT JOIN (SELECT DISTINCT * FROM s) s "
        'ON s._topic = q.topic AND s._partition = q."partition" AND s._offset = q."offset" '
        "GROUP BY ALL ORDER BY run_id, reason",
        {"q": held, "s": merged},
    )
    return list(summary.to_pylist())


def lake_tables() -> dict[str, str]:
    """Every table `medallion sql` can see: name -> layer (Gold and Silver)."""
    from medallion.gold.model import GOLD_TABLES

    tables = {t.name: "gold" for t in GOLD_TABLES}
    tables |= dict.fromkeys([*silver_table_names(), "review_events"], "silver")
    return tables


SQL_LIMITS = (
    "read-only: one SELECT at a time over the Gold and Silver tables; no files, no network, "
    "no DDL, DML, COPY, ATTACH, SET or extensions"
)


def sql(settings: Settings, query: str) -> pa.Table:
    """Run one read-only DuckDB SELECT over the Gold and Silver tables the query names."""
    return _answer(query, _named_tables(settings, query))


def _named_tables(settings: Settings, query: str) -> dict[str, DeltaHandle]:
    """The Gold and Silver tables ``query`` names, each opened once."""
    lake = Lake.from_settings(settings)
    return {
        name: lake.table(layer, name)
        for name, layer in lake_tables().items()
        if re.search(rf"\b{re.escape(name)}\b", query, re.IGNORECASE)
    }


def _answer(query: str, handles: dict[str, DeltaHandle]) -> pa.Table:
    tables = {}
    for name, handle in handles.items():
        data = handle.relation()  # lazy: the query reads only what it needs
        if data is not None:
            tables[name] = data
    return query_read_only(query, tables)


def query(settings: Settings, name: str) -> pa.Table:
    """Run one of the named business questions (``medallion query --list``)."""
    from medallion.gold.queries import named_query

    return sql(settings, named_query(name).sql)


def kept_query(settings: Settings, name: str) -> pa.Table:
    """:func:`query`, answered from the answer kept for the report when no table it reads
    changed rows since: a report after a run that changed nothing re-reads no Gold."""
    from medallion.gold.queries import named_query

    text = named_query(name).sql
    handles = _named_tables(settings, text)
    return _kept(settings, name, handles, lambda: _answer(text, handles), text)


def _kept(
    settings: Settings,
    name: str,
    handles: dict[str, DeltaHandle],
    answer: Callable[[], pa.Table],
    recipe: str,
) -> pa.Table:
    """``answer()``, kept in ``reports/.answers/<name>.arrow`` and read from there while the
    tables of ``handles`` are those it was computed from (same table ids and data versions)
    and ``recipe`` (what computes it) is the same. The stamp that says so is in the file's
    own metadata: an answer and its stamp are replaced together, in one rename."""
    tables = {n: [h.identity, h.data_version] for n, h in sorted(handles.items())}
    recipe_id = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    stamp = json.dumps({"recipe": recipe_id, "tables": tables}).encode()
    kept = settings.reports_dir / ".answers" / f"{name}.arrow"
    # none kept yet, or unreadable: computed again
    with suppress(OSError, pa.ArrowException), pa.memory_map(str(kept)) as source:
        reader = pa.ipc.open_file(source)
        if (reader.schema.metadata or {}).get(_STAMP) == stamp:
            return reader.read_all().replace_schema_metadata(None)
    computed = answer()
    kept.parent.mkdir(parents=True, exist_ok=True)
    staged = kept.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    stamped = computed.replace_schema_metadata({_STAMP: stamp})
    with pa.OSFile(str(staged), "wb") as sink, pa.ipc.new_file(sink, stamped.schema) as writer:
        writer.write_table(stamped)
    os.replace(staged, kept)
    return computed


_STAMP = b"medallion.kept_for"


def report(settings: Settings, run_id: str | None = None) -> Path:
    """Write the HTML report of a run (default: the latest) and ``latest.html``; its path."""
    from medallion.report import LakeViews, build_report

    views = LakeViews(
        lambda: quarantine_summary(settings, kept=True),
        lambda name: kept_query(settings, name),
        lambda: stream_quarantine_summary(settings),
    )
    return build_report(settings, views, run_id)
