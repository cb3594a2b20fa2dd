"""`medallion bench` as a user runs it: a tiny scale end to end (each stage a fresh process),
and a bad baseline refused in one line before any work."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

STAGES = ["generate", "full_run", "no_change_run", "change_1pct", "incremental_run"]


def medallion(*args: str, home: Path, timeout: int = 280) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medallion", *args, "--home", str(home)],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_bench_at_a_tiny_scale_writes_json_charts_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "out" / "tiny.json"
    baseline = tmp_path / "old.json"  # an old single-run result: one number per stage
    baseline.write_text(json.dumps({"stages": [{"name": "full_run", "seconds": 0.5,
                                                "peak_rss_mib": 1.0}]}))  # fmt: skip
    args = ["--scale", "0.01", "--runs", "1", "--out", str(out), "--compare", str(baseline)]
    done = medallion("bench", *args, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "against" in done.stdout and "s ratio" in done.stdout
    result = json.loads(out.read_text())
    assert [s["name"] for s in result["stages"]] == STAGES
    assert result["runs"] == 1 and len(result["samples"]) == 1
    full, no_change, incremental = (result["stages"][i] for i in (1, 2, 4))
    assert full["rows"] > 0 and incremental["rows"] > 0
    assert set(full["layers"]) >= {"bronze", "silver", "gold"}
    assert no_change["rows"] < incremental["rows"] < full["rows"]
    assert full["seconds"]["min"] == full["seconds"]["median"] > 0
    assert result["machine"]["lake"] == "folder" and result["machine"]["cores"] >= 1
    for kind in ("seconds", "memory", "layers"):
        ET.parse(out.with_name(f"tiny-{kind}.svg"))  # well-formed
    # only the last run's home is kept, beside the generated source
    work = tmp_path / "bench" / "scale-0.01"
    assert sorted(p.name for p in work.iterdir()) == ["generated", "run-1"]


def test_a_bad_baseline_is_one_line_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    done = medallion("bench", "--scale", "0.01", "--compare", str(bad), home=tmp_path, timeout=60)
    assert done.returncode == 1
    assert "is not a bench result" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bench").exists()
