"""Shared fixtures: the real Olist files and a throwaway PostgreSQL database per test."""

from __future__ import annotations

import os
import socket
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from tests.support import S3Server, start_s3_server

REPO = Path(__file__).resolve().parents[1]
LOCAL_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session", autouse=True)
def _airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Airflow, when a test imports it, keeps its files in a temporary folder: never the
    user's ``~/airflow`` or ``$AIRFLOW_HOME``."""
    before = os.environ.get("AIRFLOW_HOME")
    os.environ["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow_home"))
    yield
    if before is None:
        os.environ.pop("AIRFLOW_HOME", None)
    else:
        os.environ["AIRFLOW_HOME"] = before


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared folder: ``$MEDALLION_SHARED``, else ``<repo>/../shared``."""
    return Path(os.environ.get("MEDALLION_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def olist_dir(shared_dir: Path) -> Path:
    """The three real Kaggle files (gzip); skips only when the folder is absent."""
    path = shared_dir / "data" / "olist"
    if not path.is_dir():
        pytest.skip(f"real Olist files not found at {path}; set MEDALLION_SHARED")
    return path


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL: the local PostgreSQL on 127.0.0.1:5432, else a pgserver in a temp dir.

    ``MEDALLION_TEST_PGSERVER=1`` uses pgserver even when the local server is reachable.
    """
    if not os.environ.get("MEDALLION_TEST_PGSERVER") and _reachable("127.0.0.1", 5432):
        yield LOCAL_PG_URL
        return
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        pgserver = pytest.importorskip("pgserver")
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """The URL of a fresh, uniquely named database, dropped after the test."""
    yield from _fresh_database(pg_server_url)


@pytest.fixture(scope="module")
def pg_module_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database shared by one module's tests (built once, read by each)."""
    yield from _fresh_database(pg_server_url)


def _fresh_database(pg_server_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes it runs once on embedded SQLite and once on real PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "source.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """A real Kafka-protocol broker (the bundled Tansu, memory storage) on a free 127.0.0.1
    port for the whole session, stopped by PID at the end. Tests use their own topics."""
    from medallion.stream.kafka import start_broker

    broker = start_broker()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) on 127.0.0.1 with a bucket ``lake``, for the session."""
    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


def _spark_server(mode: str) -> Iterator[str]:
    from medallion.engine import close_engines
    from medallion.local_servers import free_port
    from medallion.spark_server import start_spark_server

    server = start_spark_server(free_port(), mode, workers=2)  # type: ignore[arg-type]
    try:
        yield server.remote
    finally:
        close_engines()
        server.stop()


@pytest.fixture(scope="session")
def spark_local() -> Iterator[str]:
    """A real Spark Connect server (Sail, local mode) on a free 127.0.0.1 port for the
    session, stopped by PID at the end: its ``sc://`` URL."""
    yield from _spark_server("local")


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[str]:
    """Sail in local-cluster mode (a driver and two workers talking over RPC)."""
    yield from _spark_server("local-cluster")
