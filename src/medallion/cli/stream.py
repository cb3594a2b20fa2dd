"""`medallion stream`: review events on Kafka (the kafka extra)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from medallion import api
from medallion.cli.common import HomeOpt, SourceOpt, cli_errors, settings_for
from medallion.console import error_line, out_console

stream_app = typer.Typer(
    help="Review events on Kafka: a local broker, the producer, the event schema, and the "
    "exactly-once consumer into the lake (the kafka extra).",
    no_args_is_help=True,
)


@stream_app.command("produce")
@cli_errors
def stream_produce(
    count: Annotated[
        int, typer.Option(help="Synthetic events to send (ignored with --replay).")
    ] = 10_000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same events.")
    ] = 42,
    dirty_rate: Annotated[
        float,
        typer.Option(
            help="Share of defects (0-0.5): not JSON, wrong type, score out of range, "
            "unknown order, duplicate."
        ),
    ] = 0.0,
    replay: Annotated[
        bool, typer.Option("--replay", help="Send the source's reviews as events instead.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(help="Send at most this many messages per second.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop sending after this many seconds.")
    ] = None,
    home: HomeOpt = None,
    source_url: SourceOpt = None,
) -> None:
    """Publish review events of the source's orders to the topic (kafka_topic at
    kafka_bootstrap_servers) and wait until the broker has acknowledged every one."""
    settings = settings_for(home, source_url=source_url)
    result = api.stream_produce(
        settings,
        count=count,
        seed=seed,
        dirty_rate=dirty_rate,
        replay=replay,
        rate=rate,
        duration=duration,
    )
    out_console.print(
        f"sent {result.sent:,} messages ({result.bytes:,} bytes) to {settings.kafka_topic} "
        f"in {result.seconds:.2f} s: {result.per_second:,.0f} messages/s",
        markup=False,
        highlight=False,
    )


@stream_app.command("schema")
@cli_errors
def stream_schema() -> None:
    """Print the review event contract as a JSON schema."""
    out_console.print_json(json.dumps(api.stream_schema()))


@stream_app.command("broker")
@cli_errors
def stream_broker(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to listen on.")] = 9092,
    storage: Annotated[
        str, typer.Option(help="Where topics live: memory://tansu/ (lost at exit) or s3://bucket/.")
    ] = "memory://tansu/",
) -> None:
    """Run the bundled Kafka-protocol broker (Tansu) on 127.0.0.1 in the foreground until
    SIGINT (Ctrl-C) or SIGTERM."""
    from medallion.runner import StopSignals

    with StopSignals() as signals:
        broker = api.start_stream_broker(port, storage)
        try:
            out_console.print(f"Kafka broker listening on {broker.bootstrap} (storage {storage})")
            out_console.print(f"use: MEDALLION_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
            while signals.by is None and broker.process.poll() is None:
                signals.stopped.wait(0.2)
        finally:
            broker.stop()
    if signals.by is None:
        error_line(f"the Kafka broker exited by itself (code {broker.process.returncode})")
        raise typer.Exit(1)
    out_console.print("broker stopped")


@stream_app.command("consume")
@cli_errors
def stream_consume_command(
    home: HomeOpt = None,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", min=1, help="Stop after this many messages.")
    ] = None,
    max_batches: Annotated[
        int | None, typer.Option("--max-batches", min=1, help="Stop after this many batches.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout", min=0, help="Stop after this many seconds without a message."
        ),
    ] = None,
) -> None:
    """Consume review events into bronze/silver/quarantine review_events, exactly once.

    Runs until a limit is reached, or SIGINT/SIGTERM (the current micro-batch is committed,
    then exit 0). Offsets live in the lake, committed with the rows: a restart resumes exactly
    where the last commit ended.
    """
    result = api.stream_consume(
        settings_for(home),
        max_messages=max_messages,
        max_batches=max_batches,
        idle_timeout_s=idle_timeout,
    )
    seconds = sum(b.seconds for b in result.batches)
    rate = f", {result.messages / seconds:,.0f} events/s while writing" if seconds else ""
    out_console.print(
        f"consumed {result.messages:,} message(s) in {len(result.batches)} batch(es), "
        f"{result.quarantined:,} quarantined{rate}; stopped by {result.stopped_by}"
    )
