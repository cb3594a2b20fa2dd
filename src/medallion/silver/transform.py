"""Pure Silver transforms: conform, validate, de-duplicate, aggregate. Relations in (Arrow, or
lazy scans the engine reads itself), all SQL through the engine; no Delta write, no clock.

Every per-row step is SQL: a result that may be as large as a table is kept where the engine
runs (:meth:`Engine.keep`, near the table it is meant for, which the caller names), and only
counts come back here. A broken row keeps its original Bronze values by carrying them through
the checks (``_b_<column>``) rather than joining back by a row number this process would have
to make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from medallion.engine import Engine, Relation, rows_in
from medallion.errors import MedallionError
from medallion.silver.contracts import Action, Kind, Reference, Rule, SilverTable
from medallion.sql import quote as _q
from medallion.sql import quoted_list

if TYPE_CHECKING:
    from medallion.storage import DeltaHandle

# Brazil's bounding box (with its islands), for geolocation points.
BRAZIL_LAT = (-33.8, 5.3)
BRAZIL_LNG = (-73.99, -28.8)
TOMBSTONE = "_tombstone"
ORIGINAL = "_b_"  # prefix of the original Bronze values carried through the checks
RETRIED = "_retried"  # a row retried from the quarantine, not fresh from Bronze


@dataclass(frozen=True)
class Keeping:
    """What a batch's results are stamped with (the run writing them, and when) and where
    the engine keeps them: near the Silver table and the quarantine table they go to."""

    run_id: str
    at: datetime
    target: DeltaHandle | None = None
    quarantine: DeltaHandle | None = None

    @property
    def params(self) -> dict[str, str]:
        """The stamp as bound parameters: the time as text, cast in SQL (a naive timestamp
        bound as a value would be taken for local time by some engines)."""
        return {"run_id": self.run_id, "at": self.at.replace(tzinfo=None).isoformat(sep=" ")}


@dataclass(frozen=True)
class Validated:
    """The outcome of one batch: rows to merge (``merge_rows`` of them, kept near the
    target), rows to quarantine (``quarantined`` of them, kept near the quarantine), how many
    were superseded by a newer row of the same key in the batch, and how many retried
    quarantined rows are still held back (they stay where they are, not quarantined twice)."""

    merge: Relation
    merge_rows: int
    quarantine: Relation
    quarantined: int
    superseded: int
    warnings: dict[str, int]
    still_held: int = 0


@dataclass(frozen=True)
class Checked:
    """A batch conformed and checked (kept by the engine): each row's ``_broken`` and
    ``_warned`` rules, ``_retried``, and its original Bronze values (``_b_<column>`` for
    each of ``originals``); with the counts the reconciliation needs."""

    rows: Relation
    originals: list[str]
    valid: int
    quarantined: int  # fresh rows broken
    still_held: int  # retried rows still broken
    warnings: dict[str, int]


def conformed_expr(spec: SilverTable, name: str) -> str:
    """SQL of one column conformed exactly as Silver does it (over Bronze columns)."""
    col = next(c for c in spec.columns if c.name == name)
    return f"TRY_CAST({col.expr} AS {col.type})"


def conformed(spec: SilverTable, names: tuple[str, ...]) -> str:
    """A select list of some of the table's columns, conformed as Silver does it."""
    return ", ".join(f"{conformed_expr(spec, n)} AS {_q(n)}" for n in names)


# what _conformed_select gives after the table's own columns
CONFORMED_META = (
    "updated_at", "_ingested_at", "is_deleted", "deleted_at", TOMBSTONE, "_bronze_run_id",
    "_type_errors",
)  # fmt: skip


def conformed_names(spec: SilverTable) -> list[str]:
    """The columns of :func:`_conformed_select`, in order."""
    return [*spec.column_names, *CONFORMED_META]


def _conformed_select(spec: SilverTable, source: str = "bronze", carried: str = "") -> str:
    """The conformed columns (:func:`conformed_names`) of the rows of ``source`` (alias
    ``b``), then ``carried`` (more select items over ``b``) when given."""
    exprs, joins = _per_value(spec, source)
    cols = [f"TRY_CAST({exprs[c.name]} AS {c.type}) AS {_q(c.name)}" for c in spec.columns]
    type_checks = ", ".join(
        f"CASE WHEN ({exprs[c.name]}) IS NOT NULL AND TRY_CAST({exprs[c.name]} AS {c.type}) "
        f"IS NULL THEN '{c.name}_type' END"
        for c in spec.columns
    )
    return (
        f"SELECT {', '.join(cols)}, "
        "b._source_updated_at AS updated_at, b._ingested_at AS _ingested_at, "
        "b._op = 'delete' AS is_deleted, "
        "CASE WHEN b._op = 'delete' THEN coalesce(b.deleted_at, b._source_updated_at) END "
        "AS deleted_at, b.updated_at IS NULL AS _tombstone, b._run_id AS _bronze_run_id, "
        f"list_filter([{type_checks}], lambda x: x IS NOT NULL) AS _type_errors"
        f"{', ' + carried if carried else ''} FROM {source} b{joins}"
    )


