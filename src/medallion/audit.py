"""The audit store: one row per task attempt (``run_logs``), check results (``dq_results``),
each check's state (``check_state``: what it last saw, so it can build on it) and table leases
(``leases``) that keep two runs from writing the same table at once.

SQLAlchemy Core with bound parameters only; SQLite file by default, PostgreSQL (schema
``audit``) by URL.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from medallion.errors import AuditError, TransientError, one_line
from medallion.remembered import Bounded
from medallion.runner import RunContext, Status, Task, TaskOutcome
from medallion.settings import Settings, redact_url

SCHEMA = "audit"


BUSY_TIMEOUT_S = 30.0  # how long SQLite waits for another writer before saying it is busy
OPEN_ATTEMPTS = 5  # tries to open a store that another process is creating at once
RECENT_ATTEMPTS = 2_000  # the attempts the scheduler's timings come from (about 30 runs)


def _define(metadata: sa.MetaData) -> dict[str, sa.Table]:
    run_logs = sa.Table(
        "run_logs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("layer", sa.String(32), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("task", sa.String(160), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, default=1),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("rows_read", sa.BigInteger),
        sa.Column("rows_written", sa.BigInteger),
        sa.Column("rows_quarantined", sa.BigInteger),
        sa.Column("watermark_before", sa.String(40)),
        sa.Column("watermark_after", sa.String(40)),
        sa.Column("delta_version", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("metrics", sa.Text),
    )
    # what a run asks of a long log, each answered without reading it whole: the attempts a
    # killed run left unfinished, and the attempts of one job (the report's exports, stream)
    # (on SQLite only the unfinished ones; PostgreSQL indexes every status: naming a
    # postgresql_where would load SQLAlchemy's PostgreSQL dialect in every run, 30 ms)
    sa.Index(
        "ix_run_logs_unfinished", run_logs.c.status, sqlite_where=run_logs.c.ended_at.is_(None)
    )
    sa.Index("ix_run_logs_job", run_logs.c.job)
    dq_results = sa.Table(
        "dq_results",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("layer", sa.String(32), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("check_name", sa.String(160), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failing_rows", sa.BigInteger),
        sa.Column("sample", sa.Text),
        sa.Column("observed", sa.Float),  # the measured value (row count, lag, difference)
        sa.Column("details", sa.Text),
        sa.Column("checked_at", sa.DateTime, nullable=False),
    )
    sa.Index("ix_dq_results_check_name", dq_results.c.check_name)  # a check's last values
    check_state = sa.Table(
        "check_state",
        metadata,
        sa.Column("check_name", sa.String(160), primary_key=True),
        sa.Column("definition", sa.String(64), nullable=False),  # digest of the check's query
        sa.Column("versions", sa.Text, nullable=False),  # JSON: input -> Delta version/fingerprint
        sa.Column("tables", sa.Text, nullable=False),  # JSON: lake input -> Delta table id
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failing_rows", sa.BigInteger),
        sa.Column("sample", sa.Text),
        sa.Column("observed", sa.Float),
        sa.Column("totals", sa.Text),  # JSON: maintained aggregates (row counts, money sums)
        sa.Column("mode", sa.String(16), nullable=False),  # full, incremental or unchanged
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("checked_at", sa.DateTime, nullable=False),
        sa.Column("passed_at", sa.DateTime),
        sa.Column("full_at", sa.DateTime),
        sa.Column("runs_since_full", sa.Integer, nullable=False),
    )
    leases = sa.Table(
        "leases",
        metadata,
        sa.Column("resource", sa.String(400), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    return {
        "run_logs": run_logs,
        "dq_results": dq_results,
        "check_state": check_state,
        "leases": leases,
    }


@functools.cache
def _tables(schema: str | None) -> tuple[sa.MetaData, dict[str, sa.Table]]:
    """The audit tables in ``schema``, declared once per process (every task opens a store)."""
    metadata = sa.MetaData(schema=schema)
    return metadata, _define(metadata)


@contextmanager
def table_lease(settings: Settings, resource: str, run_id: str) -> Iterator[AuditStore]:
    """Hold ``resource`` (a lake table) for one task, through a store opened for it alone
    (which the task may read too)."""
    with AuditStore(settings.audit_location) as audit, audit.lease(resource, run_id):
        yield audit


def _lost_creation_race(exc: SQLAlchemyError) -> bool:
    """Another process made the tables between our look and ours (SQLite says 'already
    exists'; PostgreSQL may trip on its catalog's unique index), or a SQLite file that
    processes open at once was busy past waiting: SQLite answers 'locked' without waiting
    when waiting could deadlock (a connection that read asks to write while another
    writes), and two runs starting on a new store meet there."""
    text = str(exc)
    return "already exists" in text or "pg_type_typname_nsp_index" in text or _busy(exc)


def _busy(exc: SQLAlchemyError) -> bool:
    """SQLite's store was locked by another writer past waiting (or without waiting)."""
    return "locked" in str(exc)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (installed), not SQLAlchemy's default psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    """SQLite in WAL mode, synced at checkpoints: a commit no longer waits for the disk (the
    default journal syncs twice per commit, and a run commits a few hundred times: task rows,
    leases, check states), readers never block the writer, and a crashed process loses
    nothing committed; only a power cut may drop the last commits."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# the engine of each store (and the identity of its SQLite file), for 8 stores a process
