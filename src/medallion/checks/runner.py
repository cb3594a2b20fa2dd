"""Evaluating checks, and recording each result with the check's new state.

A check is evaluated one of three ways (:class:`~medallion.checks.state.Mode`):

- **unchanged**: no table it reads moved since its recorded state; the recorded result stands
  and nothing is read (a measure is judged again on its recorded value);
- **incremental**: on what moved, as far as the check's kind allows (its ``locality`` and
  ``totals``): a row judged alone is judged on the rows added (and its failing count kept from
  the rows removed); a key-local check reads only the keys a change touched; a reference check
  reads the rows added and those whose parent key disappeared; a count or a sum is the
  recorded one plus what was added minus what was removed, and a table's row count comes from
  the Delta log's file statistics; a total over a history's live rows moves by the rows of the
  keys a change touched; a total over a source table is the one this run's Bronze task computed
  from the rows it read; a reconciliation with the source (``agree``) passes when the kept key
  fingerprints of both sides agree;
- **full**: every row of every input, the declared query as it stands (a reconciliation whose
  key fingerprints are kept passes when those of both sides, summed over every row, agree: the
  query runs when they differ, and names the keys). On the first run, when the state is
  missing or was recorded for another definition, with ``--full`` (``--full-refresh``),
  instead of every ``check_full_every``-th incremental evaluation (a check standing unchanged
  is not one: it reads nothing and its state holds, so a run with no change never pays for a
  full pass), and whenever an incremental form cannot be exact: a table whose log cannot say
  what changed (an overwrite, a missing change data feed), a source table no Bronze task of
  this run read (no change feed), fingerprints that differ (the full evaluation names the
  keys), or a key-local check that did not pass last time.

Lake tables reach the engine as lazy scans and every query returns a small answer: a count and
a sample of the violations (:func:`sampled_sql`), a total. Totals over source rows are summed
in this process, where only they can be read (on a Spark engine, shipping them would cost
their size); the key hash is one both sides compute alike (:func:`~.kinds.key_hash`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medallion.audit import AuditStore
from medallion.checks.declared import SOURCE_TOTALS, SOURCE_VERSION
from medallion.checks.inputs import SOURCE, CheckInputs, Version, input_name
from medallion.checks.kinds import (
    ROW,
    SAMPLE_ROWS,
    Check,
    CheckStatus,
    Keyed,
    Refers,
    Result,
    Rows,
    Severity,
    Total,
    totals_sql,
)
from medallion.checks.state import (
    CheckState,
    Mode,
    Value,
    decode_totals,
    definition,
    describe_versions,
    encode_totals,
)
from medallion.engine import Engine, Relation, default_engine
from medallion.runner import RunContext
from medallion.storage import Changes

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """A result, how it was reached, and the totals it rests on."""

    result: Result
    mode: Mode
    totals: dict[str, Value]


# -- running -------------------------------------------------------------------------------
class CheckRunner:
    """Reads what a table's checks need, evaluates them, and records the results."""

    def __init__(self, ctx: RunContext, engine: Engine | None = None) -> None:
        self.ctx = ctx
        self.engine = engine or default_engine()
        # totals over the source's rows, summed where they were read: one connection
        self.duck: Engine = default_engine()
        self.inputs = CheckInputs(ctx.settings, self.engine)
        self.full = ctx.full_checks or ctx.full_refresh
        self.modes: dict[str, int] = {}  # evaluations per mode, for the task's metrics
        self._nets: dict[int, tuple[Changes, pa.Table]] = {}
        self._seen: dict[str, tuple[dict[str, Value], str | None]] = {}  # what Bronze saw
        self._touched: dict[tuple[str, str], tuple[pa.Table, pa.Table] | None] = {}

    def run(self, checks: Iterable[Check], audit: AuditStore) -> list[Result]:
        """Evaluate ``checks`` and record their results and states (in one transaction, at
        the end, also when a check raised: what was evaluated is kept)."""
        return self._run(list(checks), audit)

    def _run(self, checks: list[Check], audit: AuditStore) -> list[Result]:
        rows = audit.check_states(c.full_name for c in checks)
        done: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        results = []
        try:
            for check in checks:
                row = rows.get(check.full_name)
                state = CheckState.from_row(row) if row else None
                versions = self._versions(check, audit)
                tables = self.inputs.identities(check)
                if state is not None and state.tables != tables:
                    state = None  # a table was created anew: nothing to build on
                evaluation = self.evaluate_since(check, state, versions, audit)
                mode = evaluation.mode.value
                self.modes[mode] = self.modes.get(mode, 0) + 1
                new_state = _state(check, evaluation, versions, tables, state)
                done.append((_row(evaluation.result), new_state))
                results.append(evaluation.result)
        finally:
            audit.record_checks(self.ctx.run_id, done)
        return results

    def _versions(self, check: Check, audit: AuditStore) -> dict[str, Version]:
        """Each input's version (:meth:`CheckInputs.versions`); that of a source table this
        run's Bronze task read, as Bronze counted it from the rows it read (no query)."""
        versions: dict[str, Version] = {}
        for layer, table in check.inputs.values():
            seen = self._seen_by_bronze(table, audit)[1] if layer == SOURCE else None
            versions[input_name(layer, table)] = seen or self.inputs.version(layer, table)
        return versions

    def evaluate_since(
        self,
        check: Check,
        state: CheckState | None,
        versions: Mapping[str, Version],
        audit: AuditStore,
    ) -> Evaluation:
        """Evaluate ``check`` on what moved since ``state`` (see the module's docstring)."""
        if not self._must_be_full(check, state, versions) and state is not None:
            moved = state.moved(versions)
            if not moved:
                result = self._unchanged(check, state, audit)
                return Evaluation(result, Mode.UNCHANGED, state.totals)
            done = self._incremental(check, state, moved, audit)
            if done is not None:
                return done
        result, totals = self._full(check, audit)
        return Evaluation(result, Mode.FULL, totals)

    def evaluate(self, check: Check, audit: AuditStore) -> Result:
        """The full evaluation of ``check``."""
        return self._full(check, audit)[0]

    def _must_be_full(
        self, check: Check, state: CheckState | None, versions: Mapping[str, Version]
    ) -> bool:
        every = self.ctx.settings.check_full_every
        return (
            self.full
            or state is None
            or state.definition != definition(check)
            or versions[input_name(check.layer, check.table)] is None  # not written (yet)
            # the N-th evaluation on what moved since the last full one; standing unchanged
            # reads nothing and carries the state as it was, so it is never one of them
            or (every > 0 and state.runs_since_full + 1 >= every and bool(state.moved(versions)))
        )

    # -- full ------------------------------------------------------------------------------
    def _full(self, check: Check, audit: AuditStore) -> tuple[Result, dict[str, Value]]:
        if check.expected_schema is not None:
            schema = self.inputs.handle(check.layer, check.table).schema
            return (self._absent(check) if schema is None else _schema_result(check, schema)), {}
        target = self.inputs.relation(check.layer, check.table, check.columns)
        if target is None:
            return self._absent(check), {}
        if check.totals:
            totals = self._totals(check, check.totals, audit)
            return self._from_totals(check, totals, audit), totals
        if check.agree:
            return self._full_agreeing(check, target, audit)
        tables = self._tables(check, target)
        if check.measure:
            observed = self.engine.query(check.measure, tables)["observed"][0].as_py()
            return self._judged(check, float(observed or 0), audit), {}
        return self._found(check, tables), {}

    def _full_agreeing(
        self, check: Check, target: Relation, audit: AuditStore
    ) -> tuple[Result, dict[str, Value]]:
        """A check with key fingerprints: a pass when both sides' agree, summed over every
        row (no row compared, none shipped); else the query, which names the keys."""
        totals = self._totals(check, _agree(check), audit)
        if _fingerprints_agree(check, totals):
            return Result(check, CheckStatus.PASS, details="the key fingerprints agree"), totals
        return self._found(check, self._tables(check, target)), totals

    def _tables(self, check: Check, target: Relation) -> dict[str, Relation]:
        """Every input of ``check`` whole, by alias."""
        return {"t": target, **{n.alias: self.inputs.need(n) for n in check.needs}}

    def _total(self, check: Check, total: Total) -> Value:
        return self._totals(check, [total])[total.name]

    def _totals(
        self, check: Check, totals: Iterable[Total], audit: AuditStore | None = None
    ) -> dict[str, Value]:
        """``totals`` over every row of their inputs, those over the same rows in one query:
        a lake table's on the engine, the source's here (where its rows were read), or, with
        ``audit``, as this run's Bronze task computed it from the source rows it read (a
        first run's check of a million-row table read them all again: 1-2.6 s each)."""
        values = self._seen_totals(check, totals, audit) if audit is not None else {}
        by_rows: dict[Rows, list[Total]] = {}
        for total in totals:
            if total.name not in values:
                by_rows.setdefault(total.rows, []).append(total)
        for rows, group in by_rows.items():
            if rows.alias == "t":
                data = self.inputs.relation(check.layer, check.table, check.columns)
                assert data is not None
            else:
                data = self.inputs.need(next(n for n in check.needs if n.alias == rows.alias))
            engine = self.duck if check.inputs[rows.alias][0] == SOURCE else self.engine
            values |= _sums(group, data, engine)
        return values

    def _sum(self, total: Total, rows: Relation) -> Value:
        return _sum(total, rows, self.engine)

    def _found(self, check: Check, tables: Mapping[str, Relation]) -> Result:
        """The check's violations over ``tables``: how many, and a sample."""
        found = self.engine.query(sampled_sql(check.sql), tables)
        if found.num_rows == 0:
            return Result(check, CheckStatus.PASS)
        failing = int(found[FOUND][0].as_py())
        sample = found.drop_columns([FOUND, NTH]).to_pylist()
        return Result(check, _status(check), failing, sample)

    def _from_totals(self, check: Check, totals: Mapping[str, Value], audit: AuditStore) -> Result:
        """The check's query (or measure) over the one-row table of its totals."""
        table = pa.table({name: [value] for name, value in totals.items()})
        if check.measure:
            observed = self.engine.query(check.measure, {"totals": table})["observed"][0].as_py()
            return self._judged(check, float(observed or 0), audit)
        return self._found(check, {"totals": table})

    def _absent(self, check: Check) -> Result:
        """A table that was never written passes only when everything it is built from is
        empty too (an empty source); otherwise its absence fails."""
        rows = self.inputs.upstream_rows(check.layer, check.table)
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

    def _judged(self, check: Check, observed: float, audit: AuditStore) -> Result:
        """A measure against its threshold (freshness) or the last run's value (drift)."""
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

    # -- unchanged -------------------------------------------------------------------------
    def _unchanged(self, check: Check, state: CheckState, audit: AuditStore) -> Result:
        """Nothing the check reads moved: the same rows give the same result."""
        note = f"unchanged since {describe_versions(state.versions)}"
        if check.measure:
            result = self._judged(check, state.observed or 0.0, audit)
            result.details = f"{note}; {result.details}"
            return result
        status = _status(check) if state.failing_rows else CheckStatus.PASS
        return Result(check, status, state.failing_rows, state.sample, details=note)

    # -- incremental -----------------------------------------------------------------------
    def _incremental(
        self, check: Check, state: CheckState, moved: Mapping[str, Version], audit: AuditStore
    ) -> Evaluation | None:
        """The check on what moved; None when no incremental form is exact here."""
        if check.expected_schema is not None:
            return None  # reads the log only: as cheap in full
        note = f"incremental since {describe_versions(moved)}"
        if check.totals:
            since = [self._total_since(check, t, state, moved, audit) for t in check.totals]
            totals = {t.name: value for t, (value, _) in zip(check.totals, since, strict=True)}
            result = self._from_totals(check, totals, audit)
            if all(again for _, again in since):  # every total summed over all its rows
                return Evaluation(result, Mode.FULL, totals)
            result.details = f"{note}; {result.details}" if result.details else note
            return Evaluation(result, Mode.INCREMENTAL, totals)
        if check.agree:
            return self._agreeing(check, state, moved, audit, note)
        feeds = self._feeds(check, moved)
        found = None if feeds is None else self._violations_since(check, state, feeds)
        if feeds is None or found is None:
            return None
        changed = sum(f.num_rows for f in feeds.values())
        found.details = f"{note} ({changed} changed rows)"
        return Evaluation(found, Mode.INCREMENTAL, {})

    def _agreeing(
        self,
        check: Check,
        state: CheckState,
        moved: Mapping[str, Version],
        audit: AuditStore,
        note: str,
    ) -> Evaluation | None:
        """A pass confirmed by the key fingerprints of both sides, kept up to date; None when
        they differ (the full evaluation names the keys)."""
        since = {t.name: self._total_since(check, t, state, moved, audit) for t in _agree(check)}
        totals = {name: value for name, (value, _) in since.items()}
        if not _fingerprints_agree(check, totals):
            return None
        mode = Mode.FULL if all(again for _, again in since.values()) else Mode.INCREMENTAL
        result = Result(check, CheckStatus.PASS, details=f"{note}; the key fingerprints agree")
        return Evaluation(result, mode, totals)

    def _violations_since(
        self, check: Check, state: CheckState, feeds: Mapping[str, Changes]
    ) -> Result | None:
        """The violations now, from what each moved input gained and lost, as the check's
        locality allows (None: it does not)."""
        if check.locality == ROW and "t" in feeds:
            return self._rows_since(check, state, feeds["t"])
        if state.status is not CheckStatus.PASS:
            return None  # the keys that failed are not known: all of them are read again
        if any(n.layer == SOURCE for n in check.needs):
            return None  # the source is read whole or not at all
        if isinstance(check.locality, Keyed):
            return self._keys_since(check, check.locality, feeds)
        if isinstance(check.locality, Refers):
            return self._references_since(check, check.locality, feeds)
        return None

    def _feeds(self, check: Check, moved: Mapping[str, Version]) -> dict[str, Changes] | None:
        """alias -> what that input gained and lost since its recorded version, for every
        input that moved; None when one of them cannot say (the source keeps no feed)."""
        feeds = {}
        for alias, (layer, table) in check.inputs.items():
            name = input_name(layer, table)
            if name not in moved:
                continue
            before = moved[name]
            if layer == SOURCE or (before is not None and not isinstance(before, int)):
                return None
            feed = self.inputs.feed(layer, table, before)
            if feed is None:
                return None
            feeds[alias] = feed
        return feeds

    def _total_since(
        self,
        check: Check,
        total: Total,
        state: CheckState,
        moved: Mapping[str, Version],
        audit: AuditStore,
    ) -> tuple[Value, bool]:
        """The total: the recorded one when its input did not move; over the source, the one
        this run's Bronze task computed from the rows it read; else the recorded one plus what
        was added minus what was removed (a row count: from the log's file statistics; over a
        history's live rows: from the rows of the keys a change touched), else summed again
        over its input (then True)."""
        layer, table = check.inputs[total.rows.alias]
        name = input_name(layer, table)
        recorded = state.totals.get(total.name)
        if recorded is not None and name not in moved:
            return recorded, False
        if layer == SOURCE:
            return self._source_total(check, total, table, audit)
        if total.counts_every_row:
            count = self.inputs.row_count(layer, table)
            if count is not None:
                return count, False
        before = moved.get(name)
        feed = None
        if recorded is not None and (total.additive or total.key_local):
            feed = self.inputs.feed(layer, table, before if isinstance(before, int) else None)
        if feed is not None and total.additive:
            added, removed = self._sum(total, feed.added), self._sum(total, feed.removed)
            return recorded + added - removed, False  # type: ignore[operator, return-value]
        if feed is not None:
            change = self._key_local_change(check, total, feed)
            if change is not None:
                return recorded + change, False  # type: ignore[operator]
        return self._total(check, total), True

    def _source_total(
        self, check: Check, total: Total, table: str, audit: AuditStore
    ) -> tuple[Value, bool]:
        """A total over a source table: the one this run's Bronze task computed from the rows
        it read (then False), else summed over the source read whole (then True)."""
        seen = self._seen_totals(check, [total], audit)
        if total.name in seen:
            return seen[total.name], False
        return self._total(check, total), True

    def _seen_totals(
        self, check: Check, totals: Iterable[Total], audit: AuditStore
    ) -> dict[str, Value]:
        """Of ``totals``, those over a source table that this run's Bronze task computed
        from the source rows it read, by name."""
        found: dict[str, Value] = {}
        for total in totals:
            layer, table = check.inputs[total.rows.alias]
            if layer == SOURCE:
                seen = self._seen_by_bronze(table, audit)[0]
                if total.key in seen:
                    found[total.name] = seen[total.key]
        return found

    def _seen_by_bronze(self, table: str, audit: AuditStore) -> tuple[dict[str, Value], str | None]:
        """The checks' totals over source table ``table`` (by :attr:`Total.key`) and its
        version, as this run's Bronze task computed them from the source rows it read (none,
        None: not recorded)."""
        if table not in self._seen:
            metrics = audit.task_metrics(self.ctx.run_id, f"bronze.{table}") or {}
            totals = decode_totals(metrics.get(SOURCE_TOTALS))
            self._seen[table] = (totals, metrics.get(SOURCE_VERSION))
        return self._seen[table]

    def _key_local_change(self, check: Check, total: Total, feed: Changes) -> Value | None:
        """How much a key-local total moved: the total over the rows now held by the keys
        the change touched, less the total over those keys' rows before it (now, less what
        was added, plus what was removed). None when a touched key is NULL."""
        alias, first = total.rows.alias, total.rows.keys[0]
        seen = (check.full_name, alias)  # the totals of one check share the rows read
        if seen not in self._touched:
            self._touched[seen] = self._touched_rows(check, alias, first, feed)
        rows = self._touched[seen]
        if rows is None:
            return None
        now, before = rows
        return self._sum(total, now) - self._sum(total, before)  # type: ignore[operator, return-value]

    def _touched_rows(
        self, check: Check, alias: str, column: str, feed: Changes
    ) -> tuple[pa.Table, pa.Table] | None:
        """The rows of input ``alias`` whose ``column`` a change touched, after and before."""
        touched = pa.concat_arrays(
            [part[column].combine_chunks() for part in (feed.added, feed.removed)]
        )
        if touched.null_count:
            return None
        now = self.inputs.matching(check, alias, column, pc.unique(touched))
        columns = now.column_names
        before = self.engine.query(
            "WITH kept AS (SELECT * FROM now EXCEPT ALL SELECT * FROM a) "
            "SELECT * FROM kept UNION ALL SELECT * FROM r",
            {"now": now, "a": feed.added.select(columns), "r": feed.removed.select(columns)},
        )
        return now, before

    def _rows_since(self, check: Check, state: CheckState, feed: Changes) -> Result | None:
        """A row judged alone: the recorded failing count plus the added rows that fail minus
        the removed rows that failed; the sample from the failing rows added."""
        added = self.engine.query(check.sql, {"t": feed.added})
        removed = (  # no row in, none out: appends remove nothing
            self.engine.query(check.sql, {"t": feed.removed})
            if feed.removed.num_rows
            else added.slice(0, 0)
        )
        failing = state.failing_rows + added.num_rows - removed.num_rows
        if failing < 0:
            return None  # the recorded count does not fit the table: count again in full
        if failing == 0:
            return Result(check, CheckStatus.PASS)
        new = self._net(added, removed)
        sample = new.slice(0, SAMPLE_ROWS).to_pylist() if new.num_rows else state.sample
        return Result(check, _status(check), failing, sample)

    def _keys_since(
        self, check: Check, locality: Keyed, feeds: Mapping[str, Changes]
    ) -> Result | None:
        """Every input read for the keys a change touched only (the other keys passed last
        time and none of their rows moved)."""
        names = [f"k{i}" for i in range(len(locality.columns[0][1]))]
        touched = [
            part.select(list(cols)).rename_columns(names)
            for alias, cols in locality.columns
            if alias in feeds
            for part in (feeds[alias].added, feeds[alias].removed)
        ]
        keys = _distinct(touched, names)
        if keys is None:
            return Result(check, CheckStatus.PASS)
        tables = {
            alias: self.inputs.matching(check, alias, cols[0], keys[names[0]])
            for alias, cols in locality.columns
        }
        return self._found(check, tables)

    def _references_since(
        self, check: Check, refers: Refers, feeds: Mapping[str, Changes]
    ) -> Result | None:
        """The rows added, and the rows whose parent key disappeared, against their parents
        (a parent key that appeared can only mend rows, and none was broken)."""
        fk = refers.columns[0]
        rows = self._net_added(feeds["t"]) if "t" in feeds else None
        lost = self._lost_parents(check, refers, feeds.get(refers.parent))
        if lost is not None:
            broken = self.inputs.matching(check, "t", fk, lost)
            if rows is not None:  # the added rows with such a key are among those read
                rows = rows.filter(pc.invert(pc.fill_null(pc.is_in(rows[fk], lost), False)))
                rows = pa.concat_tables([rows, broken], promote_options="permissive")
            else:
                rows = broken
        if rows is None or rows.num_rows == 0:
            return Result(check, CheckStatus.PASS)
        keys = pc.unique(rows[fk].combine_chunks())
        parents = self.inputs.matching(check, refers.parent, refers.parent_columns[0], keys)
        return self._found(check, {"t": rows, refers.parent: parents})

    def _lost_parents(self, check: Check, refers: Refers, feed: Changes | None) -> pa.Array | None:
        """The first column of the parent keys that were removed and are no longer there
        (None: no such key)."""
        if feed is None or feed.removed.num_rows == 0:
            return None
        cols = list(refers.parent_columns)
        candidates = feed.removed.select(cols).group_by(cols).aggregate([])
        present = self.inputs.matching(check, refers.parent, cols[0], candidates[cols[0]])
        present = present.select(cols).cast(candidates.select(cols).schema)
        lost = candidates.join(present, keys=cols, join_type="left anti")
        return pc.unique(lost[cols[0]].combine_chunks()) if lost.num_rows else None

    def _net_added(self, feed: Changes) -> pa.Table:
        """The rows ``feed`` added and did not remove again (once per feed: the checks of a
        table share it)."""
        if id(feed) not in self._nets:
            self._nets[id(feed)] = (feed, self._net(feed.added, feed.removed))
        return self._nets[id(feed)][1]

    def _net(self, added: pa.Table, removed: pa.Table) -> pa.Table:
        """``added`` less ``removed`` as multisets: rows added and removed again cancel."""
        if removed.num_rows == 0 or added.num_rows == 0:
            return added
        return self.engine.query(
            "SELECT * FROM a EXCEPT ALL SELECT * FROM r", {"a": added, "r": removed}
        )