def _per_value(spec: SilverTable, source: str) -> tuple[dict[str, str], str]:
    """Each column's SQL over ``b`` (before its cast), and the joins that bring the values
    of the columns conformed per distinct value (:attr:`Col.per_value_of`): ``source`` is then
    read twice, so it must be a table or a CTE, never a stream read once."""
    exprs, joins = {c.name: c.expr for c in spec.columns}, ""
    for i, col in enumerate(spec.columns):
        if col.per_value_of is None:
            continue
        alias, raw = f"_per_value{i}", _q(col.per_value_of)
        joins += (
            f" LEFT JOIN (SELECT {raw} AS _value, {col.expr} AS _conformed "
            f"FROM (SELECT DISTINCT {raw} FROM {source})) {alias} "
            f"ON b.{raw} IS NOT DISTINCT FROM {alias}._value"
        )
        exprs[col.name] = f"{alias}._conformed"
    return exprs, joins


def _rule_case(rule: Rule) -> str:
    return (
        f"CASE WHEN NOT is_deleted AND coalesce(({rule.violation}), false) THEN '{rule.name}' END"
    )


def _reference_rule(ref: Reference) -> Rule:
    alias = f"ref_{ref.table}"
    match = " AND ".join(
        f"{alias}.{_q(k)} = c.{_q(c)}" for c, k in zip(ref.columns, ref.key, strict=True)
    )
    present = " AND ".join(f"c.{_q(c)} IS NOT NULL" for c in ref.columns)
    return Rule(
        ref.rule_name,
        f"{present} AND NOT EXISTS (SELECT 1 FROM {alias} WHERE {match})",
        f"{', '.join(ref.columns)} not found in {ref.table}",
        reference=ref,
    )


CONTENT_HASH = "_content_hash"


def _duplicate_content_rule(spec: SilverTable) -> Rule:
    """The later of two live rows with different keys and the same content is a duplicate
    (which rows are is worked out once, in :func:`_seen_sql`'s ``duplicates``)."""
    return Rule(
        "duplicate_content",
        f"EXISTS (SELECT 1 FROM duplicates d WHERE d.{CONTENT_HASH} = c.{CONTENT_HASH} "
        "AND d._key_text = c._key_text AND d.updated_at = c.updated_at)",
        f"duplicates the {', '.join(spec.unique_content)} of another {spec.name} row",
        batch_only=True,
    )


def all_rules(spec: SilverTable) -> tuple[Rule, ...]:
    content = (_duplicate_content_rule(spec),) if spec.unique_content else ()
    return spec.rules + tuple(_reference_rule(r) for r in spec.references) + content


def _key_text(spec: SilverTable) -> str:
    """The key as one text value, to compare keys of any width."""
    return "concat_ws('|', " + ", ".join(f"{_q(k)}::VARCHAR" for k in spec.key) + ")"


def _content_columns(spec: SilverTable, engine: Engine) -> str:
    """SQL for the content hash and a text form of the key (empty without unique_content)."""
    if not spec.unique_content:
        return ""
    key_text = _key_text(spec)
    text = _native_json(spec) if engine.dialect == "duckdb" else _content_json(spec)
    return f", md5({text}) AS {CONTENT_HASH}, {key_text} AS _key_text"


def _content_json(spec: SilverTable) -> str:
    """The content columns as one JSON object, exactly DuckDB's ``to_json(struct_pack(...))``
    (nulls kept, timestamps as their text), written field by field so that every engine
    makes the same text: the hash is stored and compared across runs."""
    parts = []
    for i, name in enumerate(spec.unique_content):
        if _content_kind(spec, name) in _JSON_NUMBERS:
            value = f"{_q(name)}::VARCHAR"
        else:
            value = _json_string(f"{_q(name)}::VARCHAR")
        parts.append(f"'{',' if i else '{'}{_json_key(name)}:' || coalesce({value}, 'null')")
    return "(" + " || ".join(parts) + " || '}')"


