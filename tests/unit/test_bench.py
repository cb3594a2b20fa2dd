"""The benchmark's pure parts: the spread of repeated runs, the machine description, the
comparison with a baseline (old single-number files too), the markdown table and the charts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from medallion.bench_charts import layers_chart, spread_chart, write_charts
from medallion.bench_summary import (
    compare,
    load_result,
    machine,
    markdown,
    median_of,
    spread,
    summarise,
)
from medallion.errors import MedallionError

SVG = "{http://www.w3.org/2000/svg}"


def stage(name: str, seconds: float, rss: float = 100.0, **layers: float) -> dict[str, Any]:
    return {
        "name": name,
        "seconds": seconds,
        "peak_rss_mib": rss,
        "rows": 10,
        "rows_per_s": 10 / seconds,
        "layers": {k: {"task_seconds": v, "rows": 5} for k, v in layers.items()},
    }


def three_runs() -> list[list[dict[str, Any]]]:
    return [
        [stage("generate", 2.0), stage("full_run", s, 400 + s, bronze=1.0, gold=g)]
        for s, g in ((12.0, 3.0), (10.0, 5.0), (30.0, 4.0))
    ]


def test_spread_is_min_median_max_and_zero_when_empty() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
    assert spread([]) == {"min": 0.0, "median": 0.0, "max": 0.0}


def test_summarise_keeps_stage_order_and_takes_medians_per_layer() -> None:
    rows = summarise(three_runs())
    assert [r["name"] for r in rows] == ["generate", "full_run"]
    full = rows[1]
    assert full["runs"] == 3
    assert full["seconds"] == {"min": 10.0, "median": 12.0, "max": 30.0}
    assert full["peak_rss_mib"]["median"] == 412.0
    assert full["layers"] == {"bronze": 1.0, "gold": 4.0}
    assert rows[0]["layers"] == {}


def test_a_layer_missing_from_one_run_counts_as_zero_there() -> None:
    runs = [[stage("full_run", 1.0, check=6.0)], [stage("full_run", 1.0)], [stage("full_run", 1)]]
    assert summarise(runs)[0]["layers"] == {"check": 0.0}


def test_machine_names_the_cpu_memory_and_versions() -> None:
    info = machine("folder")
    assert info["cores"] >= 1 and info["ram_gib"] > 0 and info["cpu"]
    assert info["lake"] == "folder"
    for package in ("duckdb", "deltalake", "pyarrow", "python"):
        assert info[package][0].isdigit(), (package, info[package])
    json.dumps(info)  # plain data


def result(stages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"scale": 0.5, "runs": 3, "stages": stages}


def test_compare_gives_ratios_of_medians_and_reads_old_single_number_files() -> None:
    current = result(summarise(three_runs()))
    old = result([{"name": "full_run", "seconds": 24.0, "peak_rss_mib": 206.0}])
    (row,) = compare(current, old)
    assert row["stage"] == "full_run"
    assert row["baseline s"] == 24.0 and row["current s"] == 12.0 and row["s ratio"] == 0.5
    assert row["MiB ratio"] == 2.0


def test_compare_without_a_common_stage_or_a_number_is_one_clear_error() -> None:
    current = result(summarise(three_runs()))
    with pytest.raises(MedallionError, match="none of this benchmark's stages"):
        compare(current, result([{"name": "other", "seconds": 1.0, "peak_rss_mib": 1.0}]))
    with pytest.raises(MedallionError, match="no number for seconds"):
        compare(current, result([{"name": "full_run", "seconds": "fast", "peak_rss_mib": 1}]))
    assert median_of({"seconds": 3}, "seconds") == 3.0


def test_load_result_refuses_missing_broken_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(MedallionError, match="no bench result at"):
        load_result(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(MedallionError, match="is not a bench result JSON file"):
        load_result(broken)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"stages": {"a": 1}}')
    with pytest.raises(MedallionError, match="has no list of stages"):
        load_result(foreign)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(result([])))
    assert load_result(good)["scale"] == 0.5


def test_markdown_has_one_row_per_stage_with_the_spread() -> None:
    text = markdown(result(summarise(three_runs())))
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[3].startswith("| full_run | 3 | 12 (10-30) | 412 (410-430) | bronze 1, gold 4 |")
    assert lines[2].endswith("| - |")


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def test_spread_chart_draws_a_bar_and_a_whisker_per_stage() -> None:
    stages = summarise(three_runs())
    root = parse(spread_chart("seconds", "s", stages, "seconds"))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [b.findtext(f"{SVG}title") for b in bars] == [
        "generate: median 2, min 2, max 2",
        "full_run: median 12, min 10, max 30",
    ]
    whiskers = [x for x in root.iter(f"{SVG}line") if x.get("class") == "whisker"]
    assert len(whiskers) == 6
    heights = [float(b.get("height", 0)) for b in bars]
    assert heights[1] == pytest.approx(heights[0] * 6, rel=0.01)


def test_layers_chart_stacks_the_layers_of_pipeline_runs_only() -> None:
    root = parse(layers_chart("layers", summarise(three_runs())))
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "full_run" in labels and "generate" not in labels
    assert "5" in labels  # the stacked total of 1 + 4
    assert {"bronze", "gold"} <= set(labels)


def test_stage_names_are_escaped_in_the_svg() -> None:
    stages = summarise([[stage("<script>&", 1.0, bronze=1.0)]])
    for svg in (spread_chart("t", "s", stages, "seconds"), layers_chart("t", stages)):
        assert "<script>" not in svg
        assert "<script>&" in [t.text for t in parse(svg).iter(f"{SVG}text")]


def test_write_charts_puts_three_svg_files_beside_the_json(tmp_path: Path) -> None:
    out = tmp_path / "scale-0.5.json"
    paths = write_charts(result(summarise(three_runs())), out)
    assert [p.name for p in paths] == [
        "scale-0.5-seconds.svg",
        "scale-0.5-memory.svg",
        "scale-0.5-layers.svg",
    ]
    for path in paths:
        assert "scale 0.5, 3 runs" in parse(path.read_text()).findtext(f"{SVG}title", "")
