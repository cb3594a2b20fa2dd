"""Plain data about a benchmark: the machine it ran on, the spread of repeated runs, a
comparison against a baseline JSON and a markdown table. Pure functions over dicts, so they
read old result files too (``seconds`` a number instead of ``{min, median, max}``)."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from medallion.errors import MedallionError

Sample = Mapping[str, Any]  # one stage of one run, as ``asdict(Stage)``


def spread(values: Sequence[float]) -> dict[str, float]:
    """Min, median and max, rounded to 2 decimals; all 0 when there are no values."""
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def summarise(runs: Sequence[Sequence[Sample]]) -> list[dict[str, Any]]:
    """One row per stage name (in first-seen order) over every run that has it: the spread of
    wall time and peak RSS, the median rows, rows/s and task seconds per layer."""
    by_name: dict[str, list[Sample]] = {}
    for run in runs:
        for stage in run:
            by_name.setdefault(stage["name"], []).append(stage)
    rows = []
    for name, stages in by_name.items():
        layer_names = sorted({layer for s in stages for layer in s.get("layers", {})})
        rows.append(
            {
                "name": name,
                "runs": len(stages),
                "seconds": spread([s["seconds"] for s in stages]),
                "peak_rss_mib": spread([s["peak_rss_mib"] for s in stages]),
                "rows": int(statistics.median(s.get("rows", 0) for s in stages)),
                "rows_per_s": round(statistics.median(s.get("rows_per_s", 0) for s in stages), 1),
                "layers": {
                    layer: round(
                        statistics.median(
                            s.get("layers", {}).get(layer, {}).get("task_seconds", 0.0)
                            for s in stages
                        ),
                        2,
                    )
                    for layer in layer_names
                },
            }
        )
    return rows


def median_of(stage: Mapping[str, Any], measure: str) -> float:
    """The median of ``seconds`` or ``peak_rss_mib``, also from a file with single numbers."""
    value = stage.get(measure)
    if isinstance(value, Mapping):
        value = value.get("median")
    if not isinstance(value, int | float):
        raise MedallionError(f"bench stage {stage.get('name')!r} has no number for {measure}")
    return float(value)


def _cpu_model() -> str:
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = text.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return os.uname().machine


def _ram_gib() -> float:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0.0
    return round(pages * size / 2**30, 1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(lake: str) -> dict[str, Any]:
    """What the numbers were measured on (the load average says how busy it was at start)."""
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}",
        "python": platform.python_version(),
        "medallion": _version("medallion"),
        "duckdb": _version("duckdb"),
        "deltalake": _version("deltalake"),
        "pyarrow": _version("pyarrow"),
        "lake": lake,
        "load_average_at_start": load,
    }


def load_result(path: Path) -> dict[str, Any]:
    """A bench JSON file; one clear line when it is missing or not a bench result."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MedallionError(f"no bench result at {path}; run `medallion bench --out`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedallionError(f"{path} is not a bench result JSON file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        raise MedallionError(f"{path} is not a bench result: it has no list of stages")
    return data


def compare(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Median seconds and peak RSS of each stage in both results, and current / baseline."""
    base = {s["name"]: s for s in baseline["stages"]}
    rows = []
    for stage in current["stages"]:
        old = base.get(stage["name"])
        if old is None:
            continue
        row: dict[str, Any] = {"stage": stage["name"]}
        for measure, short in (("seconds", "s"), ("peak_rss_mib", "MiB")):
            now, then = median_of(stage, measure), median_of(old, measure)
            row[f"baseline {short}"] = then
            row[f"current {short}"] = now
            row[f"{short} ratio"] = round(now / then, 2) if then else None
        rows.append(row)
    if not rows:
        raise MedallionError("the baseline has none of this benchmark's stages to compare")
    return rows


def markdown(result: Mapping[str, Any]) -> str:
    """The results table of a bench result, as in bench/README.md."""
    lines = [
        "| stage | runs | seconds median (min-max) | peak RSS MiB median (min-max) | "
        "task s per layer (median) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for s in result["stages"]:
        sec, rss = s["seconds"], s["peak_rss_mib"]
        layers = ", ".join(f"{k} {v:g}" for k, v in s.get("layers", {}).items()) or "-"
        lines.append(
            f"| {s['name']} | {s['runs']} | {sec['median']:g} ({sec['min']:g}-{sec['max']:g}) "
            f"| {rss['median']:g} ({rss['min']:g}-{rss['max']:g}) | {layers} |"
        )
    return "\n".join(lines) + "\n"
