"""The built-in kinds of check (unique, not null, rule, relationship, drift, freshness,
schema contract, reconciliation) as functions that return a :class:`Check`: a query that
returns violating rows, or a measure, plus a severity."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib.metadata import version
from typing import Any, Literal, TypeAlias

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
class Rows:
    """The rows of input ``alias`` a reconciliation compares: those matching ``where``, or,
    when they are not a filter of single rows, ``query`` (a history's live rows, which is
    local to ``keys``: the live row of a key depends on that key's rows only). ``columns``:
    the columns ``where``/``query`` read besides the keys."""

    alias: str
    where: str = "TRUE"
    query: str = ""
    keys: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    @property
    def sql(self) -> str:
        return self.query or f"SELECT * FROM {self.alias} WHERE {self.where}"

    @property
    def row_local(self) -> bool:
        return not self.query


@dataclass(frozen=True)
class Total:
    """One number over the rows of one input (``expr``, an aggregate that adds up: a count or
    a sum), a column ``name`` of the one-row table ``totals`` a check's query reads. Over rows
    that are a filter of single rows it is kept up to date from what a commit added and
    removed (old + added - removed) instead of being summed again."""

    name: str
    rows: Rows
    expr: str
    adds_up: bool = True  # False: the newest value (``max``), which a removed row may lower

    @property
    def sql(self) -> str:
        return f"SELECT {self.expr} AS {self.name} FROM ({self.rows.sql})"

    @property
    def additive(self) -> bool:
        return self.rows.row_local and self.adds_up

    @property
    def counts_every_row(self) -> bool:
        """The input's row count: the Delta log's file statistics hold it."""
        return self.expr == COUNT and self.rows.row_local and self.rows.where == "TRUE"

    @property
    def key_local(self) -> bool:
        """Over rows that depend on their key's rows only (a history's live rows): kept up
        to date from the rows of the keys a commit touched, before and after it."""
        return bool(self.rows.keys) and not self.rows.row_local and self.adds_up

    @property
    def newest_update(self) -> bool:
        """The newest ``updated_at`` of every row: one aggregate query in a source."""
        return self.expr == NEWEST_UPDATE and self.rows.row_local and self.rows.where == "TRUE"

    @property
    def key(self) -> str:
        """What the total computes, as a short name (the same total in every check)."""
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def totals_sql(totals: Sequence[Total]) -> str:
    """Totals over the same rows in one query, a column each (:attr:`Total.sql` for one)."""
    values = ", ".join(f"{t.expr} AS {t.name}" for t in totals)
    return f"SELECT {values} FROM ({totals[0].rows.sql})"


COUNT = "count(*)"
NEWEST_UPDATE = "max(updated_at)"  # a source answers it from its index, no row shipped


def key_print(
    rows: Rows, keys: Sequence[str], side: str, *, portable: bool = True
) -> tuple[Total, Total]:
    """The fingerprint of the key set of ``rows`` as two totals: how many rows, and the sum
    of a hash of each row's key (:func:`key_hash`; equal fingerprints: equal key multisets,
    but for a chance of about 2^-60). Both sides hold the key columns in the catalog's
    types."""
    return (
        Total(f"{side}_keys", rows, COUNT),
        Total(
            f"{side}_hash",
            rows,
            f"coalesce(sum(CAST({key_hash(keys, portable=portable)} AS HUGEINT)), 0)",
        ),
    )


def key_hash(keys: Sequence[str], *, portable: bool = True) -> str:
    """SQL for a hash of a row's key.

    ``portable``: a 60-bit hash that DuckDB and Spark compute alike, so that each side of a
    fingerprint is summed where its rows are (Bronze's source rows in this process, a lake
    table on the engine): the first 15 hex digits of the md5 of the key's text, each column
    written as its length, ``:`` and its text (``-`` for NULL), which no two keys share. A
    key column is text or an integer (the catalog's row keys), whose text both engines write
    alike. The Spark spelling of the hex cast is ``conv``
    (:func:`medallion.spark_engine.to_spark_sql`).

    Else DuckDB's own 64-bit hash of the columns' text (an INTEGER and a BIGINT key hash
    alike), for when DuckDB computes both sides: a tenth of the md5's cost (0.02 against
    0.33 microseconds a key), which Bronze pays on every source key it reads. DuckDB keeps
    it only within a version, so the version is part of the text: a fingerprint kept under
    another one is not built on (the check's definition differs) and Bronze's totals of the
    source are not taken for it.
    """
    if not portable:
        texts = ", ".join(f"CAST({k} AS VARCHAR)" for k in keys)
        return f"hash({texts}) /* duckdb {_duckdb_version()} */"
    parts = " || ".join(
        f"coalesce(CAST(length(CAST({k} AS VARCHAR)) AS VARCHAR) || ':' || CAST({k} AS VARCHAR)"
        ", '-')"
        for k in keys
    )
    return f"CAST('0x' || substr(md5({parts}), 1, 15) AS BIGINT)"


@cache
def _duckdb_version() -> str:
    return version("duckdb")


@dataclass(frozen=True)
class Keyed:
    """Violations local to a key: those of one key value depend only on the rows of every
    input that hold that value, so a change is checked on the keys it touched. ``columns``:
    each input's key columns (alias -> columns, as many for each)."""

    columns: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Refers:
    """Violations are rows of ``t`` whose ``columns`` match no row of input ``parent`` on
    ``parent_columns``: a row is judged alone against its parent key, and only a parent key
    that disappears can break rows that were fine."""

    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


ROW: Literal["row"] = "row"  # a violation is one row of ``t`` judged alone
Locality: TypeAlias = Literal["row"] | Keyed | Refers | None


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
    # with totals, ``sql``/``measure`` read the one-row table ``totals`` instead of the inputs
    totals: tuple[Total, ...] = ()
    # how far a change reaches: what an incremental evaluation may narrow the inputs to
    locality: Locality = None
    columns: tuple[str, ...] | None = None  # the columns of ``t`` read (None: all)
    # pairs of totals that are equal exactly when the check passes (key fingerprints): kept
    # up to date, they confirm a pass without reading rows; a pair that differs is judged
    # in full, which names the rows
    agree: tuple[tuple[Total, Total], ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.layer}.{self.table}.{self.name}"

    @property
    def inputs(self) -> dict[str, tuple[str, str]]:
        """alias -> (layer, table) of every table the check reads, ``t`` first."""
        return {"t": (self.layer, self.table), **{n.alias: (n.layer, n.table) for n in self.needs}}


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


def live_rows(alias: str) -> Rows:
    """The rows of a Silver table (or a Gold table kept like one) that are not deleted."""
    return Rows(alias, LIVE, columns=("is_deleted",))


LIVE_ROWS = live_rows("t")
ALL_ROWS = Rows("t")


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
        locality=Keyed((("t", tuple(cols)),)),
        columns=tuple(cols) if where == "TRUE" else None,
    )


