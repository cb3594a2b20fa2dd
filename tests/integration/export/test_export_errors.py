"""An export that cannot start says why in one line: an unknown scheme, an unreachable
warehouse, refused credentials (an ExportError, which the CLI prints as one red line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medallion import api
from medallion.cli import app
from medallion.errors import ExportError
from medallion.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(home=tmp_path, export_timeout_s=2, **values)  # type: ignore[arg-type]


def one_line_error(tmp_path: Path, url: str, **values: object) -> str:
    with pytest.raises(ExportError) as info:
        api.export(settings(tmp_path, **values), url)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400
    return text


def test_an_unknown_scheme_lists_the_valid_ones(tmp_path: Path) -> None:
    text = one_line_error(tmp_path, "snowflake://acct/db")
    assert "snowflake://acct/db" in text and "bigquery://PROJECT/DATASET" in text


def test_the_cli_prints_one_red_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--to", "ftp://x/y", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown export destination" in result.output
    assert "Traceback" not in result.output


@pytest.mark.postgres
def test_postgresql_unreachable_and_refused(tmp_path: Path, pg_server_url: str) -> None:
    assert "127.0.0.1:1" in one_line_error(tmp_path, "postgresql://me:secret@127.0.0.1:1/db")
    refused = one_line_error(
        tmp_path, pg_server_url.replace("postgres@", "no_such_role:hunter22@", 1)
    )
    assert "no_such_role" in refused and "hunter22" not in refused


def test_bigquery_unreachable(tmp_path: Path) -> None:
    text = one_line_error(tmp_path, "bigquery://p/d", bigquery_api_endpoint="http://127.0.0.1:1")
    assert "bigquery://p/d" in text


def test_bigquery_without_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    text = one_line_error(tmp_path, "bigquery://p/d")
    assert "credentials" in text.lower()
