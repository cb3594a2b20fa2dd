"""`medallion doctor` and `medallion bench`: health of the configured parts, and timings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from medallion.cli.common import HomeOpt, SourceOpt, cli_errors, settings_for
from medallion.console import error_line, out_console, rows_table


@cli_errors
def doctor_command(
    home: HomeOpt = None,
    broker: Annotated[
        bool | None,
        typer.Option(
            "--broker/--no-broker",
            help="Probe the Kafka broker [default: when kafka_bootstrap_servers is set].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check each configured part (source, audit store, lake, broker, webhooks): reachable,
    its version, and what to fix. Exit 1 if a part fails."""
    from medallion.doctor import Health, diagnose

    findings = diagnose(settings_for(home), broker=broker)
    for f in findings:  # one line per part, never wrapped
        where = f" {f.where}" if f.where else ""
        detail = f": {f.detail}" if f.detail else ""
        fix = f" -> {f.fix}" if f.fix else ""
        line = f"{f.part:<18} {f.health.value:<15}{where}{detail}{fix}"
        out_console.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)
    failed = [f.part for f in findings if f.health is Health.FAIL]
    if failed:
        error_line(f"{len(failed)} part(s) failing: {', '.join(failed)}")
        raise typer.Exit(1)


@cli_errors
def bench_command(
    scale: Annotated[float, typer.Option(help="Scale factor to benchmark.")] = 1.0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON here, and SVG charts beside it.")
    ] = None,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Repeat the run sequence N times (min/median/max).")
    ] = 3,
    compare: Annotated[
        Path | None,
        typer.Option("--compare", help="A bench JSON to compare with: prints median ratios."),
    ] = None,
    stream: Annotated[
        int | None,
        typer.Option(
            "--stream",
            min=1,
            help="Instead: N review events through a bundled broker into Silver, at batch "
            "sizes 1k and 10k (events/s, commit latency p50/p99; the kafka extra).",
        ),
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Time generate, full run, no-change run, a 1 % change batch and the incremental run."""
    from medallion.bench import bench, bench_stream
    from medallion.bench_summary import compare as compare_results
    from medallion.bench_summary import load_result

    baseline = load_result(compare) if compare is not None else None  # fail before the work
    base = settings_for(home, source_url=source_url)
    work = base.home / "bench" / (f"stream-{stream}" if stream else f"scale-{scale}")
    shutil.rmtree(work, ignore_errors=True)
    if stream:
        result = bench_stream(settings_for(work, source_url=source_url), stream)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
    else:
        result = bench(settings_for(work, source_url=source_url), scale, out, runs)
    out_console.print_json(json.dumps(result))
    if baseline is not None and not stream:
        out_console.print(rows_table(f"against {compare}", compare_results(result, baseline)))
