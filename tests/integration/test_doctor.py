"""`medallion doctor` against real parts: PostgreSQL, SeaweedFS, the bundled broker, a local
webhook; then the same parts wrong. One line per part, bounded in time, no secret shown."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import S3_SECRET, S3Server

from medallion.doctor import Health, diagnose
from medallion.settings import Settings

pytestmark = pytest.mark.postgres
TOKEN = "t0ken-" + uuid.uuid4().hex


@pytest.fixture
def webhook() -> Iterator[str]:
    class Hook(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(405)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/webhooks/1/{TOKEN}"
    server.shutdown()


def good(
    tmp_path: Path, *, pg_url: str, s3: S3Server, broker: str, hook: str, spark: str
) -> Settings:
    return Settings(
        home=tmp_path / "home", source_url=pg_url, audit_url=pg_url,
        lake_uri=f"s3://lake/{uuid.uuid4().hex[:8]}", storage_options=s3.storage_options(),
        kafka_bootstrap_servers=broker, discord_webhook_url=hook, engine="spark",
        spark_remote=spark,
    )  # fmt: skip


def test_every_part_reachable(
    tmp_path: Path,
    *,
    pg_url: str,
    s3_server: S3Server,
    kafka_broker: str,
    webhook: str,
    spark_local: str,
) -> None:
    settings = good(
        tmp_path, pg_url=pg_url, s3=s3_server, broker=kafka_broker, hook=webhook, spark=spark_local
    )
    found = {f.part: f for f in diagnose(settings)}
    assert {p: f.health for p, f in found.items()} == {
        "source": Health.OK, "audit store": Health.OK, "lake": Health.OK, "engine": Health.OK,
        "broker": Health.OK,
        "webhook (discord)": Health.OK, "webhook (slack)": Health.SKIP,
        "webhook (webhook)": Health.SKIP,
    }  # fmt: skip
    assert "PostgreSQL" in found["source"].detail and "object store" in found["lake"].detail
    assert found["engine"].detail.startswith("Spark 4.") and found["engine"].where == spark_local
    assert TOKEN not in found["webhook (discord)"].where


def test_every_part_wrong_is_one_line_each_and_bounded(
    tmp_path: Path, pg_url: str, s3_server: S3Server
) -> None:
    env = {
        **os.environ,
        "MEDALLION_HOME": str(tmp_path / "home"),
        "MEDALLION_SOURCE_URL": "postgresql://me:pw-secret@127.0.0.1:1/olist",
        "MEDALLION_AUDIT_URL": pg_url,
        "MEDALLION_LAKE_URI": "s3://no-such-bucket/x",
        "MEDALLION_STORAGE_OPTIONS": json.dumps(s3_server.storage_options()),
        "MEDALLION_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MEDALLION_ENGINE": "spark",
        "MEDALLION_SPARK_REMOTE": "sc://127.0.0.1:1",
        "MEDALLION_SLACK_WEBHOOK_URL": f"http://127.0.0.1:1/services/{TOKEN}",
    }
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "medallion", "doctor"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert time.monotonic() - began < 60
    assert done.returncode == 1
    failing = "source, lake, engine, broker, webhook (slack)"
    assert done.stderr.strip() == f"error: 5 part(s) failing: {failing}"
    out = done.stdout
    for part in ("cannot connect to source", "the bucket 'no-such-bucket' does not exist",
                 "cannot reach the Kafka broker", "unreachable (ConnectError)",
                 "Spark Connect server sc://127.0.0.1:1 unreachable"):  # fmt: skip
        assert part in " ".join(out.split()), part
    for secret in ("pw-secret", TOKEN, S3_SECRET):
        assert secret not in out + done.stderr
