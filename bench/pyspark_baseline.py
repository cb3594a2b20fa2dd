"""The same work as ``medallion run`` done the usual PySpark way, on ``local[2]``, as a baseline.

Run it with the Python of ``.venv-bench`` (``make bench-compare``); it needs Java 17 and the
``medallion`` command of the project's own venv, which generates the source (the same seed as
``medallion bench``, so the same rows) and applies the same 1 % change batch. Per run, in a
fresh copy of the generated source:

- ``full_run``: Bronze (every source row read from SQLite with Python's sqlite3 into Arrow,
  staged as Parquet, read by Spark, ingestion columns added, written as Parquet), Silver (typed,
  latest row per key, deletes kept as ``is_deleted`` so Gold reads live rows only) and Gold
  (current-row dimensions for customers, products and sellers; ``fact_order_item``,
  ``fact_payment`` and ``fact_order`` with the joins of ``src/medallion/gold/facts.py``).
- ``no_change_run``: the same again with nothing changed.
- ``incremental_run`` after the change batch: Bronze appends the rows with ``updated_at`` at or
  after the watermark; Silver and Gold are recomputed from Bronze (the Spark way).

Timed: each pass from the first source read to the last Parquet file written, per layer; the
Spark session start is its own stage. Not timed: generating the source and the change batch.
Each run is a fresh Python process with its own JVM, so the session start is cold every time.
Memory: the peak resident set (VmHWM) of the JVM plus the Python driver's peak, so far in the run.
Written as Parquet, not Delta (Delta's jars come from Maven, not reachable here); no checks,
no SCD2 history, no quarantine, no audit log: medallion does all of those in its runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from spark_gold import DIMENSIONS, FACTS

TS = ("updated_at", "deleted_at")
# lake name: (source table, key, timestamp columns, money columns)
TABLES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "customers": ("olist_customers_dataset", ("customer_id",), (), ()),
    "geolocation": ("olist_geolocation_dataset", ("geolocation_id",), (), ()),
    "order_items": (
        "olist_order_items_dataset",
        ("order_id", "order_item_id"),
        ("shipping_limit_date",),
        ("price", "freight_value"),
    ),
    "order_payments": (
        "olist_order_payments_dataset",
        ("order_id", "payment_sequential"),
        (),
        ("payment_value",),
    ),
    "order_reviews": (
        "olist_order_reviews_dataset",
        ("review_id", "order_id"),
        ("review_creation_date", "review_answer_timestamp"),
        (),
    ),
    "orders": (
        "olist_orders_dataset",
        ("order_id",),
        (
            "order_purchase_timestamp",
            "order_approved_at",
            "order_delivered_carrier_date",
            "order_delivered_customer_date",
            "order_estimated_delivery_date",
        ),
        (),
    ),
    "products": ("olist_products_dataset", ("product_id",), (), ()),
    "sellers": ("olist_sellers_dataset", ("seller_id",), (), ()),
    "product_category_name_translation": (
        "product_category_name_translation",
        ("product_category_name",),
        (),
        (),
    ),
}
ARROW_TYPES = {"TEXT": pa.string(), "INTEGER": pa.int64(), "REAL": pa.float64()}


def extract(db: Path, source: str, since: str | None) -> pa.Table:
    """Rows of one source table (those with ``updated_at >= since``) as an Arrow table."""
    with sqlite3.connect(db) as con:
        types = {r[1]: ARROW_TYPES[r[2]] for r in con.execute(f'PRAGMA table_info("{source}")')}
        where, params = (" WHERE updated_at >= ?", (since,)) if since else ("", ())
        cur = con.execute(f'SELECT * FROM "{source}"{where}', params)
        names = [d[0] for d in cur.description]
        columns = list(zip(*cur.fetchall(), strict=True)) or [() for _ in names]
    return pa.table({n: pa.array(c, type=types[n]) for n, c in zip(names, columns, strict=True)})


class Lake:
    """Where one run's Parquet tables live, and the Bronze watermarks."""

    def __init__(self, spark: SparkSession, root: Path) -> None:
        self.spark, self.root = spark, root
        self.watermarks: dict[str, str] = {}

    def path(self, layer: str, name: str) -> str:
        return str(self.root / layer / name)

    def bronze(self, db: Path, run_id: str) -> int:
        """Extract each table since its watermark and append it to Bronze; rows written."""
        written = 0
        for name, (source, *_) in TABLES.items():
            rows = extract(db, source, self.watermarks.get(name))
            if rows.num_rows == 0:
                continue
            self.watermarks[name] = pc.max(rows["updated_at"]).as_py()
            staging = self.root / "staging" / name
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            pq.write_table(rows, staging / "part-0.parquet")
            df = self.spark.read.parquet(str(staging)).select(
                "*",
                F.lit(run_id).alias("_run_id"),
                F.current_timestamp().alias("_ingested_at"),
                F.col("updated_at").cast("timestamp").alias("_source_updated_at"),
                F.when(F.col("deleted_at").isNotNull(), "delete").otherwise("upsert").alias("_op"),
                F.current_date().alias("_ingest_date"),
            )
            df.write.mode("append").parquet(self.path("bronze", name))
            written += rows.num_rows
        return written

    def silver(self) -> None:
        """Typed, the latest row per key, ``is_deleted`` from the last operation."""
        for name, (_, key, timestamps, money) in TABLES.items():
            df = self.spark.read.parquet(self.path("bronze", name))
            for column in (*timestamps, *TS):
                df = df.withColumn(column, F.col(column).cast("timestamp"))
            for column in money:
                df = df.withColumn(column, F.col(column).cast("decimal(12,2)"))
            latest = Window.partitionBy(*key).orderBy(
                F.col("updated_at").desc(), F.col("_ingested_at").desc()
            )
            df = (
                df.withColumn("_rn", F.row_number().over(latest))
                .where("_rn = 1")
                .drop("_rn", "_op", "_ingest_date", "_source_updated_at")
                .withColumn("is_deleted", F.col("deleted_at").isNotNull())
            )
            df.write.mode("overwrite").parquet(self.path("silver", name))

    def gold(self) -> None:
        """Dimensions (current rows), then the facts over Silver and the dimensions."""
        for name in TABLES:
            self.spark.read.parquet(self.path("silver", name)).createOrReplaceTempView(name)
        for group in (DIMENSIONS, FACTS):
            for name, sql in group.items():
                self.spark.sql(sql).write.mode("overwrite").parquet(self.path("gold", name))
            for name in group:
                self.spark.read.parquet(self.path("gold", name)).createOrReplaceTempView(name)


