"""A local Airflow for trying the DAGs: ``airflow standalone`` (API server and UI, scheduler,
DAG processor, triggerer) on 127.0.0.1 with this repository's ``dags/`` folder.

It starts Airflow in a process group of its own, so stopping it stops every component. Airflow
is not imported here (the ``airflow`` command is run), so the CLI starts as fast as ever.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medallion.errors import ConfigError
from medallion.settings import Settings

PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # Airflow's simple auth manager
HEALTH = "/api/v2/monitor/health"


@dataclass
class Standalone:
    """A running ``airflow standalone``: its process (group leader), UI and password file."""

    process: subprocess.Popen[bytes]
    url: str
    airflow_home: Path

    @property
    def password_file(self) -> Path:
        """Where Airflow writes the ``admin`` user's generated password (JSON)."""
        return self.airflow_home / PASSWORDS_FILE

    def wait_healthy(self, timeout_s: float = 180.0) -> bool:
        """Wait until the API answers its health check; False if it did not in time or the
        process ended."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + HEALTH, timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(1.0)
        return False

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop every component (SIGTERM to the group, SIGKILL after ``timeout_s``)."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        _signal_group(self.process.pid, signal.SIGKILL)  # a component that outlived its parent
        _wait_group_gone(self.process.pid)
        return self.process.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout_s: float = 5.0) -> None:
    """Wait until no process of the group is left: one just killed is still listed until the
    kernel has torn it down (seen: a component still in /proc when the command returned)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def standalone_env(
    settings: Settings,
    airflow_home: Path,
    dags_folder: Path,
    port: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of ``airflow standalone``: this Python's ``bin`` first on PATH (Airflow
    starts its components as ``airflow ...``), the API on 127.0.0.1:``port``, the DAGs
    folder, no examples, as many tasks at once as the machine has cores, and the settings'
    home and Airflow link for the tasks."""
    env = dict(os.environ if base is None else base)
    cores = str(max(1, os.cpu_count() or 1))
    url = f"http://127.0.0.1:{port}"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env |= {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": cores,
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": cores,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",  # new DAG files show up in 30 s
        "MEDALLION_HOME": str(settings.home),
    }
    env.setdefault("MEDALLION_AIRFLOW_BASE_URL", url)
    return env


def start_standalone(
    settings: Settings,
    dags_folder: Path,
    airflow_home: Path | None = None,
    port: int = 8080,
) -> Standalone:
    """Start ``airflow standalone`` in its own process group (its output goes to ours).

    ``airflow_home`` defaults to ``$AIRFLOW_HOME``, else ``<home>/airflow``.
    """
    if not (dags_folder / "medallion_pipeline.py").is_file():
        raise ConfigError(
            f"no DAG files in {dags_folder}: give the repository's dags/ folder (--dags-folder)"
        )
    if not 0 < port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, got {port}")
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent))
    if airflow is None:
        raise ConfigError("Airflow is not installed here: pip install 'medallion[airflow]'")
    home = (airflow_home or _default_home(settings)).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = standalone_env(settings, home, dags_folder.resolve(), port)
    process = subprocess.Popen([airflow, "standalone"], env=env, start_new_session=True)
    return Standalone(process, env["AIRFLOW__API__BASE_URL"], home)


def _default_home(settings: Settings) -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or settings.home / "airflow")


def admin_password(password_file: Path) -> str | None:
    """The generated password of ``admin``, once Airflow has written it."""
    try:
        value = json.loads(password_file.read_text()).get("admin")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None
