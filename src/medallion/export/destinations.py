"""Which destination a URL names (the scheme), each loaded only when used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from medallion.errors import ExportError
from medallion.export.core import Destination
from medallion.settings import Settings, redact_url

SCHEMES = ("bigquery://PROJECT/DATASET", "postgresql://USER@HOST/DB", "duckdb:///PATH.duckdb")


def open_destination(url: str, settings: Settings, lake_uri: str) -> Destination:
    """The destination ``url`` names; an unknown scheme is one clear line."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "bigquery":
        from medallion.export.bigquery import BigQueryDestination

        return BigQueryDestination(url, settings, lake_uri)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from medallion.export.postgres import PostgresDestination

        return PostgresDestination(url, settings, lake_uri)
    if scheme == "duckdb":
        from medallion.export.duck import DuckDBDestination

        return DuckDBDestination(url, lake_uri)
    raise ExportError(
        f"unknown export destination {redact_url(url)!r}: use one of {', '.join(SCHEMES)}"
    )


@contextmanager
def destination(url: str, settings: Settings, lake_uri: str) -> Iterator[Destination]:
    dest = open_destination(url, settings, lake_uri)
    try:
        yield dest
    finally:
        dest.close()