def peak_rss_mib(spark: SparkSession) -> float:
    """VmHWM of the JVM (the driver and its local executors) plus this Python's peak."""
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
    jvm_kib = 0
    for text in Path(f"/proc/{jvm_pid}/status").read_text().splitlines():
        if text.startswith("VmHWM:"):
            jvm_kib = int(text.split()[1])
    python_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round((jvm_kib + python_kib) / 1024, 1)


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 2)


def one_pass(lake: Lake, db: Path, name: str) -> dict[str, Any]:
    layers: dict[str, float] = {}
    rows = [0]

    def bronze() -> None:
        rows[0] = lake.bronze(db, f"{name}-{time.time_ns()}")

    layers["bronze"] = timed(bronze)
    layers["silver"] = timed(lake.silver)
    layers["gold"] = timed(lake.gold)
    return {
        "name": name,
        "seconds": round(sum(layers.values()), 2),
        "peak_rss_mib": peak_rss_mib(lake.spark),
        "rows": rows[0],
        "layers": layers,
    }


def medallion(cli: str, *args: str) -> None:
    """Run the project's own CLI (generate, change): not timed."""
    done = subprocess.run([cli, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{cli} {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")


def spark_session() -> SparkSession:
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("medallion-baseline")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_once(cli: str, seed: Path, work: Path, scale: float) -> list[dict[str, Any]]:
    """One run in a fresh copy of the source: session start, full, no-change, incremental."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(seed, work)
    db = work / "source.db"
    stages: list[dict[str, Any]] = []
    started = time.perf_counter()
    spark = spark_session()
    spark.range(1).count()
    stages.append(
        {
            "name": "spark_start",
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mib": peak_rss_mib(spark),
            "rows": 0,
            "layers": {},
        }
    )
    lake = Lake(spark, work / "lake")
    stages.append(one_pass(lake, db, "full_run"))
    stages.append(one_pass(lake, db, "no_change_run"))
    orders = str(max(1, round(99_441 * scale / 100)))
    change = ["--new-orders", orders, "--status-updates", orders]
    change += ["--customer-moves", str(max(1, int(orders) // 10))]
    medallion(cli, "source", "change", *change, "--home", str(work))
    stages.append(one_pass(lake, db, "incremental_run"))
    spark.stop()
    return stages


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def summarise(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The same shape as ``medallion bench``'s stages, so one comparison reads both."""
    rows = []
    for i, first in enumerate(runs[0]):
        stages = [run[i] for run in runs]
        rows.append(
            {
                "name": first["name"],
                "runs": len(stages),
                "seconds": spread([s["seconds"] for s in stages]),
                "peak_rss_mib": spread([s["peak_rss_mib"] for s in stages]),
                "rows": int(statistics.median(s["rows"] for s in stages)),
                "layers": {
                    k: round(statistics.median(s["layers"][k] for s in stages), 2)
                    for k in first["layers"]
                },
            }
        )
    return rows


def describe() -> dict[str, Any]:
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    cpu = next(
        (
            t.split(":", 1)[1].strip()
            for t in Path("/proc/cpuinfo").read_text().splitlines()
            if t.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": (java.stderr.splitlines() or ["?"])[0],
        "master": "local[2]",
        "lake": "folder (Parquet)",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def one_run_in_a_fresh_process(args: argparse.Namespace, seed: Path, i: int) -> list[Any]:
    """A run in its own Python and JVM, so each starts cold and its peak memory is its own."""
    work = args.work / f"scale-{args.scale}" / f"run-{i}"
    command = [sys.executable, __file__, "--scale", str(args.scale), "--medallion"]
    command += [args.medallion, "--out", str(args.out), "--one-run", str(seed), str(work)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"run {i} failed: {done.stderr.strip()[-2000:]}")
    stages: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if i < args.runs:  # keep the last run's lake to look at
        shutil.rmtree(work)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--medallion", default="medallion", help="the project's CLI")
    parser.add_argument("--work", type=Path, default=Path("medallion_home/bench/spark"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--one-run", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1 or args.scale <= 0:
        sys.exit("--runs must be at least 1 and --scale above 0")
    if args.one_run:  # the child of one_run_in_a_fresh_process
        print(json.dumps(run_once(args.medallion, *args.one_run, args.scale)))
        return
    seed = args.work / f"scale-{args.scale}" / "generated"
    shutil.rmtree(seed, ignore_errors=True)
    machine = describe()
    medallion(args.medallion, "source", "generate", "--scale", str(args.scale), "--home", str(seed))
    runs = [one_run_in_a_fresh_process(args, seed, i) for i in range(1, args.runs + 1)]
    result = {
        "engine": f"pyspark {machine['pyspark']} local[2], Parquet",
        "scale": args.scale,
        "runs": args.runs,
        "machine": machine,
        "stages": summarise(runs),
        "samples": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for stage in result["stages"]:
        print(f"{stage['name']:>16}: {stage['seconds']['median']:8.2f} s  {stage['layers']}")


if __name__ == "__main__":
    main()
