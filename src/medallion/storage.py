"""The lake: Delta tables under one URI (a folder or s3://...). The only deltalake user.

Locations are URIs joined with '/', never filesystem paths, so S3 works wherever a folder
does. A table's watermark lives in the Delta log as an app transaction, committed atomically
with the rows it describes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import (
    BloomFilterProperties,
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from medallion.errors import StorageError, one_line
from medallion.faults import crash_point
from medallion.remembered import Bounded, Remembered
from medallion.settings import Settings, redact_url

if TYPE_CHECKING:  # imported where a dataset is made: it imports pandas (0.2 s)
    import pyarrow.dataset as pads

log = logging.getLogger(__name__)

# Files of at most this size, written in key order, so that a MERGE rewrites only the files
# whose key range holds a touched key (delta-rs still reads every file to find them: it prunes
# by the source's key range only with a materialised source, slower at scale 10)
TARGET_FILE_BYTES = 8 << 20
CDF_KEY = "delta.enableChangeDataFeed"
# readers of a table read only its new files; a MERGE writes files of the same size as a write
# (delta-rs' MERGE otherwise writes what it rewrites as one file, the key order's ranges lost)
CDF = {CDF_KEY: "true", "delta.targetFileSize": str(TARGET_FILE_BYTES)}
# Rows per Parquet row group, each with a bloom filter of its first key column (see
# :func:`file_layout`): a read of a few keys skips the row groups that hold none of them
ROW_GROUP_ROWS = 16_384
BLOOM_FPP = 0.01  # per key looked up, the chance a row group not holding it is read anyway
# Commits that change no row: compaction and vacuum (`medallion maintain`), table properties
MAINTENANCE = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES"})
# commits whose change data feed delta-rs writes when CDF is on (an overwrite is all rows out
# and all rows in: cheaper to re-read than to diff)
_FED = frozenset({"MERGE", "DELETE", "UPDATE"})
# the rows of each change type an operation's metrics count (a type not named: none)
_COUNTED: dict[str, dict[str, str]] = {
    **{operation: {} for operation in MAINTENANCE},
    "WRITE": {"insert": "num_added_rows"},
    "DELETE": {"delete": "num_deleted_rows"},
    "UPDATE": {"update_preimage": "num_updated_rows", "update_postimage": "num_updated_rows"},
    "MERGE": {
        "insert": "num_target_rows_inserted",
        "delete": "num_target_rows_deleted",
        "update_preimage": "num_target_rows_updated",
        "update_postimage": "num_target_rows_updated",
    },
}
_CHANGE_TYPES = ("insert", "delete", "update_preimage", "update_postimage")
ADDED = ("insert", "update_postimage")  # change types that bring a row into the table
_TEXT = (pa.string(), pa.large_string(), pa.string_view())


@dataclass(frozen=True)
class LocalFiles:
    """The Parquet files of a lake scan as local paths; ``partitioned``: each file's partition
    values are in its path (``column=value/``), as delta-rs writes them."""

    paths: list[str]
    partitioned: bool


@dataclass(frozen=True)
class AppendedFiles:
    """The files of :meth:`DeltaHandle.appended` (paths relative to the table ``uri``, with
    their partition values as the log writes them), the table's schema and partition
    columns: what an engine elsewhere needs to read the same rows."""

    uri: str
    files: list[tuple[str, dict[str, str | None]]]
    schema: pa.Schema
    partitions: list[str]


@dataclass(frozen=True)
class _Scan:
    """What a lazy scan of a lake table reads: the snapshot (``uri`` at ``version``; None for
    the files some commits appended, then ``appended``), and its files as local paths, which
    DuckDB reads itself (its Parquet reader: 3x the speed of a pyarrow dataset scan; None on
    an object store)."""

    uri: str
    version: int | None
    local: LocalFiles | None
    appended: AppendedFiles | None = None


# each recent lazy scan made here, found by the dataset (what the engines are handed) and a
# snapshot's also by its table (uri and id), version and kind (strings as views or not)
_SCANS: Remembered[pads.Dataset, _Scan] = Remembered(kept=512)
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # how delta-rs names a NULL partition value


@dataclass(frozen=True)
class _Latest:
    """A local table opened at its latest version, and that version's commit file as it was
    (inode, size, modification time): a table dropped and made again has another file."""

    version: int
    commit: tuple[int, int, int]


# the latest snapshot of each local table opened here, shared by the handles that read it
# until a commit follows (a run opens a table about five times: 2-5 ms each, a stat 5 us)
_OPENED: Remembered[DeltaTable, _Latest] = Remembered(kept=128)
# the newest data commit of each table (uri, id) version asked about here: a run asks a
# hundred times, each a read of the last commits (0.4 ms)
_DATA_COMMITS: Bounded[tuple[str, str | None, int], tuple[dict[str, Any] | None, int | None]] = (
    Bounded(kept=1024)
)


def _commit_stamp(uri: str, version: int) -> tuple[int, int, int] | None:
    """The commit file of ``version`` of a local table (None: there is none)."""
    path = os.path.join(local_path(uri), "_delta_log", f"{version:020d}.json")
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def _still_latest(uri: str, latest: _Latest) -> bool:
    """Whether no commit followed ``latest`` (its commit file unchanged, no next one)."""
    stamp = _commit_stamp(uri, latest.version)
    return stamp == latest.commit and _commit_stamp(uri, latest.version + 1) is None


def _local_files(uri: str, files: list[str], partitions: list[str]) -> LocalFiles | None:
    # a NULL partition value is written as a name no reader types alike: left to pyarrow
    if is_object_store(uri) or not files or any(_NULL_PARTITION in f for f in files):
        return None
    folder = local_path(uri).rstrip("/")
    return LocalFiles([f"{folder}/{file.lstrip('/')}" for file in files], bool(partitions))


def local_parquet(dataset: pads.Dataset) -> LocalFiles | None:
    """The Parquet files (local paths) a lazy scan of a lake table in a folder reads, each
    whole (:meth:`DeltaHandle.relation`, :meth:`DeltaHandle.appended`); None for any other
    dataset. A table's files hold its rows as written: delta-rs writes no deletion vectors."""
    scan = _SCANS.of(dataset)
    return scan.local if scan is not None else None


