"""The lake: Delta tables under one URI (a folder or s3://...). The only deltalake user.

Locations are URIs joined with '/', never filesystem paths, so S3 works wherever a folder
does. A table's watermark lives in the Delta log as an app transaction, committed atomically
with the rows it describes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from medallion.errors import StorageError

log = logging.getLogger(__name__)


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


@dataclass(frozen=True)
class Lake:
    """The lake root and the storage options (credentials, endpoint) to reach it."""

    uri: str
    storage_options: Mapping[str, str] | None = None

    def table_uri(self, layer: str, table: str) -> str:
        return join_uri(self.uri, layer, table)

    def _options(self) -> dict[str, str] | None:
        return dict(self.storage_options) if self.storage_options else None

    def open(self, layer: str, table: str) -> DeltaTable | None:
        """The Delta table, or None when it was never written."""
        uri = self.table_uri(layer, table)
        try:
            return DeltaTable(uri, storage_options=self._options())
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise StorageError(f"cannot open {uri}: {_one_line(exc)}") from exc

    def version(self, layer: str, table: str) -> int | None:
        dt = self.open(layer, table)
        return None if dt is None else dt.version()

    def app_version(self, layer: str, table: str, app_id: str) -> int | None:
        """The version recorded by app transaction ``app_id``, None if never written."""
        dt = self.open(layer, table)
        return None if dt is None else dt.transaction_version(app_id)

    def read(
        self,
        layer: str,
        table: str,
        columns: list[str] | None = None,
        filters: list[tuple[str, str, Any]] | None = None,
    ) -> pa.Table | None:
        """Read (some columns of) a table as Arrow; None when the table does not exist."""
        dt = self.open(layer, table)
        if dt is None:
            return None
        try:
            return dt.to_pyarrow_table(columns=columns, filters=filters or None)
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot read {dt.table_uri}: {_one_line(exc)}") from exc

    def append(
        self,
        layer: str,
        table: str,
        data: pa.RecordBatchReader | pa.Table,
        *,
        partition_by: list[str] | None = None,
        app_id: str,
        app_version: int,
        expected_app_version: int | None,
        metadata: Mapping[str, Any],
        evolve_schema: bool = False,
    ) -> int:
        """Append in one commit that also records ``app_id`` -> ``app_version``.

        Fails if another writer moved ``app_id`` since we read ``expected_app_version``, so two
        concurrent runs can never both append the same rows. Returns the new table version.
        """
        uri = self.table_uri(layer, table)
        current = self.app_version(layer, table, app_id)
        if current != expected_app_version:
            raise StorageError(
                f"{uri} was written by another run meanwhile (app version {current}, "
                f"expected {expected_app_version}); re-run to continue from its state"
            )
        props = CommitProperties(
            app_transactions=[Transaction(app_id=app_id, version=app_version)],
            custom_metadata={
                k: json.dumps(v, default=str) if not isinstance(v, str) else v
                for k, v in metadata.items()
            },
        )
        try:
            write_deltalake(
                uri,
                data,
                mode="append",
                partition_by=partition_by,
                schema_mode="merge" if evolve_schema else None,
                storage_options=self._options(),
                commit_properties=props,
            )
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot write {uri}: {_one_line(exc)}") from exc
        dt = self.open(layer, table)
        assert dt is not None
        return dt.version()

    def history(self, layer: str, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        dt = self.open(layer, table)
        return [] if dt is None else list(dt.history(limit))

    def tables(self, layer: str, names: Iterable[str]) -> dict[str, int | None]:
        return {name: self.version(layer, name) for name in names}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]