def not_null(layer: str, table: str, col: str, severity: Severity = Severity.FAIL) -> Check:
    return Check(
        f"{col}_not_null",
        layer,
        table,
        "not_null",
        severity,
        f"SELECT * FROM t WHERE {col} IS NULL",
        locality=ROW,
    )


def rule_check(
    layer: str,
    table: str,
    name: str,
    violation: str,
    *,
    severity: Severity,
    parent: Need | None = None,
    columns: tuple[str, ...] = (),
) -> Check:
    """A Silver contract rule re-checked on the live Silver rows; a reference rule looks up
    ``columns`` in ``parent`` (its key: the need's columns)."""
    locality: Locality = ROW
    if parent is not None:
        assert parent.columns is not None
        locality = Refers(columns, parent.alias, parent.columns)
    return Check(
        name,
        layer,
        table,
        "rule",
        severity,
        f"SELECT * FROM t c WHERE {LIVE} AND coalesce(({violation}), false)",
        needs=(parent,) if parent else (),
        locality=locality,
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
        locality=Refers((col,), parent.alias, (parent_col,)),
    )


def row_count_drift(layer: str, table: str, threshold: float, rows: Rows = ALL_ROWS) -> Check:
    """Warns when the number of ``rows`` changed by more than ``threshold`` since the last
    run."""
    return Check(
        "row_count_drift",
        layer,
        table,
        "row_count_drift",
        Severity.WARN,
        measure="SELECT observed FROM totals",
        threshold=threshold,
        totals=(Total("observed", rows, COUNT),),
        columns=rows.columns,
    )