def scan_location(dataset: pads.Dataset) -> tuple[str, int] | None:
    """The lake table URI and version a lazy scan of :meth:`DeltaHandle.relation` reads."""
    scan = _SCANS.of(dataset)
    return (scan.uri, scan.version) if scan is not None and scan.version is not None else None


def appended_files(dataset: pads.Dataset) -> AppendedFiles | None:
    """The files a dataset of :meth:`DeltaHandle.appended` reads; None for any other."""
    scan = _SCANS.of(dataset)
    return scan.appended if scan is not None else None


def _files_dataset(
    store: pafs.FileSystem,
    files: list[tuple[str, dict[str, str | None]]],
    schema: pa.Schema,
    partitions: list[str],
) -> pads.Dataset:
    """A dataset over Parquet ``files`` of a table, each file's partition columns filled in
    from its partition values."""
    import pyarrow.dataset as pads

    expressions = []
    for _, values in files:
        condition = pc.scalar(True)
        for column in partitions:
            value = values.get(column)
            field = pc.field(column)
            kind = schema.field(column).type
            condition = condition & (
                field.is_null() if value is None else field == pa.scalar(value).cast(kind)
            )
        expressions.append(condition)
    return pads.FileSystemDataset.from_paths(
        [path for path, _ in files],
        schema=schema,
        format=pads.ParquetFileFormat(),
        filesystem=store,
        partitions=expressions,
    )


Rows: TypeAlias = "pa.RecordBatchReader | pa.Table"


# object_store client settings (ClientConfigKey / RetryConfig), lower-case as delta-rs takes them
OBJECT_STORE_DEFAULTS = {
    "connect_timeout": "5s",
    "timeout": "120s",
    "max_retries": "3",
    "retry_timeout": "30s",
}