def _sum(total: Total, rows: Relation, engine: Engine) -> Value:
    return _sums([total], rows, engine)[total.name]


def _sums(totals: list[Total], rows: Relation, engine: Engine) -> dict[str, Value]:
    """``totals`` (over the same rows) over ``rows`` in one query: 0 for a sum of no row,
    None for the newest of none."""
    found = engine.query(totals_sql(totals), {totals[0].rows.alias: rows}).to_pylist()[0]
    return {t.name: 0 if found[t.name] is None and t.adds_up else found[t.name] for t in totals}


def _agree(check: Check) -> list[Total]:
    """The totals of both sides of every pair of :attr:`Check.agree`."""
    return [t for pair in check.agree for t in pair]


def _fingerprints_agree(check: Check, totals: Mapping[str, Value]) -> bool:
    return all(totals[a.name] == totals[b.name] for a, b in check.agree)


FOUND, NTH = "_failing_rows", "_sample_row"  # columns sampled_sql adds


def sampled_sql(sql: str) -> str:
    """The first :data:`SAMPLE_ROWS` rows of ``sql``, each with how many rows it returns:
    a count and a sample come back, never every violation. Numbered rows, not a LIMIT: a
    LIMIT over a UNION ALL of window-function CTEs never returns on DuckDB 2.0 (seen on the
    reconciliation checks). Spark numbers rows only in an order: a constant one."""
    return (
        f"SELECT * FROM (SELECT *, count(*) OVER () AS {FOUND}, "
        f"row_number() OVER (ORDER BY 1) AS {NTH} FROM ({sql}) AS found) AS numbered "
        f"WHERE {NTH} <= {SAMPLE_ROWS}"
    )