# uses (tests open hundreds); one made at a time
_ENGINES: Bounded[tuple[int, str], tuple[tuple[int, int] | None, sa.Engine]] = Bounded(
    kept=8, forget=lambda held: held[1].dispose()
)
_ENGINES_LOCK = threading.Lock()


def _shared_engine(target: str) -> sa.Engine:
    """One engine per store and process, for every :class:`AuditStore` of it: a new engine
    sets its dialect up on its first connection (a few ms, and a run opens a store per
    task). A SQLite file replaced or deleted since gets a new engine, never a connection to
    the file that is gone; a forked process gets its own."""
    key, identity = (os.getpid(), target), _file_identity(target)
    with _ENGINES_LOCK:
        held = _ENGINES.get(key)
        if held is not None and held[0] == identity:
            return held[1]
        engine = _new_engine(target)
        if identity is None and target.startswith("sqlite"):
            return engine  # in memory, or a file its first connection creates
        if held is not None:
            held[1].dispose()
        _ENGINES.put(key, (identity, engine))
        return engine


# engines of SQLite files whose tables this process made or found: a run opens a store per
# task, and asking for each table costs 2 ms (a file replaced since has an engine of its own;
# a server is asked every time, which is also how an unreachable one fails at once)
_TABLES_MADE: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
# engines whose store holds every declared index (asked once per process and store)
_INDEXED: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _new_engine(target: str) -> sa.Engine:
    # SQLite: wait for a concurrent writer (another task, `source change`) instead of failing
    # at once with "database is locked"
    sqlite = target.startswith("sqlite")
    args = {"timeout": BUSY_TIMEOUT_S} if sqlite else {}
    # as many pooled connections as the tasks of a run use at once: a shared engine's pool
    # must never make a task wait for another's; a server's connection is pinged before use
    # (it may have dropped it), a file's never goes stale
    engine = sa.create_engine(target, pool_pre_ping=not sqlite, max_overflow=-1, connect_args=args)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _write_ahead_log)
    return engine


