"""BigQuery destination through the official client (google-cloud-bigquery). The only module
that imports google.cloud.

Credentials are found the way Google's libraries find them (Application Default
Credentials); with ``bigquery_api_endpoint`` set (an emulator) the client is anonymous. Tables
load through CSV load jobs with an explicit schema into ``_medallion_stage_<table>``; the swap
is ``CREATE OR REPLACE TABLE target AS SELECT * FROM staging`` (one atomic statement), and the
version record is written after it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from medallion.errors import ExportError, one_line
from medallion.export.core import EXPORTS_TABLE, STAGE_PREFIX
from medallion.settings import Settings

_TYPES: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
    (pa.types.is_boolean, "BOOL"),
    (pa.types.is_integer, "INT64"),
    (pa.types.is_floating, "FLOAT64"),
    (pa.types.is_decimal, "NUMERIC"),  # beyond NUMERIC's 29 integer digits the load refuses
    (pa.types.is_timestamp, "TIMESTAMP"),  # Gold's naive timestamps are UTC
    (pa.types.is_date, "DATE"),
    (pa.types.is_string, "STRING"),
    (pa.types.is_large_string, "STRING"),
)


def bigquery_type(t: pa.DataType) -> str:
    """The BigQuery type of an Arrow type; money (decimal) stays exact as NUMERIC."""
    for matches, name in _TYPES:
        if matches(t):
            return name
    raise ExportError(f"no BigQuery type for Arrow type {t}")


def _has_newlines(data: pa.Table) -> bool:
    return any(
        pc.any(pc.match_substring(column, "\n")).as_py()
        for field, column in zip(data.schema, data.columns, strict=True)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    )


def _literal(text: str) -> str:
    """A BigQuery string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class BigQueryDestination:
    def __init__(self, url: str, settings: Settings, lake_uri: str) -> None:
        parts = urlsplit(url)
        self.project, self.dataset = parts.netloc, parts.path.strip("/")
        if not self.project or not self.dataset or "/" in self.dataset:
            raise ExportError(f"bad BigQuery destination {url!r}: use bigquery://PROJECT/DATASET")
        self.label = f"bigquery://{self.project}/{self.dataset}"
        self.lake_uri = lake_uri
        self.timeout = settings.export_timeout_s
        self.retry = Retry(deadline=settings.export_timeout_s, timeout=settings.export_timeout_s)
        endpoint = settings.bigquery_api_endpoint
        try:
            if endpoint:
                self.client = bigquery.Client(
                    project=self.project,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options=ClientOptions(api_endpoint=endpoint),
                )
            else:
                self.client = bigquery.Client(project=self.project)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ExportError(
                f"no usable Google credentials for {self.label}: {one_line(exc)} (set "
                "GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`)"
            ) from None
        try:
            self._call(
                lambda: self.client.create_dataset(
                    self.dataset, exists_ok=True, retry=self.retry, timeout=self.timeout
                )
            )
            self._ensure_exports()
        except ExportError:
            self.close()
            raise

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ExportError(f"{self.label} refused the credentials: {one_line(exc)}") from None
        except (gexc.Unauthorized, gexc.Forbidden) as exc:
            raise ExportError(f"{self.label} refused the credentials: {one_line(exc)}") from None
        except (gexc.GoogleAPIError, OSError) as exc:
            raise ExportError(f"{self.label} failed: {one_line(exc)}") from None

    def _query(self, sql: str) -> list[Any]:
        rows: list[Any] = self._call(
            lambda: list(
                self.client.query(sql, retry=self.retry, timeout=self.timeout).result(
                    timeout=self.timeout
                )
            )
        )
        return rows

    def _id(self, table: str) -> str:
        return f"`{self.project}.{self.dataset}.{table}`"

    def _ensure_exports(self) -> None:
        self._query(
            f"CREATE TABLE IF NOT EXISTS {self._id(EXPORTS_TABLE)} (lake_uri STRING, "
            "table_name STRING, version INT64, rows_exported INT64, exported_at TIMESTAMP)"
        )

    def exported_version(self, table: str) -> int | None:
        rows = self._query(
            f"SELECT max(version) AS v FROM {self._id(EXPORTS_TABLE)} "
            f"WHERE lake_uri = {_literal(self.lake_uri)} AND table_name = {_literal(table)}"
        )
        value = rows[0]["v"] if rows else None
        return None if value is None else int(value)

    def stage(self, table: str, data: pa.Table) -> None:
        schema = [bigquery.SchemaField(f.name, bigquery_type(f.type)) for f in data.schema]
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer)  # naive timestamps: BigQuery reads them as UTC
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format="CSV",
            schema=schema,
            skip_leading_rows=1,
            write_disposition="WRITE_TRUNCATE",
        )
        if _has_newlines(data):  # set only when needed: some emulators reject the field
            config.allow_quoted_newlines = True
        target = f"{self.project}.{self.dataset}.{STAGE_PREFIX}{table}"
        self._call(
            lambda: self.client.load_table_from_file(
                buffer, target, job_config=config, timeout=self.timeout
            ).result(timeout=max(self.timeout, 300))
        )

    def swap(self, table: str, version: int, rows: int) -> None:
        stage = f"{STAGE_PREFIX}{table}"
        self._query(f"CREATE OR REPLACE TABLE {self._id(table)} AS SELECT * FROM {self._id(stage)}")
        lake, name = _literal(self.lake_uri), _literal(table)
        self._query(  # literals, not query parameters: emulators may lack them
            f"MERGE {self._id(EXPORTS_TABLE)} e"
            f" USING (SELECT {lake} AS lake_uri, {name} AS table_name) s"
            " ON e.lake_uri = s.lake_uri AND e.table_name = s.table_name"
            f" WHEN MATCHED THEN UPDATE SET version = {int(version)},"
            f" rows_exported = {int(rows)}, exported_at = CURRENT_TIMESTAMP()"
            " WHEN NOT MATCHED THEN INSERT (lake_uri, table_name, version, rows_exported,"
            f" exported_at) VALUES ({lake}, {name}, {int(version)}, {int(rows)},"
            " CURRENT_TIMESTAMP())"
        )
        self._call(
            lambda: self.client.delete_table(
                f"{self.project}.{self.dataset}.{stage}", not_found_ok=True, timeout=self.timeout
            )
        )

    def query(self, sql: str) -> pa.Table:
        """Run one query here (the named queries, transpiled) and return its rows."""
        return self._call(
            lambda: (
                self.client.query(sql, timeout=self.timeout)
                .result(timeout=self.timeout)
                .to_arrow(create_bqstorage_client=False)
            )
        )

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