def _native_json(spec: SilverTable) -> str:
    """:func:`_content_json`'s text made by DuckDB's own ``to_json`` (5x cheaper on text)."""
    fields = ", ".join(
        f"{_q(n)} := {_q(n)}{'' if _content_kind(spec, n) in _JSON_NUMBERS else '::VARCHAR'}"
        for n in spec.unique_content
    )
    return f"to_json(struct_pack({fields}))"


def _content_kind(spec: SilverTable, name: str) -> str:
    kind = {c.name: c.type for c in spec.columns}[name].upper()
    if kind not in (*_JSON_NUMBERS, "VARCHAR", "TIMESTAMP"):
        raise MedallionError(f"silver.{spec.name}: unique_content cannot hash {kind} {name}")
    return kind


_JSON_NUMBERS = ("SMALLINT", "INTEGER", "BIGINT")


def _json_string(text: str) -> str:
    """``text`` as a JSON string, escaped exactly as DuckDB's ``to_json`` does (engines' own
    ``to_json`` differ: hex digits of ``\\u001F`` upper or lower case)."""
    escaped = f"replace(replace({text}, '\\', '\\\\'), '\"', '\\\"')"
    for code in range(0x20):
        short = _JSON_SHORT.get(code)
        escape = f"\\{short}" if short else f"\\u{code:04X}"
        escaped = f"replace({escaped}, chr({code}), '{escape}')"
    # most texts need no escape: one regex test instead of 34 replacements (7x cheaper)
    plain = f"NOT regexp_matches({text}, '[\\x00-\\x1F\"\\\\]')"
    return f"'\"' || CASE WHEN {plain} THEN {text} ELSE {escaped} END || '\"'"


_JSON_SHORT = {8: "b", 9: "t", 10: "n", 12: "f", 13: "r"}


def _json_key(name: str) -> str:
    assert name.replace("_", "").isalnum(), name  # written into a JSON text literal as is
    return f'"{name}"'


_PARENT = "parent_"  # a referenced table whole; ``ref_<table>``: the rows a batch asks for


def _asked_parents_sql(spec: SilverTable) -> str:
    """Of each table ``spec`` references, the rows whose key the batch's rows name, under the
    name its reference rules read (``ref_<table>``). An ``IN`` list of a small batch's keys lets
    DuckDB's Parquet reader skip the parent's row groups whose bloom filter holds none of them
    (:func:`~medallion.storage.file_layout`): the rule's anti-join otherwise hashes every key
    of the parent (scale 10, 10 orders against customers: 65-110 ms, 7 ms so)."""
    asked: dict[str, list[str]] = {}
    for ref in spec.references:
        wanted = f"{_q(ref.key[0])} IN (SELECT {_q(ref.columns[0])} FROM h)"
        asked.setdefault(ref.table, []).append(wanted)
    return "".join(
        f", ref_{table} AS (SELECT * FROM {_PARENT}{table} WHERE {' OR '.join(wanted)})"
        for table, wanted in asked.items()
    )


def _seen_sql(spec: SilverTable, has_existing: bool) -> str:
    """Live content already in Silver plus this batch, and of it the rows that repeat an
    earlier row's content under another key, for the duplicate-content rule. Only content
    seen more than once is compared row with row (an inequality join over every row would
    cost what the rest of the checks cost together)."""
    if not spec.unique_content:
        return ""
    key_text = _key_text(spec)
    seen = f"SELECT {CONTENT_HASH}, _key_text, updated_at FROM h WHERE NOT is_deleted"
    if has_existing:  # of Silver, only the content this batch brings again can matter
        seen += (
            f" UNION ALL SELECT {CONTENT_HASH}, {key_text} AS _key_text, updated_at "
            f"FROM existing WHERE NOT is_deleted AND {CONTENT_HASH} IN (SELECT {CONTENT_HASH} "
            "FROM h)"
        )
    return f""", seen AS ({seen}),
        repeated AS (
            SELECT * FROM seen WHERE {CONTENT_HASH} IN (
                SELECT {CONTENT_HASH} FROM seen GROUP BY {CONTENT_HASH} HAVING count(*) > 1)
        ),
        duplicates AS (
            SELECT DISTINCT c.{CONTENT_HASH}, c._key_text, c.updated_at
            FROM repeated c JOIN repeated o ON o.{CONTENT_HASH} = c.{CONTENT_HASH}
            WHERE o._key_text <> c._key_text AND (o.updated_at < c.updated_at
                OR (o.updated_at = c.updated_at AND o._key_text < c._key_text))
        )"""