def _file_identity(target: str) -> tuple[int, int] | None:
    """The device and inode of a SQLite store's file (None: not a file, or none yet)."""
    if not target.startswith("sqlite"):
        return (0, 0)
    path = sa.make_url(target).database
    if not path or path == ":memory:":
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class AuditStore:
    """Writes and reads the audit tables; also a runner listener (one row per attempt)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = _shared_engine(sqlalchemy_url(url))
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise AuditError(f"invalid audit_url {redact_url(url)}: {exc}") from None
        self.metadata, self.t = _tables(
            SCHEMA if self.engine.dialect.name == "postgresql" else None
        )
        self._rows: dict[tuple[str, str, int], int] = {}
        self._lock = threading.Lock()

    def open(self) -> AuditStore:
        """Create the tables if needed; an unreachable store fails here with one line."""
        if self.engine.dialect.name == "sqlite":
            path = self.engine.url.database
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        for attempt in range(OPEN_ATTEMPTS):
            try:
                self._create_tables()
                return self
            except SQLAlchemyError as exc:
                if attempt < OPEN_ATTEMPTS - 1 and _lost_creation_race(exc):
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise AuditError(
                    f"audit store {redact_url(self.url)} is unreachable: {_one_line(exc)}"
                ) from None
        return self

    def _create_tables(self) -> None:
        if self.engine in _TABLES_MADE:
            return
        with self.engine.begin() as conn:
            if self.metadata.schema:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.metadata.schema}"'))
            self.metadata.create_all(conn)
            if self.engine not in _INDEXED:  # a store made by an earlier release lacks some
                for table in self.metadata.sorted_tables:
                    for index in table.indexes:
                        index.create(conn, checkfirst=True)
        _INDEXED.add(self.engine)
        if self.engine.dialect.name == "sqlite":
            _TABLES_MADE.add(self.engine)

    def close(self) -> None:
        """Nothing to release: the engine and its pooled connections serve the next store
        of this process (:func:`_shared_engine`)."""

    def __enter__(self) -> AuditStore:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- run_logs ---------------------------------------------------------------------------
    def task_started(self, ctx: RunContext, task: Task, attempt: int) -> None:
        values = {
            "run_id": ctx.run_id,
            "job": ctx.job,
            "layer": task.layer,
            "table_name": task.table,
            "task": task.name,
            "attempt": attempt,
            "status": Status.RUNNING.value,
            "started_at": _now(),
            # the holder tells a dead attempt later
            "metrics": json.dumps({"holder": this_process(), **_origin(ctx)}),
        }
        row_id = self._write((sa.insert(self.t["run_logs"]), values))
        with self._lock:
            self._rows[(ctx.run_id, task.name, attempt)] = row_id

    def task_finished(self, ctx: RunContext, outcome: TaskOutcome) -> None:
        r = outcome.result
        values: dict[str, Any] = {
            "status": outcome.status.value,
            "ended_at": _now(),
            "error": redact_url(outcome.error) if outcome.error else None,
        }
        if r is not None:
            values |= {
                "rows_read": r.rows_read,
                "rows_written": r.rows_written,
                "rows_quarantined": r.rows_quarantined,
                "watermark_before": r.watermark_before,
                "watermark_after": r.watermark_after,
                "delta_version": r.delta_version,
                "metrics": json.dumps({**r.metrics, **_origin(ctx)}, default=str, sort_keys=True),
            }
        with self._lock:
            row_id = self._rows.pop((ctx.run_id, outcome.task.name, outcome.attempts), None)
        if row_id is None:  # skipped tasks never started: record them too
            values |= {
                "run_id": ctx.run_id,
                "job": ctx.job,
                "layer": outcome.task.layer,
                "table_name": outcome.task.table,
                "task": outcome.task.name,
                "attempt": outcome.attempts,
                "started_at": _now(),
            }
            if ctx.origin and r is None:
                values["metrics"] = json.dumps(_origin(ctx))
            self._write((sa.insert(self.t["run_logs"]), values))
        else:
            self._write((_by_id(self.t["run_logs"]), {"row_id": row_id, **values}))

    def _write(self, *stmts: sa.Executable | tuple[sa.Executable, Params]) -> int:
        """Run ``stmts`` in one transaction, each alone or with its parameters (a list of
        rows: one executemany); the primary key the first one inserted, else 0. Statements
        given their values as parameters are built once and compiled once (SQLAlchemy keeps
        the compiled form of a statement it has seen): half the cost of one with values
        built in."""
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    key = None
                    for i, stmt in enumerate(stmts):
                        done = (
                            conn.execute(*stmt) if isinstance(stmt, tuple) else conn.execute(stmt)
                        )
                        if i == 0 and done.is_insert and not done.context.executemany:
                            key = done.inserted_primary_key
                return int(key[0]) if key else 0
            except SQLAlchemyError as exc:
                # busy past the timeout, or a concurrent writer replaced the same check state
                # first: try again
                if attempt < 2 and (_busy(exc) or isinstance(exc, IntegrityError)):
                    time.sleep(1.0)
                    continue
                raise AuditError(f"cannot write the audit log: {_one_line(exc)}") from None
        return 0  # pragma: no cover - the loop returns or raises

    def run_logs(self, last: int | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        rl = self.t["run_logs"]
        stmt = sa.select(rl).order_by(rl.c.id.desc())
        if run_id:
            stmt = stmt.where(rl.c.run_id == run_id)
        if last:
            stmt = stmt.limit(last)
        try:
            with self.engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(stmt)]
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log: {_one_line(exc)}") from None
        return list(reversed(rows))

    def task_metrics(self, run_id: str, task: str) -> dict[str, Any] | None:
        """The metrics of the last successful attempt of ``task`` in run ``run_id`` (None:
        none succeeded)."""
        row = self.last_success(task, run_id)
        return None if row is None else dict(row["metrics"])

    def last_success(self, task: str, run_id: str | None = None) -> dict[str, Any] | None:
        """The run-log row of the latest successful attempt of ``task`` (in run ``run_id``,
        or in any run), its metrics decoded (None: it never succeeded)."""
        stmt = _last_success(self.t["run_logs"], in_run=run_id is not None)
        try:
            with self.engine.connect() as conn:
                row = conn.execute(stmt, {"task": task, "run_id": run_id}).first()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log: {_one_line(exc)}") from None
        if row is None:
            return None
        found = dict(row._mapping)
        found["metrics"] = dict(json.loads(found["metrics"] or "{}"))
        return found

    def last_durations(self) -> dict[str, float]:
        """Each task's seconds in its latest successful attempt that read or wrote rows (one
        with nothing to do says little of the next that has), else in its latest successful
        one, among the last :data:`RECENT_ATTEMPTS` attempts recorded (a bounded read however
        long the log)."""
        rl = self.t["run_logs"]
        newest = sa.select(sa.func.max(rl.c.id)).scalar_subquery()
        worked = sa.func.coalesce(rl.c.rows_read, 0) + sa.func.coalesce(rl.c.rows_written, 0) > 0
        stmt = (
            sa.select(rl.c.task, rl.c.started_at, rl.c.ended_at, worked)
            .where(rl.c.status == Status.SUCCESS.value, rl.c.id > newest - RECENT_ATTEMPTS)
            .where(rl.c.ended_at.is_not(None))
            .order_by(rl.c.id)
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log: {_one_line(exc)}") from None
        latest: dict[str, float] = {}
        working: dict[str, float] = {}
        for task, started, ended, did_work in rows:
            latest[task] = (ended - started).total_seconds()
            if did_work:
                working[task] = latest[task]
        return latest | working

    def dq_results(self, run_id: str) -> list[dict[str, Any]]:
        """The check results of one run, in the order they were recorded."""
        dq = self.t["dq_results"]
        stmt = sa.select(dq).where(dq.c.run_id == run_id).order_by(dq.c.id)
        try:
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(stmt)]
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the check results: {_one_line(exc)}") from None

    def record_checks(
        self, run_id: str, results: Iterable[tuple[dict[str, Any], Mapping[str, Any] | None]]
    ) -> None:
        """Check results, each with the check's new state (the columns of ``check_state``
        but name and times; None: forgotten, so the next run evaluates the check in full),
        in one transaction."""
        now = _now()
        cs, dq = self.t["check_state"], self.t["dq_results"]
        checked: list[dict[str, Any]] = []
        states: list[dict[str, Any]] = []
        for values, state in results:
            checked.append({"run_id": run_id, "checked_at": now, **values})
            if state is not None:
                name = values["check_name"]
                row = {"check_name": name, "run_id": run_id, "checked_at": now, **state}
                row["passed_at"] = now if state["status"] == "pass" else state.get("passed_at")
                row["full_at"] = now if state["mode"] == "full" else state.get("full_at")
                states.append(row)
        if not checked:
            return
        names = [row["check_name"] for row in checked]
        states = list({row["check_name"]: row for row in states}.values())  # the last stands
        # one statement each, whatever the number of checks (executemany)
        self._write(
            (sa.insert(dq), _same_keys(dq, checked)),
            (_forget_states(cs), {"names": names}),
            *([(sa.insert(cs), _same_keys(cs, states))] if states else []),
        )

    def check_states(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The recorded state of each named check that has one."""
        stmt, params = _check_states(self.t["check_state"]), {"names": list(names)}
        try:
            with self.engine.connect() as conn:
                return {r.check_name: dict(r._mapping) for r in conn.execute(stmt, params)}
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the check states: {_one_line(exc)}") from None

    def last_observed(self, check_name: str, before_run: str) -> float | None:
        """The value a check observed in the latest earlier run where it did not fail."""
        dq = self.t["dq_results"]
        stmt = (
            sa.select(dq.c.observed)
            .where(
                dq.c.check_name == check_name,
                dq.c.run_id != before_run,
                dq.c.status != "fail",
                dq.c.observed.is_not(None),
            )
            .order_by(dq.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else float(row[0])

    def abandon_dead_attempts(self) -> int:
        """Mark RUNNING attempts whose process is gone (killed, or the machine restarted
        under it) as ABANDONED, with the reason; returns how many. Attempts of other hosts
        are left alone: their process cannot be checked from here."""
        logs = self.t["run_logs"]
        stmt = sa.select(logs.c.id, logs.c.metrics).where(
            logs.c.status == Status.RUNNING.value, logs.c.ended_at.is_(None)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        dead = {}
        for row_id, metrics in rows:
            holder = str(json.loads(metrics or "{}").get("holder", ""))
            if holder and _gone(holder):
                dead[row_id] = holder
        for row_id, holder in dead.items():
            self._write(
                sa.update(logs)
                .where(logs.c.id == row_id)
                .values(
                    status=Status.ABANDONED.value,
                    ended_at=_now(),
                    error=f"abandoned: its process {holder} ended before the task did "
                    "(killed?); the next run redoes the work",
                )
            )
        return len(dead)

    # -- leases -----------------------------------------------------------------------------
    @contextmanager
    def lease(
        self, resource: str, run_id: str, *, wait_s: float = 30.0, ttl_s: float = 6 * 3600
    ) -> Iterator[None]:
        """Hold ``resource`` exclusively; wait up to ``wait_s`` for another holder to finish.

        A lease left by a dead process on this host, or past its expiry, is taken over.
        """
        holder = this_process()
        deadline = time.monotonic() + wait_s
        while not self._try_lease(resource, run_id, holder, ttl_s):
            if time.monotonic() >= deadline:
                owner = self._lease_owner(resource)
                raise TransientError(
                    f"{resource} is being written by run {owner}; wait for it to finish"
                )
            time.sleep(0.5)
        try:
            yield
        finally:
            self._write(
                (_release(self.t["leases"]), {"lease_resource": resource, "lease_holder": holder})
            )

    def _try_lease(self, resource: str, run_id: str, holder: str, ttl_s: float) -> bool:
        le = self.t["leases"]
        now = _now()
        try:
            with self.engine.begin() as conn:
                row = conn.execute(_lease_of(le), {"lease_resource": resource}).first()
                if row is not None and not _stale(row._mapping, now):
                    return False
                if row is not None:
                    conn.execute(sa.delete(le).where(le.c.resource == resource))
                lease = {"resource": resource, "run_id": run_id, "holder": holder}
                expires = now + timedelta(seconds=ttl_s)
                conn.execute(sa.insert(le), {**lease, "acquired_at": now, "expires_at": expires})
            return True
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            if _busy(exc):  # wait for the store like for the lease
                return False
            raise AuditError(f"cannot take a lease in the audit store: {_one_line(exc)}") from None

    def _lease_owner(self, resource: str) -> str:
        le = self.t["leases"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(le.c.run_id).where(le.c.resource == resource)).first()
        return row[0] if row else "?"


# -- the statements a run makes for every task, built once (their values are parameters) ----
Params = dict[str, Any] | list[dict[str, Any]]


@functools.cache
def _by_id(table: sa.Table) -> sa.Update:
    return sa.update(table).where(table.c.id == sa.bindparam("row_id"))


@functools.cache
def _last_success(rl: sa.Table, *, in_run: bool) -> sa.Select[Any]:
    stmt = sa.select(rl).where(
        rl.c.task == sa.bindparam("task"), rl.c.status == Status.SUCCESS.value
    )
    if in_run:
        stmt = stmt.where(rl.c.run_id == sa.bindparam("run_id"))
    return stmt.order_by(rl.c.id.desc()).limit(1)


@functools.cache
def _check_states(cs: sa.Table) -> sa.Select[Any]:
    return sa.select(cs).where(cs.c.check_name.in_(sa.bindparam("names", expanding=True)))


@functools.cache
def _forget_states(cs: sa.Table) -> sa.Delete:
    return sa.delete(cs).where(cs.c.check_name.in_(sa.bindparam("names", expanding=True)))


@functools.cache
def _lease_of(le: sa.Table) -> sa.Select[Any]:
    return sa.select(le).where(le.c.resource == sa.bindparam("lease_resource"))


@functools.cache
def _release(le: sa.Table) -> sa.Delete:
    return sa.delete(le).where(
        le.c.resource == sa.bindparam("lease_resource"), le.c.holder == sa.bindparam("lease_holder")
    )


def _same_keys(table: sa.Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every column any of them sets (NULL where a row does not): an
    executemany binds the same parameters for every row."""
    names = [c.name for c in table.columns if any(c.name in row for row in rows)]
    return [{name: row.get(name) for name in names} for row in rows]


def _origin(ctx: RunContext) -> dict[str, Any]:
    """Who started the run (a scheduler's ids), kept in every audit row's metrics."""
    return {"origin": ctx.origin} if ctx.origin else {}


def this_process() -> str:
    """``host:pid``: who holds a lease or runs a task attempt."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _stale(row: Any, now: datetime) -> bool:
    return bool(row["expires_at"] <= now or _gone(str(row["holder"])))


def _gone(holder: str) -> bool:
    """True when ``holder`` is a process of this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _one_line(exc: BaseException) -> str:
    """The driver's own error (SQLAlchemy wraps it), URLs redacted."""
    return redact_url(one_line(getattr(exc, "orig", None) or exc, 300))