def _distinct(parts: list[pa.Table], names: list[str]) -> pa.Table | None:
    """The distinct key tuples of ``parts`` (None: no key at all)."""
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return None
    first = parts[0].schema
    keys = pa.concat_tables([p.cast(first) for p in parts])
    return keys.group_by(names).aggregate([])


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


def _state(
    check: Check,
    done: Evaluation,
    versions: Mapping[str, Version],
    tables: Mapping[str, str | None],
    before: CheckState | None,
) -> dict[str, Any] | None:
    """The check's new state; None (forgotten) while its table is not written."""
    if versions[input_name(check.layer, check.table)] is None:
        return None
    r = done.result
    return {
        "definition": definition(check),
        "versions": json.dumps(dict(versions)),
        "tables": json.dumps(dict(tables)),
        "status": r.status.value,
        "failing_rows": r.failing_rows,
        "sample": json.dumps(r.sample, default=str) if r.sample else None,
        "observed": r.observed,
        "totals": encode_totals(done.totals),
        "mode": done.mode.value,
        "runs_since_full": 0  # counts the evaluations on what moved (see _must_be_full)
        if done.mode is Mode.FULL or before is None
        else before.runs_since_full + (done.mode is Mode.INCREMENTAL),
        "passed_at": before.passed_at if before else None,
        "full_at": before.full_at if before else None,
    }
