"""Fixtures of the Airflow tests: one Airflow home (SQLite metadata database) migrated once per
session, the `airflow` command run in a fresh process with it, and a local webhook."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# without the airflow extra these tests are not collected (Airflow is not imported here: it
# reads AIRFLOW_HOME once, and the session sets a temporary one only when tests start)
collect_ignore_glob = [] if importlib.util.find_spec("airflow") else ["test_*.py"]

REPO = Path(__file__).resolve().parents[3]
DAGS = REPO / "dags"
BIN = Path(sys.executable).parent


@dataclass
class Airflow:
    """The `airflow` command on one home; the settings of a test go in through ``env``."""

    home: Path

    def env(self, medallion_home: Path, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MEDALLION_", "AIRFLOW_", "AIRFLOW__"))}  # fmt: skip
        return base | {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "MEDALLION_HOME": str(medallion_home),
            "NO_PROXY": "127.0.0.1,localhost",
            **extra,
        }

    def run(
        self, args: list[str], env: dict[str, str], timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "airflow"), *args], env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def dags_test(
        self, dag_id: str, env: dict[str, str], conf: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`airflow dags test DAG_ID`: one DAG run, in process; exit 1 when the run failed."""
        args = ["dags", "test", dag_id] + (["-c", json.dumps(conf)] if conf else [])
        return self.run(args, env)

    def last_run(self, dag_id: str) -> tuple[str, str, dict[str, str]]:
        """The latest DAG run of ``dag_id``: its run id, state and task states."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            run_id, state = db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                (dag_id,),
            ).fetchone()
            tasks = db.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        return run_id, state, dict(tasks)


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    """An Airflow home whose SQLite metadata database is migrated (once per session)."""
    found = Airflow(tmp_path_factory.mktemp("airflow"))
    done = found.run(["db", "migrate"], found.env(found.home / "unused"), timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return found


@dataclass
class Webhook:
    """A local JSON webhook that records every POST body."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b.get("event") == kind]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """No access log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_address[1]}/hook", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
