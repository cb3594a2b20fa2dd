"""Export fixtures: a Gold built once per session, and the BigQuery emulator (crucible) from
its own venv (``<repo>/.venv-bigquery``, built once per machine when missing: it pins a
DuckDB the project's venv cannot hold), started for the session and stopped by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medallion import api
from medallion.settings import Settings

REPO = Path(__file__).resolve().parents[3]
CRUCIBLE = "crucible-emulator[server]==0.1.0a2"
SEED = 15


def bigquery_venv() -> Path:
    """The emulator's venv (``$MEDALLION_BIGQUERY_VENV`` or ``<repo>/.venv-bigquery``)."""
    venv = Path(os.environ.get("MEDALLION_BIGQUERY_VENV") or REPO / ".venv-bigquery")
    if not (venv / "bin" / "crucible").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", CRUCIBLE],
            check=True,
        )
    return venv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def bigquery_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a running BigQuery emulator."""
    crucible = bigquery_venv() / "bin" / "crucible"
    port = _free_port()
    log = (tmp_path_factory.mktemp("crucible") / "crucible.log").open("wb")
    proc = subprocess.Popen(
        [
            str(crucible),
            "serve",
            "--dialect",
            "bigquery",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the BigQuery emulator did not start (see {log.name})")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def build_gold(home: Path, scale: float) -> Path:
    settings = Settings(home=home, checks=False, report_on_run=False)
    api.generate_source(settings, scale=scale, seed=SEED)
    assert api.run(settings).ok
    return home


@pytest.fixture(scope="session")
def gold_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scale-0.05 Gold (source, lake and audit under one home), built once per session;
    tests work on copies of it."""
    return build_gold(tmp_path_factory.mktemp("gold") / "home", 0.05)


@pytest.fixture(scope="session")
def small_gold_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scale-0.005 Gold for the BigQuery emulator: its CSV loads insert row by row (about
    2-4 ms a row), so a scale-0.05 export takes about 90 s there."""
    return build_gold(tmp_path_factory.mktemp("gold-small") / "home", 0.005)
