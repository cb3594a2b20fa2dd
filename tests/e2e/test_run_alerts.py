"""A real run sends its alerts to a webhook; a dead webhook does not change the run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from medallion import api
from medallion.catalog import source_table
from medallion.settings import Settings
from medallion.source.db import open_source

pytestmark = pytest.mark.slow  # whole runs: `make test-fast` leaves them out


class Inbox(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def inbox() -> Iterator[str]:
    Inbox.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Inbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token"
    server.shutdown()
    server.server_close()


def prepared(tmp_path: Path, webhook: str) -> Settings:
    s = Settings(home=tmp_path / "home", retries=0, webhook_url=webhook, alert_timeout_s=1.0,
                 alert_on=["failure", "summary"])  # fmt: skip
    api.generate_source(s, scale=0.005, seed=4)
    with open_source(s.source_location) as db:  # a dropped column fails bronze.sellers
        db.execute(
            f'ALTER TABLE {db.qualified(source_table("sellers"))} DROP COLUMN "seller_state"'
        )
    return s


def test_failure_and_summary_reach_the_webhook(tmp_path: Path, inbox: str) -> None:
    s = prepared(tmp_path, inbox)
    report = api.run(s)
    assert not report.ok
    events = [(b["event"], b.get("task")) for b in Inbox.bodies]
    assert ("failure", "bronze.sellers") in events
    assert events[-1][0] == "summary"
    summary = Inbox.bodies[-1]
    assert summary["ok"] is False and summary["counts"]["failed"] >= 1
    failure = next(b for b in Inbox.bodies if b["event"] == "failure")
    assert "seller_state" in failure["error"]


def test_a_dead_webhook_does_not_change_the_run(tmp_path: Path) -> None:
    s = prepared(tmp_path, "http://127.0.0.1:9/hook/secret-token")  # nothing listens on 9
    report = api.run(s)
    failed = sorted(o.task.name for o in report.outcomes if o.status.value == "FAILED")
    assert failed == ["bronze.sellers"]
    assert all(
        o.status.value in {"SUCCESS", "SKIPPED"}
        for o in report.outcomes
        if o.task.name != "bronze.sellers"
    )
