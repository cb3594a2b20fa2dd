"""A Spark Connect server for users and tests: LakeSail's Sail (the ``pysail`` package of the
``spark`` extra, no JVM), started on 127.0.0.1 in local mode or in local-cluster mode (a driver
and workers talking over RPC inside one process)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medallion.errors import ConfigError, EngineError
from medallion.local_servers import port_is_free, stop, wait_listening

Mode = Literal["local", "local-cluster"]
MODES: tuple[Mode, ...] = ("local", "local-cluster")
DEFAULT_PORT = 15002  # Spark Connect's own default
START_TIMEOUT_S = 20.0


@dataclass
class SparkServer:
    """A Sail process serving Spark Connect on 127.0.0.1:``port``."""

    port: int
    mode: Mode
    process: subprocess.Popen[bytes]

    @property
    def remote(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)


def sail_environment(mode: Mode, workers: int) -> dict[str, str]:
    """Sail's configuration (its ``SAIL_*`` variables) for ``mode``."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    env: dict[str, str] = {"SAIL_MODE": mode}
    if mode == "local-cluster":
        env["SAIL_CLUSTER__WORKER_INITIAL_COUNT"] = str(workers)
        env["SAIL_CLUSTER__WORKER_MAX_COUNT"] = str(workers)
    return env


def start_spark_server(
    port: int = DEFAULT_PORT,
    mode: Mode = "local",
    workers: int = 2,
    log: Path | None = None,
) -> SparkServer:
    """Start Sail and wait until it accepts connections (``START_TIMEOUT_S`` at most)."""
    if importlib.util.find_spec("pysail") is None:
        raise EngineError("the Spark server needs the spark extra: pip install 'medallion[spark]'")
    if not 0 < port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, got {port}")
    if not port_is_free(port):
        raise EngineError(f"port {port} on 127.0.0.1 is in use; choose one with --port")
    args = [sys.executable, "-m", "pysail", "spark", "server", "--ip", "127.0.0.1"]
    args += ["--port", str(port)]
    env = {**os.environ, **sail_environment(mode, workers)}
    env.setdefault("RUST_LOG", "warn")
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    problem = wait_listening(process, port, START_TIMEOUT_S)
    if problem is not None:
        raise EngineError(f"the Spark server {problem}")
    return SparkServer(port, mode, process)


@contextmanager
def running_spark_server(
    port: int = DEFAULT_PORT, mode: Mode = "local", workers: int = 2
) -> Iterator[SparkServer]:
    server = start_spark_server(port, mode, workers)
    try:
        yield server
    finally:
        server.stop()