def freshness(layer: str, table: str, source: SourceTable, max_lag_s: float) -> Check:
    """How far the layer's newest ``updated_at`` trails the source's (seconds)."""
    need = Need("src", "source", source.name, ("updated_at",))
    newest = NEWEST_UPDATE
    return Check(
        "freshness",
        layer,
        table,
        "freshness",
        Severity.WARN,
        measure="SELECT coalesce(epoch(upstream) - epoch(here), 0) AS observed FROM totals",
        threshold=max_lag_s,
        needs=(need,),
        totals=(
            Total("here", ALL_ROWS, newest, adds_up=False),
            Total("upstream", Rows("src"), newest, adds_up=False),
        ),
        columns=("updated_at",),
    )


def schema_contract(layer: str, table: str, expected: pa.Schema) -> Check:
    return Check("schema_contract", layer, table, "schema", Severity.FAIL, expected_schema=expected)


def reconcile_keys(
    layer: str,
    table: str,
    keys: Sequence[str],
    *,
    upstream: Need,
    upstream_rows: Rows,
    here_rows: Rows = LIVE_ROWS,
    excused: Need | None = None,
    fingerprinted: bool = False,
    portable: bool = True,
) -> Check:
    """Every live upstream key is live here (unless excused, e.g. quarantined), and every
    live key here is live upstream. ``*_rows`` are the live rows of each side. When
    ``fingerprinted``, the key fingerprints of both sides are kept (:attr:`Check.agree`): for
    an upstream that keeps no change feed (the source), read whole otherwise; ``portable``:
    hashed alike on every engine (:func:`key_hash`)."""
    match = " AND ".join(f"a.{k} = b.{k}" for k in keys)
    cols = ", ".join(f"a.{k}" for k in keys)
    excuse = ""
    if excused is not None:
        on = " AND ".join(f"a.{k} = q.{k}" for k in keys)
        excuse = f" AND NOT EXISTS (SELECT 1 FROM {excused.alias} q WHERE {on})"
    keyed = all(r.row_local or r.keys == tuple(keys) for r in (here_rows, upstream_rows))
    aliases = ("t", upstream.alias, *((excused.alias,) if excused else ()))
    agree: tuple[tuple[Total, Total], ...] = ()
    if fingerprinted and excused is None:
        here = key_print(here_rows, keys, "here", portable=portable)
        up = key_print(upstream_rows, keys, "upstream", portable=portable)
        agree = tuple(zip(here, up, strict=True))
    return Check(
        f"reconcile_with_{upstream.layer}",
        layer,
        table,
        "reconciliation",
        Severity.FAIL,
        f"""
        WITH up AS ({upstream_rows.sql}), here AS ({here_rows.sql})
        SELECT {cols}, 'missing here' AS problem FROM up a
        WHERE NOT EXISTS (SELECT 1 FROM here b WHERE {match}){excuse}
        UNION ALL
        SELECT {cols}, 'not live upstream' AS problem FROM here a
        WHERE NOT EXISTS (SELECT 1 FROM up b WHERE {match})
        """,
        needs=(upstream, *((excused,) if excused else ())),
        locality=Keyed(tuple((a, tuple(keys)) for a in aliases)) if keyed else None,
        columns=(*keys, *here_rows.columns),
        agree=agree,
    )


def reconcile_sum(
    layer: str,
    table: str,
    col: str,
    *,
    upstream: Need,
    upstream_rows: Rows,
    here_rows: Rows = LIVE_ROWS,
) -> Check:
    total = f"coalesce(sum({col}), 0)"
    return Check(
        f"{col}_sum_matches_{upstream.layer}",
        layer,
        table,
        "reconciliation",
        Severity.FAIL,
        "SELECT here, upstream, here - upstream AS difference FROM totals WHERE here <> upstream",
        needs=(upstream,),
        totals=(Total("here", here_rows, total), Total("upstream", upstream_rows, total)),
        columns=(col, *here_rows.keys, *here_rows.columns),
    )


def bronze_live(alias: str, keys: Sequence[str]) -> Rows:
    """The live rows of a Bronze history: the latest row per key, when it is an upsert."""
    part = ", ".join(keys)
    return Rows(
        alias,
        query=f"SELECT * FROM {alias} QUALIFY row_number() OVER (PARTITION BY {part} "
        "ORDER BY _source_updated_at DESC, _ingested_at DESC, _op ASC) = 1 AND _op = 'upsert'",
        keys=tuple(keys),
        columns=BRONZE_ORDER,
    )


BRONZE_ORDER = ("_source_updated_at", "_ingested_at", "_op")
SOURCE_LIVE = Rows("src", "deleted_at IS NULL", columns=("deleted_at",))
