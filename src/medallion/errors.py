"""One exception root; every message names what failed and how to fix it."""

from __future__ import annotations

import re


class MedallionError(Exception):
    """Root of every error the platform raises on purpose; the CLI prints it as one line."""


class ConfigError(MedallionError):
    """A setting is missing, malformed or contradictory."""


class SourceError(MedallionError):
    """The source database is unreachable, misconfigured or lacks a table."""


class InputFileError(MedallionError):
    """An input file (CSV) is missing or malformed."""


class CatalogError(MedallionError):
    """An unknown table or column name."""


class TaskError(MedallionError):
    """A task failed; carries the task name."""


class SchemaDriftError(MedallionError):
    """A source table's columns no longer match its declaration."""


class AuditError(MedallionError):
    """The audit store is unreachable or inconsistent."""


class StorageError(MedallionError):
    """The lake storage (Delta) failed or is locked."""


class TransientError(MedallionError):
    """A failure worth retrying (a dropped connection, a lock held by another writer)."""


class SCD2Error(MedallionError):
    """An SCD2 declaration or its input is malformed."""


class DimDateError(MedallionError):
    """The requested date range is invalid."""


class SourceBusyError(SourceError, TransientError):
    """Another writer held the SQLite source longer than the busy timeout (worth a retry)."""


class EngineError(MedallionError):
    """A transformation query failed."""


class EngineMemoryError(EngineError):
    """A query ran out of the engine's memory, which the tasks running beside it share: the
    runner runs the task once more with nothing beside it."""


class ReadOnlyError(EngineError):
    """A statement other than one SELECT was given to the read-only query surface."""


class CheckFailed(MedallionError):
    """A check of severity ``fail`` found violations."""


class ReconciliationError(MedallionError):
    """Rows in != rows merged + quarantined + superseded."""


class StreamError(MedallionError):
    """The broker is unreachable or lost, or a topic is missing."""


class ExportError(MedallionError):
    """A warehouse export failed: an unknown destination, unreachable, or refused credentials."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's text on one line: colour codes and line breaks gone, cut at ``limit``;
    its type name when it has no text."""
    text = " ".join(_ANSI.sub("", str(exc)).replace("↳", " ").split())
    return text[:limit] or type(exc).__name__
