"""Side by side: a ``medallion bench`` result and a ``pyspark_baseline.py`` result of the same
scale, as JSON and a markdown table (medians; task seconds per layer for medallion, wall
seconds per layer for Spark). Standard library only: runs with any Python."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STAGES = ("full_run", "no_change_run", "incremental_run")


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        sys.exit(f"cannot read the bench result {path}: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        sys.exit(f"{path} is not a bench result: it has no list of stages")
    return data


def median(stage: dict[str, Any] | None, measure: str) -> float | None:
    if stage is None:
        return None
    value = stage.get(measure)
    return value.get("median") if isinstance(value, dict) else value


def ratio(a: float | None, b: float | None) -> float | None:
    return round(b / a, 2) if a and b is not None else None


def rows(medallion: dict[str, Any], spark: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per pipeline stage and one per layer of it; ``spark / medallion`` as x."""
    ours = {s["name"]: s for s in medallion["stages"]}
    theirs = {s["name"]: s for s in spark["stages"]}
    out = []
    start = median(theirs.get("spark_start"), "seconds")
    out.append({"what": "session start", "medallion_s": None, "spark_s": start, "x": None})
    for name in STAGES:
        m, s = ours.get(name), theirs.get(name)
        out.append(
            {
                "what": name,
                "medallion_s": median(m, "seconds"),
                "spark_s": median(s, "seconds"),
                "x": ratio(median(m, "seconds"), median(s, "seconds")),
                "medallion_peak_mib": median(m, "peak_rss_mib"),
                "spark_peak_mib": median(s, "peak_rss_mib"),
            }
        )
        for layer in ("bronze", "silver", "gold", "check"):
            mine = (m or {}).get("layers", {}).get(layer)
            other = (s or {}).get("layers", {}).get(layer)
            if mine is not None or other is not None:
                row = {"what": f"{name} / {layer}", "medallion_s": mine, "spark_s": other}
                out.append({**row, "x": ratio(mine, other)})
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    head = "| stage | medallion s | PySpark s | PySpark / medallion | peak MiB medallion "
    lines = [head + "| peak MiB PySpark |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        values = [r["medallion_s"], r["spark_s"], r["x"]]
        values += [r.get("medallion_peak_mib"), r.get("spark_peak_mib")]
        lines.append(f"| {r['what']} | " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("medallion", type=Path, help="medallion bench --out JSON")
    parser.add_argument("spark", type=Path, help="pyspark_baseline.py --out JSON")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args()
    ours, theirs = load(args.medallion), load(args.spark)
    if ours.get("scale") != theirs.get("scale"):
        sys.exit(f"the scales differ: {ours.get('scale')} and {theirs.get('scale')}")
    table = rows(ours, theirs)
    text = markdown(table)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"scale": ours["scale"], "medallion": ours["machine"], "spark": theirs["machine"]}
        args.out.with_name(args.out.name + ".json").write_text(
            json.dumps({**result, "rows": table}, indent=2)
        )
        args.out.with_name(args.out.name + ".md").write_text(text)


if __name__ == "__main__":
    main()
