"""Settings precedence (defaults < medallion.toml < environment < flags) and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from medallion.errors import ConfigError
from medallion.settings import Settings, load_settings, redact_url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MEDALLION_"):
            monkeypatch.delenv(name)


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    assert s.source_location == str(tmp_path / "source.db")
    assert s.lake_location == str(tmp_path / "lake")
    assert s.audit_location == f"sqlite:///{tmp_path / 'audit.db'}"
    assert s.parallelism == 2


def test_precedence_toml_then_env_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "medallion.toml").write_text(
        'parallelism = 3\nextract_lag_s = 9\nlake_uri = "s3://b/p"\n'
    )
    s = load_settings(home=tmp_path)
    assert (s.parallelism, s.extract_lag_s, s.lake_location) == (3, 9.0, "s3://b/p")
    monkeypatch.setenv("MEDALLION_PARALLELISM", "5")
    s = load_settings(home=tmp_path)
    assert (s.parallelism, s.extract_lag_s) == (5, 9.0)
    s = load_settings(home=tmp_path, parallelism=7)
    assert s.parallelism == 7


def test_home_from_environment_finds_its_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "medallion.toml").write_text("retries = 4\n")
    monkeypatch.setenv("MEDALLION_HOME", str(tmp_path))
    s = load_settings()
    assert s.home == tmp_path.resolve() and s.retries == 4


def test_unknown_or_invalid_settings_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "medallion.toml").write_text("paralelism = 3\n")
    with pytest.raises(ConfigError, match="paralelism"):
        load_settings(home=tmp_path)
    with pytest.raises(ConfigError, match="parallelism"):
        load_settings(home=tmp_path / "other", parallelism=0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "medallion.toml").write_text("parallelism = [\n")
    with pytest.raises(ConfigError, match=r"medallion\.toml"):
        load_settings(home=tmp_path / "bad")


def test_secrets_and_url_passwords_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "MEDALLION_DISCORD_WEBHOOK_URL", "https://discord.example/api/webhooks/1/wh-t0ken"
    )
    monkeypatch.setenv("MEDALLION_STORAGE_OPTIONS", '{"AWS_SECRET_ACCESS_KEY": "hunter22"}')
    s = load_settings(home=tmp_path, source_url="postgresql://me:s3cret@db:5432/olist")
    shown = str(s.redacted())
    assert "s3cret" not in shown and "wh-t0ken" not in shown and "hunter22" not in shown
    assert "postgresql://me:****@db:5432/olist" in shown
    assert s.discord_webhook_url is not None
    assert s.discord_webhook_url.get_secret_value().endswith("/wh-t0ken")
    assert "s3cret" not in repr(Settings(home=tmp_path, source_url="x"))  # no secret in repr
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db?password=PW", "postgresql://u@h/db?password=****"),
        ("postgresql://:PW@h/db", "postgresql://:****@h/db"),
        ("postgresql://u:PW@h:5432/db", "postgresql://u:****@h:5432/db"),
        (
            "postgresql://u@h/db?sslmode=require&sslpassword=PW&application_name=x",
            "postgresql://u@h/db?sslmode=require&sslpassword=****&application_name=x",
        ),
        (
            "s3://b/k?X-Amz-Signature=PW&X-Amz-Credential=PW",
            "s3://b/k?X-Amz-Signature=****&X-Amz-Credential=****",
        ),
        (
            "cannot reach postgresql://a:PW@h/d: refused",
            "cannot reach postgresql://a:****@h/d: refused",
        ),
    ],
)
def test_every_url_form_of_a_secret_is_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_misspelt_setting_never_echoes_its_value(tmp_path: Path) -> None:
    (tmp_path / "medallion.toml").write_text('webhook_ur = "https://hooks.example/T0KEN"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(home=tmp_path)
    assert "T0KEN" not in str(raised.value)
    assert "webhook_ur" in str(raised.value) and "did you mean 'webhook_url'" in str(raised.value)


def test_error_lines_print_markup_and_secrets_literally(capsys: pytest.CaptureFixture[str]) -> None:
    from medallion.console import error_line

    error_line("bad SQL near [/x] in postgresql://u:PW@h/db")
    err = capsys.readouterr().err
    assert "[/x]" in err and "PW" not in err


def _readme_settings() -> dict[str, str]:
    """Setting name -> default cell, from the README's settings table."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("| setting | default | what it does |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    return rows


def _shown(value: object) -> str:
    """How the README writes a default."""
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{', '.join(map(str, value))}`"
    if isinstance(value, dict):
        return f"`{value}`"
    return f"`{value}`"


def test_the_readme_lists_every_setting_with_its_default() -> None:
    documented = _readme_settings()
    assert sorted(documented) == sorted(Settings.model_fields)
    defaults = Settings.model_construct()
    derived = {"home", "source_url", "lake_uri", "audit_url"}  # written as paths under home
    for name in sorted(set(documented) - derived):
        assert documented[name] == _shown(getattr(defaults, name)), name