def reasons(spec: SilverTable) -> dict[str, str]:
    """Rule name -> readable reason, including the automatic type rules."""
    out = {r.name: r.reason for r in all_rules(spec)}
    out |= {f"{c.name}_type": f"{c.name} does not fit {c.type}" for c in spec.columns}
    return out


def validate(
    spec: SilverTable,
    bronze: Relation,
    references: Mapping[str, Relation],
    lookup: Relation | None,
    *,
    engine: Engine,
    keeping: Keeping,
    existing: Relation | None = None,
    retry: pa.Table | None = None,
) -> Validated:
    """Conform a Bronze batch, split off rule breakers, keep the latest row per key.

    ``existing`` holds the Silver rows (keys, content hashes, times and delete flags are
    read), for tables that declare ``unique_content``. ``retry`` holds quarantined rows to try
    again (their parent may have arrived since): a small answer, sent with the query.
    """
    checked = check(spec, bronze, references, engine=engine, existing=existing, retry=retry)
    quarantine = quarantine_rows(spec, checked, engine=engine, keeping=keeping)
    deduped = latest_per_key(spec, checked.rows, lookup, engine=engine, keeping=keeping)
    engine.discard(checked.rows)
    merge_rows = rows_in(deduped)
    return Validated(
        deduped,
        merge_rows,
        quarantine,
        checked.quarantined,
        checked.valid - merge_rows,
        checked.warnings,
        checked.still_held,
    )


def check(
    spec: SilverTable,
    bronze: Relation,
    references: Mapping[str, Relation],
    *,
    engine: Engine,
    existing: Relation | None = None,
    retry: pa.Table | None = None,
) -> Checked:
    """Conform and check a Bronze batch (and retried rows) in one pass, kept by the engine
    (staging: no table takes it), with the counts of what it found."""
    originals = list(bronze.schema.names)
    asked = {r.table for r in spec.references}  # read through _asked_parents_sql
    tables = {"bronze": bronze}
    tables |= {f"{_PARENT if k in asked else 'ref_'}{k}": v for k, v in references.items()}
    rows = f"SELECT *, false AS {RETRIED} FROM bronze"
    if retry is not None and retry.num_rows:
        tables["retry"] = _shaped_like(retry, bronze.schema)
        rows += f" UNION ALL SELECT *, true AS {RETRIED} FROM retry"
    if existing is not None:
        tables["existing"] = existing
    rules = all_rules(spec)
    quarantine_rules = [r for r in rules if r.action is Action.QUARANTINE]
    warn_rules = [r for r in rules if r.action is Action.WARN]
    kept = conformed_names(spec) + ([CONTENT_HASH] if spec.unique_content else [])
    carried = [f"{ORIGINAL}{n}" for n in originals]
    carry = [f"b.{_q(n)} AS {_q(f'{ORIGINAL}{n}')}" for n in originals] + [f"b.{RETRIED}"]
    select = _conformed_select(spec, "incoming", ", ".join(carry))
    checked = engine.keep(
        f"""
        WITH incoming AS ({rows}),
        h AS {"MATERIALIZED " if spec.unique_content or spec.references else ""}(
            SELECT *{_content_columns(spec, engine)} FROM ({select})
        )
        {_asked_parents_sql(spec)}
        {_seen_sql(spec, existing is not None)}
        SELECT {quoted_list(kept)}, {_broken_only(carried)}, {RETRIED}, _broken, _warned
        FROM (
            SELECT {quoted_list(kept + carried, "c.")}, c.{RETRIED},
                list_concat(c._type_errors,
                    list_filter([{_cases(quarantine_rules)}], lambda x: x IS NOT NULL))
                    AS _broken,
                list_filter([{_cases(warn_rules)}], lambda x: x IS NOT NULL) AS _warned
            FROM h c
        )
        """,
        tables,
    )
    counts = _check_counts(checked, engine)
    return Checked(
        checked,
        originals,
        counts["valid"],
        counts["quarantined"],
        counts["held"],
        _warning_counts(checked, engine),
    )


