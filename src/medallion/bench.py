"""Benchmark: each stage runs as its own `medallion` process; wall time and the peak RSS of
that process are measured (``os.wait4``), per-layer times come from the audit log. Only the CLI
is invoked, so the benchmark measures whatever the pipeline does today."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medallion.audit import AuditStore
from medallion.bench_charts import write_charts
from medallion.bench_summary import machine, summarise
from medallion.errors import MedallionError
from medallion.runner import new_run_id
from medallion.settings import Settings
from medallion.storage import is_object_store, join_uri


@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss_mib: float
    rows: int = 0
    rows_per_s: float = 0.0
    layers: dict[str, dict[str, float]] = field(default_factory=dict)


def run_stage(name: str, args: list[str], env: dict[str, str] | None = None) -> Stage:
    """Run ``medallion ARGS`` in a fresh process; fail with its last output line on error."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medallion", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise MedallionError(f"bench stage {name} failed: {tail[0]}")
    return Stage(name, round(seconds, 2), round(usage.ru_maxrss / 1024, 1))


def layer_times(settings: Settings, run_id: str) -> tuple[int, dict[str, dict[str, float]]]:
    """Rows written and summed task seconds per layer of one run, from the audit log."""
    with AuditStore(settings.audit_location) as audit:
        rows = audit.run_logs(run_id=run_id)
    layers: dict[str, dict[str, float]] = defaultdict(lambda: {"task_seconds": 0.0, "rows": 0})
    for r in rows:
        if r["ended_at"] and r["started_at"]:
            layers[r["layer"]]["task_seconds"] += (r["ended_at"] - r["started_at"]).total_seconds()
        layers[r["layer"]]["rows"] += r["rows_written"] or 0
    total = int(sum(v["rows"] for v in layers.values()))
    return total, {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in layers.items()}


RUN_STAGES = ("full_run", "no_change_run", "change_1pct", "incremental_run")


def bench(
    settings: Settings, scale: float, out: Path | None = None, runs: int = 3
) -> dict[str, Any]:
    """Generate once, then ``runs`` times in a fresh home holding a copy of that source: full
    run, no-change run, 1 % change batch, incremental run. On an object store each run writes
    under a fresh prefix of the lake; an external source (``source_url``) cannot be copied, so
    it is generated again before each run."""
    if runs < 1:
        raise MedallionError(f"--runs must be at least 1, got {runs}")
    object_store = is_object_store(settings.lake_location)
    about = machine("object store" if object_store else "folder")  # the load before the work
    seed = settings.home / "generated"
    generated = None if settings.source_url else _generate(settings, seed, scale, {})
    samples: list[list[Stage]] = []
    for i in range(1, runs + 1):
        home = settings.home / f"run-{i}"
        shutil.rmtree(home, ignore_errors=True)
        run_settings, env = _run_settings(settings, home, scale, object_store)
        if generated is None:
            stages = [_generate(run_settings, home, scale, env)]
        else:  # generated once: one sample, in the first run
            shutil.copytree(seed, home)
            stages = [generated] if i == 1 else []
        stages += _pipeline_stages(run_settings, scale, env)
        samples.append(stages)
        if i < runs:  # keep the last run's home to look at
            shutil.rmtree(home, ignore_errors=True)
    result = {
        "scale": scale,
        "runs": runs,
        "machine": about,
        "stages": summarise([[asdict(s) for s in run] for run in samples]),
        "samples": [[asdict(s) for s in run] for run in samples],
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result["charts"] = [str(p) for p in write_charts(result, out)]
        out.write_text(json.dumps(result, indent=2))
    return result


def _run_settings(
    settings: Settings, home: Path, scale: float, object_store: bool
) -> tuple[Settings, dict[str, str]]:
    """The settings of one run's home, and the environment its processes need."""
    update: dict[str, Any] = {"home": home}
    env: dict[str, str] = {}
    if object_store:
        lake = join_uri(settings.lake_location, "bench", f"scale-{scale}-{new_run_id()}")
        env["MEDALLION_LAKE_URI"] = lake
        update["lake_uri"] = lake
    return settings.model_copy(update=update), env


def _args(settings: Settings) -> list[str]:
    src = ["--source-url", settings.source_url] if settings.source_url else []
    return ["--home", str(settings.home), *src]


def _generate(settings: Settings, home: Path, scale: float, env: dict[str, str]) -> Stage:
    shutil.rmtree(home, ignore_errors=True)
    args = _args(settings.model_copy(update={"home": home}))
    return run_stage("generate", ["source", "generate", "--scale", str(scale), *args], env)


def _pipeline_stages(settings: Settings, scale: float, env: dict[str, str]) -> list[Stage]:
    """Full run, the same run again with nothing changed, a 1 % change batch, incremental run."""
    orders = max(1, round(99_441 * scale / 100))
    change = ["--new-orders", str(orders), "--status-updates", str(orders)]
    change += ["--customer-moves", str(max(1, orders // 10))]
    stages = []
    for name in RUN_STAGES:
        if name == "change_1pct":
            stages.append(run_stage(name, ["source", "change", *change, *_args(settings)], env))
            continue
        run_id = new_run_id()
        stage = run_stage(name, ["run", "--run-id", run_id, *_args(settings)], env)
        stage.rows, stage.layers = layer_times(settings, run_id)
        stage.rows_per_s = round(stage.rows / stage.seconds, 1) if stage.seconds else 0.0
        stages.append(stage)
    return stages


def _percentile(values: list[float], percent: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


def bench_stream(
    settings: Settings, events: int, batch_sizes: tuple[int, ...] = (1_000, 10_000)
) -> dict[str, Any]:
    """``events`` review events (2 % defects) through a bundled broker into Silver, once per
    batch size: events/s from the topic into Silver while there is work (Bronze commits and
    Silver merges; the group join and the idle wait at the end are left out) and the Bronze
    commit latency p50/p99. Runs in this process, on a small generated source."""
    from medallion import api
    from medallion.stream.kafka import running_broker

    api.generate_source(settings, scale=0.05, seed=1)
    if not api.run(settings, ["bronze", "silver"]).ok:
        raise MedallionError("the source could not be run into Silver; see `medallion audit`")
    results = []
    with running_broker() as broker:
        for size in batch_sizes:
            tag = f"bench-{size}-{new_run_id()}"
            s = settings.model_copy(
                update={
                    "kafka_bootstrap_servers": broker.bootstrap,
                    "kafka_topic": tag,
                    "kafka_group_id": tag,
                    "stream_batch_size": size,
                }
            )
            sent = api.stream_produce(s, count=events, seed=size, dirty_rate=0.02)
            consumed = api.stream_consume(s, idle_timeout_s=2)
            commits = [b.commit_seconds for b in consumed.batches]
            results.append(
                {
                    "batch_size": size,
                    "events": consumed.messages,
                    "produce_events_per_s": round(sent.sent / sent.seconds)
                    if sent.seconds
                    else None,
                    "events_per_s_into_silver": round(consumed.events_per_s or 0),
                    "busy_seconds": round(consumed.busy_s, 3),
                    "batches": len(consumed.batches),
                    "silver_merges": len(consumed.silver),
                    "commit_p50_ms": round(1000 * (_percentile(commits, 50) or 0), 1),
                    "commit_p99_ms": round(1000 * (_percentile(commits, 99) or 0), 1),
                    "quarantined": consumed.quarantined,
                }
            )
    return {"stream": results, "cpus": os.cpu_count()}
