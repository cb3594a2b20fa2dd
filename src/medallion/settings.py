"""One typed settings object: defaults < medallion.toml < MEDALLION_* environment < CLI flags."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from medallion.errors import ConfigError

DEFAULT_HOME = "medallion_home"
TOML_NAME = "medallion.toml"
# the password of ``scheme://user:password@host`` (the user may be empty)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s/]+)(@)")
# a query parameter that can carry a secret (``?password=...``, ``&sslpassword=...``, tokens)
_SECRET_PARAM = re.compile(
    r"([?&;](?:[\w.-]*(?:password|passwd|pwd|secret|token|key|credential|signature|auth)"
    r"[\w.-]*)=)[^&;#\s'\"]*",
    re.IGNORECASE,
)

AlertKind = Literal["failure", "check_failed", "check_warned", "summary"]
ALERT_KINDS: tuple[AlertKind, ...] = ("failure", "check_failed", "check_warned", "summary")


class Settings(BaseSettings):
    """Where the source, the lake and the audit store live, and how a run behaves.

    Relative paths and empty URLs resolve against ``home``: ``source.db``, ``lake/``,
    ``audit.db`` and ``reports/`` under it.
    """

    model_config = SettingsConfigDict(
        env_prefix="MEDALLION_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        allow_inf_nan=False,  # `extract_lag_s = inf` is refused here, not by every task later
    )

    home: Path = Field(default=Path(DEFAULT_HOME), description="folder of the embedded defaults")
    source_url: str = Field(default="", description="SQLite path or postgresql:// URL")
    lake_uri: str = Field(default="", description="lake folder or s3://bucket/prefix")
    audit_url: str = Field(default="", description="SQLAlchemy URL of the audit store")
    parallelism: int = Field(default=2, ge=1, le=64, description="tasks run at once")
    retries: int = Field(default=2, ge=0, le=10, description="retries of a transient failure")
    retry_backoff_s: float = Field(default=0.5, ge=0, description="first retry delay, doubling")
    extract_lag_s: float = Field(default=5.0, ge=0, description="watermark look-back, seconds")
    extract_batch_rows: int = Field(default=250_000, ge=1000, description="rows per batch")
    silver_batch_rows: int = Field(
        default=2_000_000,
        ge=1,
        description="Bronze rows Silver validates at once; more are split by key into groups "
        "staged on local disk",
    )
    detect_hard_deletes: bool = Field(default=True, description="reconcile keys every run")
    skip_unchanged_source: bool = Field(
        default=True,
        description="skip a source table while the database reports no write since its last "
        "extraction (SQLite's change counter); off: every run reads every source key",
    )
    hard_delete_bucket_rows: int = Field(
        default=50_000, ge=1, description="keys per bucket when reconciling hard deletes"
    )
    hard_delete_buckets_above: int = Field(
        default=2_000_000, ge=0, description="live keys above which hard deletes use buckets"
    )
    checks: bool = Field(default=True, description="run data-quality checks after each layer")
    report_on_run: bool = Field(default=True, description="write the HTML report after a run")
    reports_kept: int = Field(
        default=200,
        ge=0,
        description="run pages kept in reports/, the oldest removed as new ones come (0: all)",
    )
    drift_threshold: float = Field(default=0.5, gt=0, description="row-count change that warns")
    drift_thresholds: dict[str, float] = Field(
        default_factory=dict, description='per table, e.g. {"silver.orders": 0.2}'
    )
    freshness_max_lag_s: float = Field(
        default=86_400.0, gt=0, description="how far a layer may trail the source"
    )
    check_full_every: int = Field(
        default=20,
        ge=0,
        description="evaluate each check in full instead of every N-th incremental evaluation "
        "(runs where its inputs did not move do not count; 0: only on its first run)",
    )
    storage_options: dict[str, SecretStr] = Field(default_factory=dict)
    engine: Literal["duckdb", "spark"] = Field(
        default="duckdb", description="runs Silver, Gold and the checks: duckdb or spark"
    )
    spark_remote: str = Field(
        default="sc://127.0.0.1:15002", description="the Spark Connect server of engine = spark"
    )
    spark_token: SecretStr | None = Field(
        default=None, description="bearer token for the Spark Connect server (implies TLS)"
    )
    spark_tls: bool = Field(default=False, description="TLS to the Spark Connect server")
    discord_webhook_url: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    webhook_url: SecretStr | None = None
    alert_on: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS), description="events that send an alert"
    )
    alert_timeout_s: float = Field(default=5.0, gt=0, le=60, description="per webhook request")
    alert_retries: int = Field(default=1, ge=0, le=3, description="retries of a failed delivery")
    report_url: str = Field(default="", description="report link in alerts; {run_id} expands")
    airflow_base_url: str = Field(
        default="", description="the Airflow UI a report links its DAG run in"
    )
    airflow_schedule: str = Field(
        default="@daily", description="schedule of the medallion_pipeline DAG; empty: manual only"
    )
    airflow_stream_schedule: str = Field(
        default="", description="schedule of the medallion_streaming DAG; empty: manual only"
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="the broker(s) of the review stream"
    )
    kafka_topic: str = Field(default="olist.reviews", min_length=1, description="review topic")
    kafka_group_id: str = Field(default="medallion-reviews", min_length=1)
    kafka_options: dict[str, SecretStr] = Field(
        default_factory=dict, description="librdkafka settings passed through (SASL, TLS)"
    )
    stream_batch_size: int = Field(default=10_000, ge=1, le=1_000_000)
    stream_silver_interval_s: float = Field(
        default=5.0, ge=0, description="Silver merges at most this often while consuming"
    )
    stream_partitions: int = Field(default=3, ge=1, le=256, description="of a created topic")
    stream_create_topic: bool = Field(default=True, description="create a missing topic")
    stream_broker_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="how long the broker may be unreachable"
    )
    export_to: str = Field(
        default="",
        description="export Gold here after every run (bigquery://, postgresql://, duckdb:///)",
    )
    export_postgres_schema: str = Field(
        default="gold", min_length=1, description="schema of the Gold tables in a PostgreSQL export"
    )
    bigquery_api_endpoint: str = Field(
        default="", description="BigQuery API endpoint (an emulator: anonymous credentials)"
    )
    export_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="per warehouse request of an export"
    )
    maintain_retention_hours: int = Field(
        default=168, ge=0, description="medallion maintain vacuums files unused this long"
    )
    maintain_z_order: bool = Field(
        default=True, description="medallion maintain z-orders keyed tables by their key"
    )

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        """An absolute folder; a file (or a folder below a file) is refused."""
        home = value.expanduser().resolve()
        for path in (home, *home.parents):
            if path.exists():
                if not path.is_dir():
                    raise ValueError(f"{path} is not a folder; give --home a folder")
                break
        return home

    @field_validator("airflow_base_url", mode="after")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """The report links there: an http(s) URL or nothing."""
        if value and not re.match(r"https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8080")
        return value.rstrip("/")

    @field_validator("spark_remote", mode="after")
    @classmethod
    def _spark_url(cls, value: str) -> str:
        if not re.match(r"sc://[^\s/:;]+(:\d+)?/?$", value):
            raise ValueError("must be sc://host:port, e.g. sc://127.0.0.1:15002")
        return value.rstrip("/")

    @property
    def spark_connect_url(self) -> str:
        """``spark_remote`` with the client options Spark Connect reads from its URL."""
        options = []
        if self.spark_tls:
            options.append("use_ssl=true")
        if self.spark_token is not None:
            options.append(f"token={self.spark_token.get_secret_value()}")
        return ";".join([f"{self.spark_remote}/", *options]) if options else self.spark_remote

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _toml_path(init_settings, env_settings)
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, toml, file_secret_settings)

    @property
    def source_location(self) -> str:
        """The source URL, or the embedded SQLite file under home."""
        return self.source_url or str(self.home / "source.db")

    @property
    def lake_location(self) -> str:
        return self.lake_uri or str(self.home / "lake")

    @property
    def audit_location(self) -> str:
        return self.audit_url or f"sqlite:///{self.home / 'audit.db'}"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def redacted(self) -> dict[str, Any]:
        """Every setting as printable data, with secrets and URL passwords masked."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                shown[name] = "**********" if value.get_secret_value() else ""
            elif isinstance(value, dict):
                shown[name] = dict.fromkeys(value, "**********")
            elif isinstance(value, str):
                shown[name] = redact_url(value)
            else:
                shown[name] = str(value) if isinstance(value, Path) else value
        shown["source_url"] = redact_url(self.source_location)
        shown["lake_uri"] = self.lake_location
        shown["audit_url"] = redact_url(self.audit_location)
        return shown


def redact_url(url: str) -> str:
    """Mask every secret a URL (or a text holding URLs) can carry: the password of its user
    info and each query parameter named like a password, key, token or signature."""
    return _SECRET_PARAM.sub(r"\1****", _URL_PASSWORD.sub(r"\1****\3", url))


def _toml_path(
    init_settings: PydanticBaseSettingsSource, env_settings: PydanticBaseSettingsSource
) -> Path:
    home = init_settings().get("home") or os.environ.get("MEDALLION_HOME") or DEFAULT_HOME
    return Path(home).expanduser() / TOML_NAME


def load_settings(**overrides: Any) -> Settings:
    """Resolve the settings; ``overrides`` are CLI flags (``None`` means not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {TOML_NAME}: {exc}") from None


def _first_problem(exc: ValidationError) -> str:
    """One line naming the setting; never the value of an unknown or secret setting."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(where, list(Settings.model_fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown setting {where!r}{hint} (its value is not shown)"
    field = Settings.model_fields.get(str(first["loc"][0])) if first["loc"] else None
    secret = field is not None and "SecretStr" in str(field.annotation)
    shown = "" if secret else f" (got {redact_url(repr(first.get('input')))})"
    return f"setting {where}: {first['msg']}{shown}"
