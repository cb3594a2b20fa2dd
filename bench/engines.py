"""medallion on each engine, one after the other on this machine: DuckDB in this process,
then the Spark engine on Sail in local and in local-cluster mode (a Sail server started here
for each, stopped after). Each is ``medallion bench --runs N`` on a source of the same scale
and seed; the table adds the Sail server's own peak memory (read from /proc: the bench's peak is
medallion's process only) and the slowest tasks of each run, from the audit log.

    .venv/bin/python bench/engines.py --scale 1 --runs 1 --out bench/results/engines-scale-1

writes ``<out>/<engine>.json`` (as ``medallion bench`` writes them) and ``<out>/engines.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from medallion.audit import AuditStore
from medallion.local_servers import free_port
from medallion.settings import Settings
from medallion.spark_server import Mode, start_spark_server

ENGINES: dict[str, Mode | None] = {
    "duckdb": None,
    "sail-local": "local",
    "sail-local-cluster": "local-cluster",
}
RUNS = ("full_run", "no_change_run", "incremental_run")  # the bench's runs, in order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.engines.split(","):
        results[name] = bench_one(name, ENGINES[name], args.scale, args.runs, args.out)
        (args.out / f"{name}.json").write_text(json.dumps(results[name], indent=2))
    table = markdown(results, args.scale)
    (args.out / "engines.md").write_text(table)
    print(table)


def bench_one(name: str, mode: Mode | None, scale: float, runs: int, out: Path) -> dict[str, Any]:
    """``medallion bench`` with this engine, in a home of its own under ``out``."""
    home = out / f"home-{name}"
    env = {**os.environ}
    server = None
    if mode is not None:
        server = start_spark_server(free_port(), mode, log=out / f"{name}-server.log")
        env |= {"MEDALLION_ENGINE": "spark", "MEDALLION_SPARK_REMOTE": server.remote}
    json_out = out / f"{name}-bench.json"
    try:
        command = [sys.executable, "-m", "medallion", "bench", "--scale", str(scale)]
        command += ["--runs", str(runs), "--home", str(home), "--out", str(json_out)]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        server_peak = _peak_mib(server.process.pid) if server is not None else None
    finally:
        if server is not None:
            server.stop()
    result: dict[str, Any] = json.loads(json_out.read_text())
    result["engine"] = name
    result["server_peak_rss_mib"] = server_peak
    result["slowest_tasks"] = slowest_tasks(home / "bench" / f"scale-{scale}" / f"run-{runs}")
    return result


def _peak_mib(pid: int) -> float | None:
    """The process's peak resident memory (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def slowest_tasks(home: Path, top: int = 5) -> dict[str, list[tuple[str, float]]]:
    """The ``top`` slowest tasks of each run in ``home`` (the bench's last run), by run."""
    settings = Settings(home=home)
    with AuditStore(settings.audit_location) as audit:
        logs = audit.run_logs()
    by_run: dict[str, list[tuple[str, float]]] = defaultdict(list)
    starts: dict[str, Any] = {}
    for row in logs:
        if row["started_at"] and row["ended_at"]:
            seconds = (row["ended_at"] - row["started_at"]).total_seconds()
            by_run[row["run_id"]].append((row["task"], round(seconds, 1)))
            starts[row["run_id"]] = min(
                starts.get(row["run_id"], row["started_at"]), row["started_at"]
            )
    ordered = sorted(by_run, key=lambda run: starts[run])
    return {
        stage: sorted(by_run[run], key=lambda t: -t[1])[:top]
        for stage, run in zip(RUNS, ordered, strict=False)
    }


def markdown(results: dict[str, dict[str, Any]], scale: float) -> str:
    names = list(results)
    lines = [
        f"| scale {scale:g} | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for stage in ("full_run", "no_change_run", "incremental_run"):
        cells = []
        for name in names:
            found = next(s for s in results[name]["stages"] if s["name"] == stage)
            layers = ", ".join(f"{k} {v:.1f}" for k, v in sorted(found["layers"].items()))
            server = results[name].get("server_peak_rss_mib")
            memory = f"{found['peak_rss_mib']['median'] / 1024:.1f} GiB"
            if server is not None and stage == "full_run":
                memory += f" + server {server / 1024:.1f} GiB (peak of the session)"
            cells.append(f"{found['seconds']['median']:.1f} s, {memory} ({layers})")
        lines.append(f"| {stage.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines.append("")
    for name in names:
        for stage, tasks in results[name].get("slowest_tasks", {}).items():
            shown = ", ".join(f"{task} {seconds:.1f}" for task, seconds in tasks)
            lines.append(f"- {name}, {stage.replace('_', ' ')}: {shown}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