def valid_history(spec: SilverTable, bronze: Relation, engine: Engine) -> Relation:
    """Every Bronze row of ``bronze`` that Silver accepts, conformed, not de-duplicated: the
    states Gold's history is folded from, kept by the engine (:meth:`Engine.keep`: a whole
    history may be as large as a table). Only for tables whose rules are row-local
    (no references, no unique content), so a row's fate never depends on other tables."""
    if spec.references or spec.unique_content:
        raise MedallionError(
            f"silver.{spec.name}: its rules depend on other rows, so its Bronze history cannot "
            "be validated row by row; feed Gold from its Silver table instead"
        )
    rules = [r for r in all_rules(spec) if r.action is Action.QUARANTINE]
    dropped = {"_type_errors", "_bronze_run_id"}
    names = [n for n in conformed_names(spec) if n not in dropped]
    return engine.keep(
        f"""
        SELECT {quoted_list(names, "c.")} FROM ({_conformed_select(spec)}) c
        WHERE array_length(c._type_errors) = 0
            AND array_length(list_filter([{_cases(rules)}], lambda x: x IS NOT NULL)) = 0
        """,
        {"bronze": bronze},
    )


def _shaped_like(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with exactly ``schema``'s columns (missing ones NULL), in its order."""
    n = rows.num_rows
    arrays = [
        rows[f.name].cast(f.type) if f.name in rows.column_names else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def waiting_rules(spec: SilverTable) -> list[str]:
    """The rules a row breaks only while its parent is missing (``$waiting`` of retry_sql)."""
    return [r.name for r in all_rules(spec) if r.reference is not None]


QUARANTINE_META = ("_rule", "_reason", "_quarantine_run_id", "_quarantined_at")


def retry_sql(spec: SilverTable, columns: list[str]) -> str:
    """Quarantined rows worth another try: per key the latest quarantined row, when it was
    held back only by missing parents (``$waiting``) and Silver still has no row for the key.
    ``columns``: the quarantine table's columns; the rows come back without its own."""
    keys = ", ".join(_q(k) for k in spec.key)
    match = " AND ".join(f"s.{_q(k)} = q.{_q(k)}" for k in spec.key)
    kept = [c for c in columns if c not in QUARANTINE_META]
    return f"""
        WITH ranked AS (
            SELECT *, row_number() OVER (PARTITION BY {keys}
                ORDER BY _source_updated_at DESC, _ingested_at DESC, _quarantined_at DESC)
                AS _rank
            FROM quarantine
        )
        SELECT {quoted_list(kept, "q.")} FROM ranked q
        WHERE q._rank = 1
            AND array_length(list_filter(string_split_regex(q._rule, ','),
                lambda r: NOT list_contains($waiting::VARCHAR[], r))) = 0
            AND NOT EXISTS (SELECT 1 FROM silver s WHERE {match})
    """


def _cases(rules: list[Rule]) -> str:
    return ", ".join(_rule_case(r) for r in rules) if rules else "NULL"


def _check_counts(checked: Relation, engine: Engine) -> dict[str, int]:
    """Valid rows, fresh rows broken (to quarantine), retried rows still broken."""
    broken = "array_length(_broken) > 0"
    counts = engine.query(
        f"""
        SELECT count(CASE WHEN NOT ({broken}) THEN 1 END) AS valid,
            count(CASE WHEN {broken} AND NOT {RETRIED} THEN 1 END) AS quarantined,
            count(CASE WHEN {broken} AND {RETRIED} THEN 1 END) AS held
        FROM checked
        """,
        {"checked": checked},
    )
    return {k: int(v or 0) for k, v in counts.to_pylist()[0].items()}


def _warning_counts(checked: Relation, engine: Engine) -> dict[str, int]:
    rows = engine.query(
        "SELECT w AS rule, count(*) AS n FROM (SELECT unnest(_warned) AS w FROM checked) "
        "GROUP BY w ORDER BY w",
        {"checked": checked},
    )
    return dict(zip(rows["rule"].to_pylist(), rows["n"].to_pylist(), strict=True))


def quarantine_rows(
    spec: SilverTable, checked: Checked, *, engine: Engine, keeping: Keeping
) -> Relation:
    """Every original Bronze value of each fresh broken row, with the rules, readable
    reasons and the quarantine's stamp; kept near the quarantine table."""
    reason_map = reasons(spec)
    names = list(reason_map)
    texts = [reason_map[n] for n in names]
    originals = ", ".join(f"{_q(f'{ORIGINAL}{n}')} AS {_q(n)}" for n in checked.originals)
    return engine.keep(
        f"""
        SELECT {originals},
            array_to_string(_broken, ',') AS _rule,
            array_to_string(list_transform(_broken,
                lambda r: MAP($names::VARCHAR[], $texts::VARCHAR[])[r]), '; ') AS _reason,
            $run_id::VARCHAR AS _quarantine_run_id,
            CAST($at AS TIMESTAMP) AS _quarantined_at
        FROM checked WHERE array_length(_broken) > 0 AND NOT {RETRIED}
        """,
        {"checked": checked.rows},
        {"names": names, "texts": texts, **keeping.params},
        near=keeping.quarantine,
    )


def _broken_only(originals: list[str]) -> str:
    """The original Bronze values, kept for the broken rows only (the quarantine's): on the
    others they would double what the checked rows hold."""
    return ", ".join(
        f"CASE WHEN array_length(_broken) > 0 THEN {_q(n)} END AS {_q(n)}" for n in originals
    )


def latest_per_key(
    spec: SilverTable,
    checked: Relation,
    lookup: Relation | None,
    *,
    engine: Engine,
    keeping: Keeping,
) -> Relation:
    """The latest valid row per key, stamped with the run, kept near the target; a
    tombstone takes its values from the key's latest upsert in the batch, so one batch and
    many small ones give the same Silver row."""
    keys = ", ".join(_q(k) for k in spec.key)
    values = [c.name for c in spec.columns if c.name not in spec.key]
    # at one updated_at a delete wins, as in the MERGE and in Gold's SCD2 fold; rows equal
    # in all that (two spellings of one key in one extract) are told apart by their values,
    # the same on every engine and in every grouping of the batch
    ties = _by_values([*values, "deleted_at"])
    order = f"updated_at DESC, is_deleted DESC, _ingested_at DESC, {ties}"
    values += [CONTENT_HASH] if spec.unique_content else []
    filled = ", ".join(
        f"CASE WHEN l._tombstone THEN u.{_q(v)} ELSE l.{_q(v)} END AS {_q(v)}" for v in values
    )
    join_keys = " AND ".join(f"u.{_q(k)} = l.{_q(k)}" for k in spec.key)
    lookup_cols, lookup_join = _lookup_sql(spec)
    same_key = " AND ".join(f"r.{_q(k)} = v.{_q(k)}" for k in spec.key)
    repeated = f"EXISTS (SELECT 1 FROM repeated r WHERE {same_key})"
    alone = ", ".join(f"CASE WHEN _tombstone THEN NULL ELSE {_q(v)} END AS {_q(v)}" for v in values)
    # a key with one valid row (most of them) is its own latest row: only the keys with
    # several go through the windows, which hold every column of their rows
    sql = f"""
        WITH valid AS (SELECT * FROM checked WHERE array_length(_broken) = 0),
        repeated AS (SELECT {keys} FROM valid GROUP BY {keys} HAVING count(*) > 1),
        several AS (SELECT * FROM valid v WHERE {repeated}),
        latest AS (
            SELECT * FROM (
                SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS _rank
                FROM several
            ) WHERE _rank = 1
        ),
        last_upsert AS (
            SELECT * FROM (
                SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS _rank
                FROM several WHERE NOT _tombstone
            ) WHERE _rank = 1
        ),
        s AS (
            SELECT {keys}{", " if alone else ""}{alone},
                updated_at, is_deleted, deleted_at, _bronze_run_id, _tombstone AS {TOMBSTONE}
            FROM valid v WHERE NOT {repeated}
            UNION ALL
            SELECT {", ".join(f"l.{_q(k)}" for k in spec.key)}{", " if filled else ""}{filled},
                l.updated_at, l.is_deleted, l.deleted_at, l._bronze_run_id,
                l._tombstone AND u.updated_at IS NULL AS {TOMBSTONE}
            FROM latest l LEFT JOIN last_upsert u ON {join_keys}
        )
        SELECT s.*{lookup_cols}, $run_id::VARCHAR AS _run_id FROM s {lookup_join}
        ORDER BY {keys}
    """
    tables = {"checked": checked}
    if lookup is not None:
        tables["lookup"] = lookup
    return engine.keep(sql, tables, {"run_id": keeping.run_id}, near=keeping.target)


def _by_values(columns: list[str]) -> str:
    """An ordering over ``columns``, largest first, NULL last."""
    return ", ".join(f"{_q(c)} DESC NULLS LAST" for c in columns)


def without_tombstones(rows: Relation, engine: Engine, *, near: DeltaHandle | None) -> Relation:
    """The rows of :func:`latest_per_key` a new table starts with: no row for a tombstone
    (there is nothing to flag deleted), and no ``_tombstone`` column."""
    names = [n for n in rows.schema.names if n != TOMBSTONE]
    return engine.keep(
        f"SELECT {quoted_list(names)} FROM s WHERE NOT {TOMBSTONE}", {"s": rows}, near=near
    )


def _live(table: str) -> str:
    """The live rows of lookup ``table`` (a deleted translation no longer translates)."""
    return f"(SELECT * FROM {table} WHERE NOT coalesce(is_deleted, false))"


def _lookup_sql(spec: SilverTable) -> tuple[str, str]:
    if spec.lookup is None:
        return "", ""
    on = _q(spec.lookup.on)
    cols = "".join(f", {c.expr} AS {_q(c.name)}" for c in spec.lookup.columns)
    return cols, f"LEFT JOIN {_live('lookup')} l ON l.{on} = s.{on}"


def refresh_sql(spec: SilverTable) -> str:
    """Existing Silver rows (``s``) whose looked-up columns come out different against the
    live rows of the ``lookup`` table now, stamped with the run (``$run_id``).
    ``updated_at`` stays the row's own: a relabel is the lookup row's event, and must never
    make a newer change of the row itself look stale."""
    assert spec.lookup is not None
    on = _q(spec.lookup.on)
    looked_up = {c.name for c in spec.lookup.columns}
    kept = [c for c in silver_columns(spec) if c not in looked_up | {"updated_at", "_run_id"}]
    new = ", ".join(f"{c.expr} AS {_q(c.name)}" for c in spec.lookup.columns)
    differs = " OR ".join(
        f"({c.expr}) IS DISTINCT FROM s.{_q(c.name)}" for c in spec.lookup.columns
    )
    return f"""
        SELECT {", ".join(f"s.{_q(c)}" for c in kept)}, {new},
            s.updated_at, false AS {TOMBSTONE}, $run_id::VARCHAR AS _run_id
        FROM s LEFT JOIN {_live("lookup")} l ON l.{on} = s.{on}
        WHERE {differs}
    """


def silver_columns(spec: SilverTable) -> list[str]:
    """The Silver table's columns, in order."""
    lookup = [c.name for c in spec.lookup.columns] if spec.lookup else []
    meta = ["updated_at", "is_deleted", "deleted_at", "_bronze_run_id", "_run_id"]
    content = [CONTENT_HASH] if spec.unique_content else []
    return [*spec.column_names, *lookup, *content, *meta]


def empty_silver_sql(spec: SilverTable) -> str:
    """A zero-row query with the Silver table's columns and types (for a table never written:
    its source table is empty)."""
    if spec.kind is Kind.AGGREGATE:
        cols = [
            "NULL::VARCHAR AS zip_code_prefix", "NULL::DOUBLE AS lat", "NULL::DOUBLE AS lng",
            "NULL::VARCHAR AS city", "NULL::VARCHAR AS state", "NULL::INTEGER AS point_count",
            "NULL::TIMESTAMP AS updated_at", "NULL::VARCHAR AS _run_id",
        ]  # fmt: skip
        return f"SELECT {', '.join(cols)} LIMIT 0"
    typed = [f"NULL::{c.type} AS {_q(c.name)}" for c in spec.columns]
    if spec.lookup:
        typed += [f"NULL::{c.type} AS {_q(c.name)}" for c in spec.lookup.columns]
    if spec.unique_content:
        typed.append(f"NULL::VARCHAR AS {CONTENT_HASH}")
    typed += [
        "NULL::TIMESTAMP AS updated_at", "NULL::BOOLEAN AS is_deleted",
        "NULL::TIMESTAMP AS deleted_at", "NULL::VARCHAR AS _bronze_run_id",
        "NULL::VARCHAR AS _run_id",
    ]  # fmt: skip
    return f"SELECT {', '.join(typed)} LIMIT 0"


# -- geolocation: an aggregate over Bronze's current state ----------------------------------
POINT = ("zip_code_prefix", "lat", "lng", "city", "state")


def geolocation_points(spec: SilverTable, bronze_history: Relation, engine: Engine) -> Relation:
    """The current, conformed points (the latest Bronze row per surrogate id, not deleted);
    ``_duplicate`` marks a point equal to one with a smaller id. Kept by the engine (staging:
    an intermediate the caller discards)."""
    assert spec.kind is Kind.AGGREGATE
    point = ", ".join(POINT)
    names = [n for n in conformed_names(spec) if n != "_type_errors"]
    current = f"SELECT {quoted_list(names)} FROM c"
    if not _one_row_per_point(bronze_history, engine):
        ties = _by_values([c.name for c in spec.columns if c.name != "geolocation_id"])
        current = f"""
            SELECT {quoted_list(names)} FROM (
                SELECT *, row_number() OVER (PARTITION BY geolocation_id
                    ORDER BY updated_at DESC, _ingested_at DESC, is_deleted DESC, {ties})
                    AS _rank
                FROM c
            ) WHERE _rank = 1"""
    return engine.keep(
        f"""
        WITH c AS ({_conformed_select(spec)}),
        current AS ({current})
        SELECT *, NOT is_deleted AND row_number() OVER (
            PARTITION BY {point}, is_deleted ORDER BY geolocation_id) > 1 AS _duplicate
        FROM current
        """,
        {"bronze": bronze_history},
    )


def _one_row_per_point(bronze_history: Relation, engine: Engine) -> bool:
    """Whether Bronze holds one row per point id, as after the first load: each row is then
    its id's latest, and the ranking that finds those (a third of the work over a million
    points) is skipped. A NULL or unreadable id is not counted as one: it is ranked."""
    answer = engine.query(
        "SELECT count(*) = count(DISTINCT TRY_CAST(geolocation_id AS BIGINT)) AS once "
        "FROM bronze b",
        {"bronze": bronze_history},
    )
    return bool(answer["once"][0].as_py())


def inside_brazil(lat: str = "lat", lng: str = "lng") -> str:
    return (
        f"{lat} BETWEEN {BRAZIL_LAT[0]} AND {BRAZIL_LAT[1]} "
        f"AND {lng} BETWEEN {BRAZIL_LNG[0]} AND {BRAZIL_LNG[1]}"
    )


GEO_RULES = (
    Rule("point_inside_brazil", f"NOT ({inside_brazil()})", "point lies outside Brazil"),
    Rule(
        "zip_code_prefix_format",
        "NOT regexp_full_match(zip_code_prefix, '[0-9]{5}')",
        "zip_code_prefix is not 5 digits",
    ),
    Rule("coordinates_present", "lat IS NULL OR lng IS NULL", "latitude or longitude missing"),
)


def geolocation_rejects(
    spec: SilverTable, bronze: Relation, points: Relation, *, engine: Engine, keeping: Keeping
) -> tuple[Relation, int]:
    """New Bronze points that cannot enter the aggregate (rules, or a duplicate of an
    existing point), with every original value, kept near the quarantine; and how many."""
    duplicate = Rule(
        "duplicate_point",
        "EXISTS (SELECT 1 FROM ref_points d "
        "WHERE d.geolocation_id = c.geolocation_id AND d._duplicate)",
        "same zip, coordinates, city and state as a point with a smaller geolocation_id",
    )
    rules = (*GEO_RULES, duplicate)
    checking = SilverTable(spec.name, spec.bronze, ("geolocation_id",), spec.columns, rules)
    checked = check(checking, bronze, {"points": points}, engine=engine)
    rejects = quarantine_rows(checking, checked, engine=engine, keeping=keeping)
    engine.discard(checked.rows)
    return rejects, checked.quarantined


def aggregate_geolocation(points: Relation, *, engine: Engine, keeping: Keeping) -> Relation:
    """Per zip prefix: median point, most frequent city and state, point count; stamped
    with the run and kept near the target."""
    where = " AND ".join(f"({r.violation}) IS NOT TRUE" for r in GEO_RULES)
    return engine.keep(
        f"""
        WITH p AS (SELECT * FROM points WHERE NOT is_deleted AND NOT _duplicate AND {where}),
        zips AS (
            SELECT zip_code_prefix, median(lat) AS lat, median(lng) AS lng,
                count(*)::INTEGER AS point_count, max(updated_at) AS updated_at
            FROM p GROUP BY zip_code_prefix
        ),
        {_most_frequent("city")},
        {_most_frequent("state")}
        SELECT z.zip_code_prefix, z.lat, z.lng, c.city, s.state, z.point_count, z.updated_at,
            $run_id::VARCHAR AS _run_id
        FROM zips z
            LEFT JOIN city c ON c.zip_code_prefix = z.zip_code_prefix AND c._rank = 1
            LEFT JOIN state s ON s.zip_code_prefix = z.zip_code_prefix AND s._rank = 1
        ORDER BY z.zip_code_prefix
        """,
        {"points": points},
        {"run_id": keeping.run_id},
        near=keeping.target,
    )


def _most_frequent(column: str) -> str:
    """A CTE named ``column``: per zip prefix its values ranked by how many points carry
    them, then alphabetically (NULL last); ``_rank = 1`` is the most frequent."""
    return f"""{column} AS (
            SELECT zip_code_prefix, {column}, row_number() OVER (PARTITION BY zip_code_prefix
                ORDER BY n DESC, {column} ASC NULLS LAST) AS _rank
            FROM (SELECT zip_code_prefix, {column}, count(*) AS n FROM p
                GROUP BY zip_code_prefix, {column})
        )"""
