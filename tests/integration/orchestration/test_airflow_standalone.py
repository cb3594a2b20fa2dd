"""`medallion airflow standalone` (what `make airflow` runs) brings up Airflow on 127.0.0.1:
the API's health endpoint answers, the admin password is where the command says, and the
REST API lists the three DAGs; stopping the command stops every Airflow process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.integration.orchestration.conftest import Airflow

DAG_IDS = ["medallion_pipeline", "medallion_streaming", "olist_source_setup"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def airflow_processes(home: Path) -> list[int]:
    """The processes whose environment has AIRFLOW_HOME=``home`` (those this test started)."""
    marker = f"AIRFLOW_HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def wait_for(what: str, probe: Any, process: subprocess.Popen[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the command ended while waiting for {what}"
        try:
            found = probe()
            if found:
                return found
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def test_the_command_brings_up_airflow_with_the_dags(airflow: Airflow, tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(airflow.home / "airflow.db", home / "airflow.db")  # migrated: a quick start
    port = free_port()
    env = airflow.env(
        tmp_path / "medallion",
        AIRFLOW_HOME=str(home),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    env.pop("AIRFLOW__CORE__DAGS_FOLDER")  # the command sets it from --dags-folder
    log = (tmp_path / "standalone.log").open("w")
    command = [sys.executable, "-m", "medallion", "airflow", "standalone", "--port", str(port),
               "--dags-folder", "dags"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=Path(__file__).resolve().parents[3], env=env, stdout=log,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_for("health", lambda: call(url + "/api/v2/monitor/health"), process, 150)
        assert health["metadatabase"]["status"] == "healthy"
        printed = wait_for(
            "the URL line", lambda: "Airflow UI:" in (tmp_path / "standalone.log").read_text(),
            process, 30,
        )  # fmt: skip
        assert printed
        text = (tmp_path / "standalone.log").read_text()
        assert f"Airflow UI: {url}" in text
        password_file = home / "simple_auth_manager_passwords.json.generated"
        assert f"admin password: in {password_file}" in text
        password = json.loads(password_file.read_text())["admin"]
        token = call(url + "/auth/token", {"username": "admin", "password": password})
        listed = wait_for(
            "the three DAGs",
            lambda: (d := call(url + "/api/v2/dags", token=token["access_token"]))["total_entries"]
            == 3 and d,
            process, 90,
        )  # fmt: skip
        assert sorted(d["dag_id"] for d in listed["dags"]) == DAG_IDS
        errors = call(url + "/api/v2/importErrors", token=token["access_token"])
        assert errors["total_entries"] == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the command stops Airflow's group
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()
        left = airflow_processes(home)
        for pid in left:  # only if the command failed to stop them: never leave them running
            os.kill(pid, signal.SIGKILL)
    assert left == [], "Airflow processes outlived the command"
    assert process.returncode == 0, (tmp_path / "standalone.log").read_text()[-3000:]
    assert "Airflow stopped" in (tmp_path / "standalone.log").read_text()
