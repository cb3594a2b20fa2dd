"""`medallion doctor`: one line per configured part (source, audit store, lake, engine,
broker, webhooks): reachable or not, its version, and what to fix. Every probe is bounded in
time and reads nothing it does not need; secrets never appear (URLs are redacted)."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import httpx

from medallion.audit import AuditStore
from medallion.engine import reach_engine
from medallion.errors import MedallionError
from medallion.settings import Settings, redact_url
from medallion.source.db import open_source
from medallion.storage import Lake, is_object_store

PROBE_TIMEOUT_S = 5.0


class Health(StrEnum):
    OK = "ok"
    FAIL = "fail"
    SKIP = "not configured"


@dataclass(frozen=True)
class Finding:
    part: str
    health: Health
    where: str  # redacted
    detail: str  # version, or the error
    fix: str = ""
    seconds: float = 0.0


Probe = Callable[[Settings], tuple[str, str]]  # -> (where, detail); raises on failure


def _source(settings: Settings) -> tuple[str, str]:
    with open_source(settings.source_location) as db:
        version = db.scalar(
            "SELECT version()" if db.dialect == "postgresql" else "SELECT sqlite_version()"
        )
        present = len(db.existing_tables())
    return redact_url(settings.source_location), f"{version}; {present} of 9 tables present"


def _audit(settings: Settings) -> tuple[str, str]:
    with AuditStore(settings.audit_location) as audit:
        dialect = audit.engine.dialect
        info = getattr(dialect, "server_version_info", None)
        version = ".".join(str(v) for v in info) if info else "?"
        runs = len({r["run_id"] for r in audit.run_logs(last=1000)})
    return redact_url(settings.audit_location), f"{dialect.name} {version}; {runs} recent run(s)"


def _lake(settings: Settings) -> tuple[str, str]:
    lake = Lake.from_settings(settings)
    lake.probe()
    kind = "object store" if is_object_store(lake.uri) else "folder"
    tables = sum(
        lake.table(layer, name).exists
        for layer, name in (("bronze", "orders"), ("silver", "orders"), ("gold", "fact_order"))
    )
    deltalake = importlib.metadata.version("deltalake")
    return redact_url(lake.uri), f"{kind}, deltalake {deltalake}; {tables} of 3 core tables"


def _engine(settings: Settings) -> tuple[str, str]:
    where = settings.spark_remote if settings.engine == "spark" else "in process"
    return where, reach_engine(settings)


def _broker(settings: Settings) -> tuple[str, str]:
    from medallion.stream.kafka import ensure_topic  # only when asked: confluent-kafka

    probe = settings.model_copy(update={"stream_create_topic": False})
    where = redact_url(settings.kafka_bootstrap_servers)
    try:
        partitions = ensure_topic(probe, timeout_s=PROBE_TIMEOUT_S)
    except MedallionError as exc:
        if "does not exist" not in str(exc):
            raise
        return where, f"reachable; topic {settings.kafka_topic!r} not created yet"
    return where, f"reachable; topic {settings.kafka_topic!r} with {partitions} partition(s)"


def _webhook(url: str) -> tuple[str, str]:
    """Reach the webhook's host without posting an alert (a GET; the answer's status only)."""
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname}"  # the path holds the secret token
    answer = httpx.get(url, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    return where, f"reachable (HTTP {answer.status_code} to a GET; alerts are POSTed)"


def _webhook_probe(url: str) -> Probe:
    return lambda _settings: _webhook(url)


FIXES = {
    "source": "set source_url, or run `medallion source init`",
    "audit store": "set audit_url to a reachable database",
    "lake": "check lake_uri, the bucket and storage_options (credentials, endpoint)",
    "engine": "start one (`medallion spark server`) or set spark_remote, or engine = 'duckdb'",
    "broker": "start one (`medallion stream broker`) or set kafka_bootstrap_servers",
    "webhook": "check the webhook URL and the network",
}


def diagnose(settings: Settings, *, broker: bool | None = None) -> list[Finding]:
    """Probe every part; the broker only when it is configured (``kafka_bootstrap_servers``
    set) or asked for."""
    if broker is None:
        broker = "kafka_bootstrap_servers" in settings.model_fields_set
    probes: list[tuple[str, Probe | None]] = [
        ("source", _source),
        ("audit store", _audit),
        ("lake", _lake),
        ("engine", _engine),
        ("broker", _broker if broker else None),
    ]
    for name in ("discord_webhook_url", "slack_webhook_url", "webhook_url"):
        secret = getattr(settings, name)
        url = secret.get_secret_value() if secret is not None else None
        label = f"webhook ({name.removesuffix('_url').removesuffix('_webhook')})"
        probes.append((label, _webhook_probe(url) if url else None))
    return [_run(name, probe, settings) for name, probe in probes]


def _run(part: str, probe: Probe | None, settings: Settings) -> Finding:
    if probe is None:
        return Finding(part, Health.SKIP, "", "")
    began = time.monotonic()
    try:
        where, detail = probe(settings)
    except (MedallionError, httpx.HTTPError, OSError) as exc:
        webhook = part.startswith("webhook")
        fix = FIXES["webhook" if webhook else part]
        # a webhook's URL carries its token in the path: name the failure, never the text
        text = f"unreachable ({type(exc).__name__})" if webhook else str(exc)
        detail = redact_url(" ".join(text.split()))[:300]
        return Finding(part, Health.FAIL, "", detail, fix, time.monotonic() - began)
    return Finding(part, Health.OK, where, detail, "", time.monotonic() - began)