def is_object_store(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    """A local lake URI (a path, or ``file://``) as a filesystem path."""
    return urlsplit(uri).path if uri.startswith("file://") else uri


def app_id(layer: str, table: str) -> str:
    """The app transaction a layer records its progress under in a table's Delta log."""
    return f"medallion.{layer}.{table}"


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


@dataclass(frozen=True)
class Lake:
    """The lake root and the storage options (credentials, endpoint) to reach it.

    :meth:`table` opens a :class:`DeltaHandle`, which a task keeps for all its work on one
    table (writes go through it); the one-shot reads here open a handle for a single call.
    """

    uri: str
    storage_options: Mapping[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        """The lake the settings name, with the secret storage options unwrapped; on an object
        store, bounded timeouts and retries unless the settings choose their own (a dead
        endpoint must fail a task in seconds, not after delta-rs' default three minutes)."""
        options = {k: v.get_secret_value() for k, v in settings.storage_options.items()}
        if is_object_store(settings.lake_location):
            given = {k.lower() for k in options}
            options |= {k: v for k, v in OBJECT_STORE_DEFAULTS.items() if k not in given}
        return cls(settings.lake_location, options)

    def table_uri(self, layer: str, table: str) -> str:
        return join_uri(self.uri, layer, table)

    def probe(self) -> None:
        """Fail in one line now if the lake cannot be reached (a missing bucket, refused
        credentials, a dead endpoint), rather than in every task later."""
        self.open("bronze", "_probe")

    def table(self, layer: str, table: str) -> DeltaHandle:
        """The table, opened once: a consistent snapshot until the handle itself writes."""
        return DeltaHandle(self, layer, table)

    def open(self, layer: str, table: str, version: int | None = None) -> DeltaTable | None:
        """The Delta table (at ``version``, else the latest), or None when never written.

        The latest snapshot of a table in a folder is opened once and shared until a commit
        follows it (its next commit file is looked for): readers only read it, and a handle
        commits through an object of its own (:meth:`DeltaHandle._own`)."""
        uri = self.table_uri(layer, table)
        shared = version is None and not is_object_store(uri)
        if shared:
            found = _OPENED.by_key(uri)
            if found is not None and _still_latest(uri, found[1]):
                return found[0]
        options = dict(self.storage_options) if self.storage_options else None
        try:
            dt = DeltaTable(uri, version=version, storage_options=options)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise _failure("open", uri, exc, self.storage_options) from exc
        stamp = _commit_stamp(uri, dt.version()) if shared else None
        if stamp is not None:
            _OPENED.add(dt, _Latest(dt.version(), stamp), uri)
        return dt

    # -- one-shot conveniences ---------------------------------------------------------------
    def version(self, layer: str, table: str) -> int | None:
        return self.table(layer, table).version

    def app_version(self, layer: str, table: str, app_id: str) -> int | None:
        return self.table(layer, table).app_version(app_id)

    def schema(self, layer: str, table: str) -> pa.Schema | None:
        return self.table(layer, table).schema

    def read(
        self,
        layer: str,
        table: str,
        columns: list[str] | None = None,
        filters: list[tuple[str, str, Any]] | None = None,
        version: int | None = None,
    ) -> pa.Table | None:
        return self.table(layer, table).read(columns, filters, version=version)


class DeltaHandle:
    """One Delta table, opened once (as delta-rs' ``DeltaTable`` is): versions, app
    transactions, reads and changes all see the same snapshot, and the handle moves to the
    version it writes. ``exists`` is False until the table is first written."""

    def __init__(self, lake: Lake, layer: str, name: str) -> None:
        self.lake, self.layer, self.name = lake, layer, name
        self.uri = lake.table_uri(layer, name)
        self._dt = lake.open(layer, name)
        # whether no other handle can hold ``_dt`` (only a folder's tables are shared)
        self._owned = is_object_store(self.uri)

    @property
    def exists(self) -> bool:
        return self._dt is not None

    @property
    def identity(self) -> str | None:
        """The table's id, new when it is created again (an overwrite keeps it)."""
        return None if self._dt is None else str(self._dt.metadata().id)

    @property
    def version(self) -> int | None:
        return None if self._dt is None else self._dt.version()

    @property
    def data_version(self) -> int | None:
        """The latest version that changed rows: maintenance commits (compaction, vacuum)
        after it are skipped, so a reader that records the versions it read sees no change."""
        dt = self._dt
        if dt is None:
            return None
        commit, oldest = self._latest_data_commit()
        if commit is not None:
            return int(commit.get("version", dt.version()))
        return oldest - 1 if oldest is not None else dt.version()  # the first one's parent

    def data_commit(self) -> dict[str, Any] | None:
        """The commit information (operation, version, our metadata) of :attr:`data_version`;
        None when the table does not exist or holds only maintenance commits."""
        return None if self._dt is None else self._latest_data_commit()[0]

    def _latest_data_commit(self) -> tuple[dict[str, Any] | None, int | None]:
        """The newest commit that is no maintenance, else None and the oldest version; asked
        once per table version in a process (a version's history never changes)."""
        assert self._dt is not None
        key = (self.uri, self.identity, self._dt.version())
        found = _DATA_COMMITS.get(key)
        if found is None:
            found = self._read_latest_data_commit()
            _DATA_COMMITS.put(key, found)
        return found

    def _read_latest_data_commit(self) -> tuple[dict[str, Any] | None, int | None]:
        limit = 8
        while True:
            history = self._history(limit)
            for commit in history:
                if commit.get("operation") not in MAINTENANCE:
                    return commit, None
            if len(history) < limit:
                return None, int(history[-1].get("version", 0)) if history else None
            limit *= 4

    def _history(self, limit: int) -> list[dict[str, Any]]:
        assert self._dt is not None
        try:
            return list(self._dt.history(limit=limit))
        except (DeltaError, OSError) as exc:
            raise _failure("read the history of", self.uri, exc, self.lake.storage_options) from exc

    def app_version(self, app_id: str) -> int | None:
        """The version recorded by app transaction ``app_id``, None if never written."""
        return None if self._dt is None else self._dt.transaction_version(app_id)

    @property
    def schema(self) -> pa.Schema | None:
        """The table's Arrow schema (no data read); None when it was never written."""
        return None if self._dt is None else pa.schema(self._dt.schema().to_arrow())

    def read(
        self,
        columns: list[str] | None = None,
        filters: list[tuple[str, str, Any]] | None = None,
        *,
        version: int | None = None,
    ) -> pa.Table | None:
        """(Some columns of) the table as Arrow, as of ``version`` if given; None when the
        table does not exist."""
        dt = self._dt
        if dt is not None and version is not None and version != dt.version():
            dt = self.lake.open(self.layer, self.name, version)
        if dt is None:
            return None
        try:
            return dt.to_pyarrow_table(columns=columns, filters=filters or None)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("read", self.uri, exc, self.lake.storage_options) from exc

    def drop(self) -> None:
        """Delete the whole table, its log included: for scratch tables only. Best effort: a
        file left behind is only space, reclaimed with its folder."""
        dt = self._dt or self.lake.open(self.layer, self.name)
        if dt is None:
            return
        try:
            files = dt.to_pyarrow_dataset().filesystem  # delta-rs' own store: local or S3
            found = files.get_file_info(pafs.FileSelector("", recursive=True))
            for info in found:
                if info.type == pafs.FileType.File:
                    files.delete_file(info.path)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            log.warning("%s: not deleted (%s)", self.uri, one_line(exc))
        self._dt = None

    def dataset(self, version: int | None = None) -> pads.Dataset | None:
        """This snapshot (or ``version``) as a lazy Arrow dataset: a scan reads only the
        columns and files it needs. None when the table does not exist."""
        return self._dataset(version, views=False)

    def relation(self, version: int | None = None) -> pads.Dataset | None:
        """:meth:`dataset` for DuckDB: its strings typed as views, the type delta-rs' files
        hold, so that a filter DuckDB pushes into the scan compares like with like (string
        against string_view fails; pyarrow's own filters, in turn, cannot take views)."""
        return self._dataset(version, views=True)

    def _dataset(self, version: int | None, *, views: bool) -> pads.Dataset | None:
        """The snapshot's lazy scan; made once per table, version and kind in a process (a
        run's tasks hand the same snapshot to a hundred queries: about 10 ms each to make at
        scale 10). The table's id is part of the key: a table dropped and made again at the
        same place starts its versions anew."""
        dt = self._dt
        if dt is not None and version is not None and version != dt.version():
            dt = self.lake.open(self.layer, self.name, version)
        if dt is None:
            return None
        metadata = dt.metadata()
        key = (self.uri, str(metadata.id), dt.version(), views)  # its stub says int: a UUID
        found = _SCANS.by_key(key)
        if found is not None:
            return found[0]
        try:
            dataset = dt.to_pyarrow_dataset(schema=_with_string_views(dt) if views else None)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("read", self.uri, exc, self.lake.storage_options) from exc
        local = _local_files(self.uri, dataset.files, metadata.partition_columns)
        _SCANS.add(dataset, _Scan(self.uri, dt.version(), local), key)
        return dataset

    def appended(self, after_version: int | None, until: int | None = None) -> pads.Dataset | None:
        """The rows appended after ``after_version`` (None: since the table was created) up
        to ``until`` (this snapshot's version when None), as a lazy dataset over exactly the
        files those commits added, read from their log entries: an engine running elsewhere
        reads the same files by path (:func:`appended_files`), so a change set of an
        append-only table (Bronze) never passes through this process. None when a commit in
        between did more than append (a compaction, which adds no rows, is skipped) or its
        log entry is gone."""
        dt = self._dt
        if dt is None:
            return None
        current = dt.version() if until is None else until
        start = 0 if after_version is None else after_version + 1
        files: list[tuple[str, dict[str, str | None]]] = []
        for version in range(start, current + 1):
            added = self._added_by(version)
            if added is None:
                return None
            files += added
        schema = pa.schema(dt.schema().to_arrow())
        partitions = dt.metadata().partition_columns
        dataset = _files_dataset(self._store(), files, schema, partitions)
        local = _local_files(self.uri, [path for path, _ in files], partitions)
        appended = AppendedFiles(self.uri, files, schema, partitions)
        _SCANS.add(dataset, _Scan(self.uri, None, local, appended))
        return dataset

    def _added_by(self, version: int) -> list[tuple[str, dict[str, str | None]]] | None:
        """The files commit ``version`` added, with their partition values; None when it did
        more than append or its log entry is gone."""
        try:
            with self._store().open_input_stream(f"_delta_log/{version:020d}.json") as entry:
                actions = [json.loads(line) for line in entry.read().splitlines() if line.strip()]
        except (DeltaError, OSError, pa.ArrowException, ValueError):
            return None
        info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        operation = info.get("operation")
        mode = (info.get("operationParameters") or {}).get("mode")
        if operation in MAINTENANCE:
            return []
        if operation != "WRITE" or mode not in ("Append", "ErrorIfExists"):
            return None
        if any("remove" in a or "cdc" in a for a in actions):
            return None
        return [
            (a["add"]["path"], a["add"].get("partitionValues") or {})
            for a in actions
            if "add" in a and a["add"].get("dataChange", True)
        ]

    @property
    def has_change_feed(self) -> bool:
        """Whether the table records its changes (``changes()`` then reads only new files)."""
        if self._dt is None:
            return False
        return self._dt.metadata().configuration.get(CDF_KEY) == "true"

    def changes(
        self,
        after_version: int | None,
        columns: list[str] | None = None,
        *,
        until: int | None = None,
        with_change_type: bool = False,
        with_commit_version: bool = False,
    ) -> tuple[pa.Table | None, int | None]:
        """Rows changed after ``after_version`` (all when None) up to ``until`` (this
        snapshot's version when None), and the version read up to.

        Reads the change data feed, so only the new files are scanned; ``_change_type``
        (insert, update_preimage, update_postimage, delete) and ``_commit_version`` are kept
        on request.
        """
        reader, current = self.change_reader(
            after_version,
            columns,
            until=until,
            with_change_type=with_change_type,
            with_commit_version=with_commit_version,
        )
        return (None if reader is None else reader.read_all()), current

    def change_reader(
        self,
        after_version: int | None,
        columns: list[str] | None = None,
        *,
        until: int | None = None,
        with_change_type: bool = False,
        with_commit_version: bool = False,
    ) -> tuple[pa.RecordBatchReader | None, int | None]:
        """:meth:`changes` as a stream of batches, for change sets too large to hold at once
        (a failed read raises a StorageError as :meth:`changes` does)."""
        dt = self._dt
        if dt is None:
            return None, None
        current = dt.version() if until is None else until
        start = 0 if after_version is None else after_version + 1
        if start > current:
            return None, current
        try:
            cdf = dt.load_cdf(starting_version=start, ending_version=current, columns=columns)
            reader = pa.RecordBatchReader.from_stream(cdf)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("read changes of", self.uri, exc, self.lake.storage_options) from exc
        wanted = {"_change_type": with_change_type, "_commit_version": with_commit_version}
        keep = [n for n in reader.schema.names if wanted.get(n, not n.startswith("_commit_"))]
        schema = pa.schema([reader.schema.field(n) for n in keep])

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for batch in reader:
                    yield batch.select(keep)
            except (DeltaError, OSError, pa.ArrowException) as exc:
                raise _failure("read changes of", self.uri, exc, self.lake.storage_options) from exc

        return pa.RecordBatchReader.from_batches(schema, batches()), current

    def feed(self, after_version: int | None) -> Changes | None:
        """The rows this snapshot gained and lost after ``after_version`` (all rows gained when
        None), or None when the log cannot say exactly: a commit in between that is neither an
        append nor, on a table with the change data feed on, a MERGE, DELETE or UPDATE (an
        overwrite, a restore, a table property change), a feed that cannot be read, or one
        that does not hold the rows the commits' metrics count (delta-rs writes the feed of
        an UPDATE as a set difference, which loses rows of a table holding duplicates).

        Appends need no change data feed: the rows they add are their new files.
        """
        dt = self._dt
        if dt is None or (after_version is not None and after_version > dt.version()):
            return None  # (a version ahead of the table: it was replaced by an older one since)
        current = dt.version()
        if after_version is None:
            rows = self.read()
            assert rows is not None
            return Changes(rows, rows.schema.empty_table(), None, current)
        rows = self._fed_rows(dt, after_version)
        if rows is None:
            return None
        added = pc.is_in(rows["_change_type"], pa.array(ADDED))
        rows = rows.drop_columns(["_change_type", "_commit_version"])
        return Changes(rows.filter(added), rows.filter(pc.invert(added)), after_version, current)

    def _fed_rows(self, dt: DeltaTable, after_version: int) -> pa.Table | None:
        """The change feed after ``after_version`` with its change types and versions, when
        it is exact (see :meth:`feed`)."""
        if after_version == dt.version():
            empty = pa.schema(dt.schema().to_arrow()).empty_table()
            return empty.append_column("_change_type", pa.array([], pa.string())).append_column(
                "_commit_version", pa.array([], pa.int64())
            )
        commits = self._fed_commits(dt, after_version)
        if commits is None:
            return None
        try:
            rows, _ = self.changes(after_version, with_change_type=True, with_commit_version=True)
        except StorageError as exc:
            log.info("%s: no change feed after version %s (%s)", self.uri, after_version, exc)
            return None
        assert rows is not None
        rows = _without_views(rows)
        if not _accounted(rows, commits):
            log.info("%s: the change feed after version %s misses rows", self.uri, after_version)
            return None
        return rows

    def feeds_exactly(self, after_version: int) -> bool:
        """Whether the change data feed after ``after_version`` holds only the rows that
        changed, from the log alone (see :meth:`feed`): not after an overwrite, whose feed is
        the whole table out and in again."""
        return self._dt is not None and self._fed_commits(self._dt, after_version) is not None

    def _fed_commits(self, dt: DeltaTable, after_version: int) -> list[dict[str, Any]] | None:
        """The commits after ``after_version`` when each has an exact change feed (or changes
        no row: maintenance), else None."""
        cdf = self.has_change_feed
        try:
            commits = dt.history(dt.version() - after_version)
        except (DeltaError, OSError) as exc:
            raise _failure("read the log of", self.uri, exc, self.lake.storage_options) from exc
        newer = [c for c in commits if c.get("version", -1) > after_version]
        if len(newer) != dt.version() - after_version:
            return None  # commits missing from the log (cleaned up): nothing to go by
        for commit in newer:
            operation = commit.get("operation")
            mode = (commit.get("operationParameters") or {}).get("mode")
            appended = operation == "WRITE" and mode == "Append"
            if not (appended or operation in MAINTENANCE or (cdf and operation in _FED)):
                return None
        return newer

    def read_matching(
        self, column: str, values: pa.Array | pa.ChunkedArray, columns: list[str] | None = None
    ) -> pa.Table | None:
        """(Some columns of) the rows whose ``column`` is one of ``values`` (NULL matching a
        NULL among them); None when the table does not exist. Only the matching rows are
        kept in memory."""
        dataset = self.dataset()
        if dataset is None:
            return None
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        try:
            kind = dataset.schema.field(column).type
            field = pc.field(column)
            if kind in _TEXT:  # files may hold string views, which is_in cannot compare
                kind, field = pa.large_string(), field.cast(pa.large_string())
            return dataset.to_table(columns=columns, filter=field.isin(values.cast(kind)))
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("read", self.uri, exc, self.lake.storage_options) from exc

    def append(
        self,
        data: Rows,
        *,
        partition_by: list[str] | None = None,
        transactions: Mapping[str, int],
        expected: Mapping[str, int | None],
        metadata: Mapping[str, Any],
        evolve_schema: bool = False,
        configuration: Mapping[str, str] | None = None,
        key: Sequence[str] = (),
    ) -> int:
        """Append in one commit that also records ``transactions`` (app id -> version), the
        files laid out for lookups by ``key`` (:func:`file_layout`).

        Fails if another writer moved one of those app ids since we read its ``expected``
        version (read afresh here, not from this snapshot), so two concurrent writers can never
        both append the same rows. Returns the new table version.
        """
        self.expect(expected)
        return self._write(
            data,
            mode="append",
            partition_by=partition_by,
            props=_commit_props(transactions, metadata),
            schema_mode="merge" if evolve_schema else None,
            configuration=configuration,
            key=key,
        )

    def expect(self, expected: Mapping[str, int | None]) -> None:
        """Fail unless each app id is still at its ``expected`` version (read afresh, not from
        this snapshot): what an append checks before it commits, whoever writes the rows."""
        latest = self.lake.open(self.layer, self.name)
        for app, version in expected.items():
            current = None if latest is None else latest.transaction_version(app)
            if current != version:
                raise StorageError(
                    f"{self.uri} was written by another run meanwhile ({app} at {current}, "
                    f"expected {version}); re-run to continue from its state"
                )

    def overwrite(
        self,
        data: Rows,
        *,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        configuration: Mapping[str, str] | None = None,
        key: Sequence[str] = (),
    ) -> int:
        """Replace the table's content (schema too) in one commit recording ``transactions``
        (app id -> version), the files laid out for lookups by ``key``."""
        return self._write(
            data,
            mode="overwrite",
            partition_by=None,
            props=_commit_props(transactions, metadata),
            schema_mode="overwrite",
            configuration=configuration,
            key=key,
        )

    def _write(
        self,
        data: Rows,
        *,
        mode: Literal["append", "overwrite"],
        partition_by: list[str] | None,
        props: CommitProperties,
        schema_mode: Literal["merge", "overwrite"] | None,
        configuration: Mapping[str, str] | None = None,
        key: Sequence[str] = (),
    ) -> int:
        options = dict(self.lake.storage_options) if self.lake.storage_options else None
        try:
            self._configure(configuration or {})
            write_deltalake(
                self.uri,
                data,
                mode=mode,
                partition_by=partition_by,
                schema_mode=schema_mode,
                storage_options=options,
                commit_properties=props,
                configuration=configuration,
                target_file_size=TARGET_FILE_BYTES,
                writer_properties=file_layout(key),
            )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("write", self.uri, exc, self.lake.storage_options) from exc
        self._move_to_latest()  # the handle moves to what it wrote
        assert self._dt is not None
        return self._dt.version()

    def _configure(self, configuration: Mapping[str, str]) -> None:
        """Set the table properties ``configuration`` names that an existing table lacks (a
        write sets them only on the table it creates), in a commit that changes no row."""
        if self._dt is None:
            return
        held = self._dt.metadata().configuration
        missing = {k: v for k, v in configuration.items() if held.get(k) != v}
        if missing:
            self._own("configure").alter.set_table_properties(missing)

    def files_under(self, folder: str) -> list[tuple[str, int]]:
        """The Parquet files under ``folder`` (relative to the table's root) and their sizes:
        what an engine running elsewhere wrote there (none when the table's folder is not
        there: an empty result written for a table never written leaves no file)."""
        try:
            found = self._store().get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except TableNotFoundError:
            return []
        except (DeltaError, OSError) as exc:
            where = join_uri(self.uri, folder)
            raise _failure("list", where, exc, self.lake.storage_options) from exc
        return sorted(
            (info.path, info.size or 0)
            for info in found
            if info.type == pafs.FileType.File and info.path.endswith(".parquet")
        )

    def discard(self, folder: str) -> None:
        """Delete ``folder`` (relative to the table's root): files an engine wrote there that
        no commit took. Best effort: a file left is only space, which vacuum reclaims."""
        try:
            if is_object_store(self.uri):
                self._store().delete_dir(folder)
            else:  # delta-rs' store deletes the files of a local folder, not the folder
                shutil.rmtree(local_path(join_uri(self.uri, folder)), ignore_errors=True)
        except TableNotFoundError:
            return  # the table's folder is not there: nothing was written in it
        except (DeltaError, OSError, pa.ArrowException) as exc:
            log.warning("%s/%s: not deleted (%s)", self.uri, folder, one_line(exc))

    def _store(self) -> pafs.FileSystem:
        """The table's folder as a filesystem (delta-rs' own store: local or S3)."""
        options = dict(self.lake.storage_options) if self.lake.storage_options else None
        return pafs.PyFileSystem(DeltaStorageHandler(self.uri, options))

    def adopt(
        self,
        files: list[tuple[str, int]],
        schema: pa.Schema,
        *,
        mode: Literal["append", "overwrite"],
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        configuration: Mapping[str, str] | None = None,
    ) -> int:
        """Commit Parquet ``files`` (paths relative to the table's root, sizes) that an engine
        running elsewhere wrote in the table's folder, as the table's new content
        (``overwrite``, the schema too) or as new rows (``append``), in one commit recording
        ``transactions``: the rows never pass through this process, only the files' footers
        (each file's row count and statistics). Every column is stored nullable, as a write
        of Arrow rows stores it. Returns the new version."""
        schema = nullable(schema)
        if mode == "append" and self.schema is not None and self.schema != schema:
            raise StorageError(  # what a server wrote is checked here, whatever it accepted
                f"cannot append to {self.uri}: its columns are {_columns(self.schema)}, the "
                f"rows' are {_columns(schema)}"
            )
        crash_point("lake.before_adopt")  # the files are written, the commit not made
        store = self._store() if files else None  # an empty result wrote no folder
        actions = [_add_action(store, path, size, schema) for path, size in files if store]
        props = _commit_props(transactions, metadata)
        delta_schema = DeltaSchema.from_arrow(schema)
        try:
            if self._dt is None or (mode == "overwrite" and self.schema != schema):
                create_table_with_add_actions(
                    self.uri,
                    delta_schema,
                    actions,
                    mode="overwrite" if self._dt is not None else "error",
                    configuration=configuration,
                    storage_options=dict(self.lake.storage_options or {}) or None,
                    commit_properties=props,
                )
            else:
                changes: list[AddAction | RemoveAction] = [*actions]
                self._own("commit files to").create_write_transaction(
                    changes, mode=mode, schema=delta_schema, commit_properties=props
                )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("commit files to", self.uri, exc, self.lake.storage_options) from exc
        self._move_to_latest()
        assert self._dt is not None
        return self._dt.version()

    def merge(
        self,
        source: Rows,
        plan: MergePlan,
        *,
        transactions: Mapping[str, int],
        metadata: Mapping[str, Any],
        key: Sequence[str] | None = None,
    ) -> MergeResult:
        """MERGE ``source`` (alias ``s``) into the table (alias ``t``) in one commit, the
        files it writes laid out for lookups by ``key`` (:func:`file_layout`; by default the
        plan's keys).

        A MERGE that changes no row still commits (an empty one), so that ``transactions``
        always record the progress.
        """
        dt = self._own("merge into")
        before = dt.version()
        merger = dt.merge(
            source,
            plan.predicate,
            source_alias="s",
            target_alias="t",
            commit_properties=_commit_props(transactions, metadata),
            writer_properties=file_layout(plan.keys if key is None else key),
        )
        for predicate in plan.matched_deletes:
            merger = merger.when_matched_delete(predicate)
        for predicate, updates in plan.matched_updates:
            merger = merger.when_matched_update(dict(updates), predicate)
        for predicate, values in plan.not_matched_inserts:
            merger = merger.when_not_matched_insert(dict(values), predicate)
        try:
            metrics = merger.execute()
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("merge into", self.uri, exc, self.lake.storage_options) from exc
        if dt.version() == before:  # delta-rs skips the commit of a MERGE that changed nothing
            return MergeResult.of(self.record(transactions, metadata), metrics)
        return MergeResult.of(dt.version(), metrics)

    def files(self) -> tuple[int, int]:
        """How many data files the current version has, and their bytes."""
        if self._dt is None:
            return 0, 0
        actions = self._add_actions()
        sizes = actions["size_bytes"].to_pylist() if actions.num_rows else []
        return len(sizes), int(sum(s or 0 for s in sizes))

    def row_count(self) -> int | None:
        """Rows of this snapshot from the log's file statistics (no data read); None when the
        table does not exist or a file was written without statistics."""
        if self._dt is None:
            return None
        actions = self._add_actions()
        if actions.num_rows == 0:
            return 0
        counts = actions["num_records"]
        return None if counts.null_count else int(pc.sum(counts).as_py() or 0)

    def value_range(self, column: str) -> tuple[Any, Any] | None:
        """The smallest and largest value of ``column`` in this snapshot, from the log's file
        statistics (no data read); None when they cannot say: no table or no row, a file
        without statistics for it, a NULL in it, or a column whose statistics may be truncated
        (text)."""
        if self._dt is None:
            return None
        actions = self._add_actions()
        low, high = f"min.{column}", f"max.{column}"
        if actions.num_rows == 0 or not {low, high} <= set(actions.column_names):
            return None
        kind = actions.schema.field(low).type
        if not (pa.types.is_date(kind) or pa.types.is_integer(kind)):
            return None
        lows, highs = actions[low], actions[high]
        nulls = (
            actions[f"null_count.{column}"]
            if f"null_count.{column}" in actions.column_names
            else None
        )
        if lows.null_count or highs.null_count or nulls is None or pc.sum(nulls).as_py():
            return None  # a file without statistics, or NULLs (which no range holds)
        return pc.min(lows).as_py(), pc.max(highs).as_py()

    def _add_actions(self) -> pa.Table:
        """The files of this snapshot, one row each, with their statistics (from the log)."""
        assert self._dt is not None
        try:
            # not pa.table(): it asks pandas whether this is a frame (importing it: 0.2 s)
            return pa.RecordBatchReader.from_stream(
                self._dt.get_add_actions(flatten=True)
            ).read_all()
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("read the log of", self.uri, exc, self.lake.storage_options) from exc

    def compact(
        self, z_order: list[str] | None, metadata: Mapping[str, Any], key: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Rewrite the small files into large ones (ordered by ``z_order`` when given, laid
        out for lookups by ``key``) in one commit that changes no row (``dataChange`` false:
        change-data-feed readers skip it)."""
        dt = self._own("compact")
        props = _commit_props({}, metadata)
        layout = file_layout(key)
        try:
            if z_order:
                metrics = dt.optimize.z_order(
                    z_order, writer_properties=layout, commit_properties=props
                )
            else:
                metrics = dt.optimize.compact(writer_properties=layout, commit_properties=props)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise _failure("compact", self.uri, exc, self.lake.storage_options) from exc
        self._move_to_latest()
        return dict(metrics)

    def vacuum(self, retention_hours: float, metadata: Mapping[str, Any]) -> int:
        """Delete the files no version newer than ``retention_hours`` uses, and the files no
        commit took (a result an engine wrote for a run that crashed before committing it)
        older than that; how many. The caller guards short retentions (time travel and
        lagging readers need the files)."""
        dt = self._own("vacuum")
        try:
            deleted = dt.vacuum(
                retention_hours=int(retention_hours),
                dry_run=False,
                enforce_retention_duration=False,
                full=True,
                commit_properties=_commit_props({}, metadata),
            )
        except (DeltaError, OSError) as exc:
            raise _failure("vacuum", self.uri, exc, self.lake.storage_options) from exc
        self._move_to_latest()
        return len(deleted)

    def checkpoint(self) -> None:
        """Write a checkpoint of the current version (app transactions included) and delete
        the log entries older than the table's log retention that it makes unnecessary."""
        dt = self._own("checkpoint")
        try:
            dt.create_checkpoint()
            dt.cleanup_metadata()
        except (DeltaError, OSError) as exc:
            raise _failure("checkpoint", self.uri, exc, self.lake.storage_options) from exc

    def _own(self, action: str) -> DeltaTable:
        """This snapshot as an object no other handle holds, to commit through: delta-rs moves
        the object a commit goes through to the new version, and :meth:`Lake.open` shares a
        table's latest snapshot among the handles reading it."""
        if self._dt is None:
            raise StorageError(f"cannot {action} {self.uri}: no such table")
        if not self._owned:  # the same version, opened anew: an object of this handle's
            self._dt = self.lake.open(self.layer, self.name, self._dt.version())
            assert self._dt is not None
            self._owned = True
        return self._dt

    def _move_to_latest(self) -> None:
        self._dt = self.lake.open(self.layer, self.name)
        self._owned = is_object_store(self.uri)

    def record(self, transactions: Mapping[str, int], metadata: Mapping[str, Any]) -> int:
        """Commit ``transactions`` with no data change (an empty append): progress recorded
        when there was nothing to write. Returns the new version."""
        if self._dt is None:
            raise StorageError(f"cannot record progress in {self.uri}: no such table")
        empty = pa.schema(self._dt.schema().to_arrow()).empty_table()
        props = _commit_props(transactions, metadata)
        return self._write(empty, mode="append", partition_by=None, props=props, schema_mode=None)


def file_layout(key: Sequence[str]) -> WriterProperties:
    """How the Parquet files of a table keyed by ``key`` are written: row groups of
    :data:`ROW_GROUP_ROWS` rows, each with a bloom filter of the key's first column (the column
    every key lookup filters by, :func:`medallion.engine.read_matching`). A key lookup then
    reads only the row groups that may hold one of its keys, so a small change reads a small
    part of each table it touches (DuckDB probes the filters of an ``IN`` list; min/max
    statistics cannot skip anything for random keys). No key: the row groups alone."""
    bloom = BloomFilterProperties(True, BLOOM_FPP, ROW_GROUP_ROWS)
    columns = {key[0]: ColumnProperties(bloom_filter_properties=bloom)} if key else None
    return WriterProperties(max_row_group_size=ROW_GROUP_ROWS, column_properties=columns)


def _accounted(rows: pa.Table, commits: list[dict[str, Any]]) -> bool:
    """True when the feed ``rows`` hold, per commit and change type, as many rows as the
    commit's metrics count."""
    counts = rows.group_by(["_commit_version", "_change_type"]).aggregate([([], "count_all")])
    held = {
        (v, t): n
        for v, t, n in zip(
            counts["_commit_version"].to_pylist(),
            counts["_change_type"].to_pylist(),
            counts["count_all"].to_pylist(),
            strict=True,
        )
    }
    for commit in commits:
        metrics = commit.get("operationMetrics") or {}
        counted = _COUNTED[commit["operation"]]
        for change in _CHANGE_TYPES:
            metric = counted.get(change)
            expected = metrics.get(metric) if metric else 0
            if expected is None or held.get((commit["version"], change), 0) != int(expected):
                return False
    return True


def _without_views(table: pa.Table) -> pa.Table:
    """String and binary views (as the change data feed reads them) as plain arrays, which
    every Arrow kernel takes, as the table reads do."""
    plain = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
    schema = pa.schema([f.with_type(plain.get(f.type, f.type)) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


@dataclass(frozen=True)
class Changes:
    """What a table gained (inserts, update postimages) and lost (deletes, update preimages)
    after version ``since`` (None: since it was created) up to ``version``; as multisets,
    the table at ``version`` is the table at ``since`` plus ``added`` minus ``removed``."""

    added: pa.Table
    removed: pa.Table
    since: int | None
    version: int

    @property
    def num_rows(self) -> int:
        return int(self.added.num_rows + self.removed.num_rows)


@dataclass(frozen=True)
class MergeResult:
    """What one MERGE did (from delta-rs's metrics)."""

    version: int
    source_rows: int
    inserted: int
    updated: int
    deleted: int
    files_added: int
    files_removed: int

    @classmethod
    def of(cls, version: int, metrics: Mapping[str, Any]) -> MergeResult:
        def n(key: str) -> int:
            return int(metrics.get(key) or 0)

        return cls(
            version,
            n("num_source_rows"),
            n("num_target_rows_inserted"),
            n("num_target_rows_updated"),
            n("num_target_rows_deleted"),
            n("num_target_files_added"),
            n("num_target_files_removed"),
        )


@dataclass(frozen=True)
class MergePlan:
    """A MERGE as data: the key columns a stored row matches a source row by (equal values:
    a NULL matches nothing) and ordered (condition, assignments) clauses."""

    keys: tuple[str, ...]
    matched_updates: tuple[tuple[str | None, Mapping[str, str]], ...] = ()
    not_matched_inserts: tuple[tuple[str | None, Mapping[str, str]], ...] = ()
    matched_deletes: tuple[str | None, ...] = ()  # conditions under which a match is deleted

    @property
    def predicate(self) -> str:
        """The join condition, over target ``t`` and source ``s``."""
        return " AND ".join(f"t.{k} = s.{k}" for k in self.keys)  # plain identifiers


def _with_string_views(dt: DeltaTable) -> pa.Schema:
    """The table's schema with its strings read as views."""
    text = (pa.string(), pa.large_string())
    schema = pa.schema(dt.schema().to_arrow())
    return pa.schema(f.with_type(pa.string_view()) if f.type in text else f for f in schema)


def _commit_props(transactions: Mapping[str, int], metadata: Mapping[str, Any]) -> CommitProperties:
    return CommitProperties(
        app_transactions=[Transaction(app_id=k, version=v) for k, v in transactions.items()],
        custom_metadata={
            k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in metadata.items()
        },
    )


def _failure(
    action: str, uri: str, exc: BaseException, options: Mapping[str, str] | None
) -> StorageError:
    """One line a user can act on: a missing bucket, refused credentials and an unreachable
    endpoint are named as such (delta-rs' own text is long and nested)."""
    text = one_line(exc)
    if is_object_store(uri):
        parts = urlsplit(uri)
        endpoint = _endpoint(options)
        if "404 Not Found" in text and "list request" in text:
            return StorageError(
                f"the bucket {parts.netloc!r} does not exist at {endpoint}: create it, or "
                "point lake_uri at an existing one"
            )
        if "403 Forbidden" in text or "necessary privileges" in text:
            return StorageError(
                f"the object store at {endpoint} refused access to {uri} (HTTP 403): check "
                "the credentials (storage_options or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            )
        if "error sending request" in text or "Connect" in text or "timed out" in text:
            return StorageError(
                f"cannot reach the object store at {endpoint} to {action} {uri}: check "
                "AWS_ENDPOINT_URL and that the server is up"
            )
    return StorageError(f"cannot {action} {uri}: {text}")


def _endpoint(options: Mapping[str, str] | None) -> str:
    for key, value in (options or {}).items():
        if key.lower() in ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint"):
            return redact_url(value)
    return "the default AWS endpoint"


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)


def nullable(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field, nested ones too, nullable (as Arrow writes store them)."""
    return pa.schema([_nullable_field(f) for f in schema])


def _nullable_field(field: pa.Field) -> pa.Field:
    kind = field.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = pa.list_(_nullable_field(kind.value_field))
    elif pa.types.is_struct(kind):
        kind = pa.struct([_nullable_field(f) for f in kind])
    return pa.field(field.name, kind, nullable=True)


_STATED = (pa.types.is_integer, pa.types.is_date)  # min/max kept in the log: exact types only


def _add_action(store: pafs.FileSystem, path: str, size: int, schema: pa.Schema) -> AddAction:
    """The log entry of one Parquet file: its row count, and per column its NULL count and,
    for integers and dates, its range (from the footer's row-group statistics)."""
    with store.open_input_file(path) as file:
        footer = pq.read_metadata(file)
    stats: dict[str, Any] = {"numRecords": footer.num_rows, "nullCount": {}}
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    columns = {footer.schema.column(i).path: i for i in range(footer.num_columns)}
    for field in schema:
        index = columns.get(field.name)
        if index is None:
            continue
        groups = [
            footer.row_group(g).column(index).statistics for g in range(footer.num_row_groups)
        ]
        if any(g is None for g in groups):
            continue
        stats["nullCount"][field.name] = sum(g.null_count or 0 for g in groups)
        ranged = [g for g in groups if g.has_min_max]
        if any(t(field.type) for t in _STATED) and ranged and len(ranged) == len(groups):
            low[field.name] = _json_value(min(g.min for g in ranged))
            high[field.name] = _json_value(max(g.max for g in ranged))
    if low:
        stats |= {"minValues": low, "maxValues": high}
    return AddAction(path, size, {}, int(time.time() * 1000), True, json.dumps(stats))


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.date) else value
