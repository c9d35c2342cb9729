"""The Spark profile against the DuckDB profile: long-history retrieval, cost per row, memory.

Run: ``.venv/bin/python -m benchmarks.bench_spark_profile [--profile long_history]
[--rows 300000,1200000] [--quick] [--repeat 1] [--stock-rows 0] [--root DIR]``.

One data profile (``long_history`` by default: ~1,000 cards over 18 months, ~1.3M
transactions, full-length histories) is generated once into a DuckDB root and copied into a
Spark root (``FEATURE_PROFILE=spark``); the Spark state build (``build_features_spark``,
PySpark ``local[2]`` by default: ``SPARK_MASTER``) writes the Spark root's tables (timed once,
beside the DuckDB build; both skipped when a reused ``--root`` has them). Then, in this one
process, for each size of ``--rows`` (transactions drawn across the whole period):

* ``historical_features`` of the default feature service through the DuckDB as-of store and
  through the Spark as-of store (:mod:`feature_engine.spark.asof_store`), the training path;
* seconds (median over ``--repeat``), cost per row (microseconds), and the peak resident
  memory of the driver during the Spark retrieval: this Python process and the driver JVM
  (local mode: the driver is the executor too), sampled every 50 ms.

Printed at the end: Spark / DuckDB per size, and each store's per-row cost at the largest size
over the smallest (flat is 1.0). ``--stock-rows N`` also times Feast's own Spark store on N rows
(its join pairs every entity row with every earlier state row: keep N small). ``--quick`` uses
20,000 and 80,000 rows. Nothing is asserted. The Spark session's start is excluded.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from feature_repo.services import FEATURE_SERVICE_NAME, STATE_VELOCITY

QUICK_ROWS = (20_000, 80_000)
FULL_ROWS = (300_000, 1_200_000)


class DriverRss:
    """Peak resident memory of this process and of its children (the driver JVM), sampled."""

    def __init__(self, interval: float = 0.05) -> None:
        """Sample every ``interval`` seconds while the context is open."""
        self.python = self.jvm = self.total = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            own = me.memory_info().rss
            children = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a child that just ended
                    children += child.memory_info().rss
            self.python, self.jvm = max(self.python, own), max(self.jvm, children)
            self.total = max(self.total, own + children)
            time.sleep(self._interval)

    def __enter__(self) -> DriverRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def describe(self) -> str:
        """The peaks in GiB."""
        gib = 1024**3
        return (
            f"peak driver RSS {self.total / gib:.2f} GiB "
            f"(python {self.python / gib:.2f}, JVM {self.jvm / gib:.2f})"
        )


def _median_seconds(label: str, run: Callable[[], Any], repeat: int, rows: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    runs = ", ".join(f"{t:.1f}" for t in times)
    print(
        f"{label}: median {median:.1f} s over {repeat} run(s) ({runs} s), "
        f"{median / rows * 1e6:.1f} us/row",
        flush=True,
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long_history")
    parser.add_argument(
        "--rows",
        default=",".join(str(n) for n in FULL_ROWS),
        help="Comma-separated entity row counts to retrieve.",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 and 80,000 rows.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each retrieval.")
    parser.add_argument(
        "--stock-rows", type=int, default=0, help="Also time Feast's Spark store on this many."
    )
    parser.add_argument("--root", type=Path, help="Reuse (or create) this root.")
    args = parser.parse_args()
    sizes = QUICK_ROWS if args.quick else tuple(int(n) for n in args.rows.split(","))

    import pandas as pd

    from benchmarks._setup import prepare_root
    from feature_engine.offline.pipeline import build_features
    from feature_engine.spark.pipeline import build_features_spark
    from feature_engine.spark.session import spark_session
    from feature_engine.store import historical_features, open_store, repo_config, run_feast_cli
    from fraud_platform.settings import Settings, load_params

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-spark-"))
    started = time.perf_counter()
    duck = prepare_root(root / "duckdb", args.profile)  # generate, DuckDB tables, apply
    print(
        f"DuckDB root ready (generate/build/apply as needed): {time.perf_counter() - started:.1f} s"
    )
    spark_root = root / "spark"
    if not (spark_root / "data" / "raw").exists():
        shutil.copytree(duck.paths.raw_dir, spark_root / "data" / "raw")
        shutil.copy(duck.paths.params_file, spark_root / "params.yaml")
    spark_settings = Settings(
        project_root=spark_root, redis_url=duck.redis_url, feature_profile="spark"
    )
    features = load_params(duck.paths.params_file).features
    transactions = pd.read_parquet(duck.paths.raw_table("transactions"))
    print(
        f"root {root}: {len(transactions):,} transactions ({args.profile}); "
        f"spark.master {spark_settings.spark_master}",
        flush=True,
    )

    started = time.perf_counter()
    spark = spark_session(spark_settings)
    print(f"Spark session start: {time.perf_counter() - started:.1f} s (excluded below)")
    spark.sparkContext.setLogLevel("ERROR")

    # ------------------------------------------------------------------ state build (once)
    if not (spark_root / "data" / "features" / "customer_activity.parquet").exists():
        _median_seconds(
            "state build, DuckDB",
            lambda: build_features(
                duck.paths, features, STATE_VELOCITY, out_dir=root / "scratch" / "duckdb"
            ),
            1,
            len(transactions),
        )
        _median_seconds(
            "state build, Spark",
            lambda: build_features_spark(spark_settings, features, STATE_VELOCITY),
            1,
            len(transactions),
        )
        applied = run_feast_cli(spark_settings, "apply", capture=True)
        if applied.returncode != 0:
            raise RuntimeError(f"feast apply (spark) failed:\n{applied.stderr[-3000:]}")

    # ------------------------------------------------------------------ retrieval
    duck_store, spark_store = open_store(duck), open_store(spark_settings)
    warm = transactions.sample(n=min(2_000, len(transactions)), random_state=1)
    for store in (duck_store, spark_store):  # JIT, first Parquet reads: not in the figures
        historical_features(store, warm, FEATURE_SERVICE_NAME, progress=None)
    results: dict[int, tuple[float, float]] = {}
    for rows in sizes:
        sample = transactions.sample(n=min(rows, len(transactions)), random_state=0)
        n = len(sample)
        duck_get = _median_seconds(
            f"retrieval of {n:,} rows, DuckDB as-of store",
            partial(historical_features, duck_store, sample, FEATURE_SERVICE_NAME, progress=None),
            args.repeat,
            n,
        )
        with DriverRss() as rss:
            spark_get = _median_seconds(
                f"retrieval of {n:,} rows, Spark as-of store",
                partial(
                    historical_features, spark_store, sample, FEATURE_SERVICE_NAME, progress=None
                ),
                args.repeat,
                n,
            )
        print(f"  Spark retrieval of {n:,} rows: {rss.describe()}", flush=True)
        results[n] = (duck_get / n, spark_get / n)
    if args.stock_rows:
        section = repo_config(spark_settings).offline_store
        stock = open_store(spark_settings, {"type": "spark", "spark_conf": section.spark_conf})
        sample = transactions.sample(n=min(args.stock_rows, len(transactions)), random_state=0)
        _median_seconds(
            f"retrieval of {len(sample):,} rows, Feast's Spark store",
            lambda: historical_features(stock, sample, FEATURE_SERVICE_NAME, progress=None),
            args.repeat,
            len(sample),
        )

    print("summary:")
    for n, (duck_per_row, spark_per_row) in results.items():
        print(f"  {n:>9,} rows: Spark / DuckDB {spark_per_row / duck_per_row:.2f}x")
    if len(results) > 1:
        small, large = min(results), max(results)
        for k, name in enumerate(("DuckDB", "Spark")):
            ratio = results[large][k] / results[small][k]
            print(f"  per-row cost {large:,} / {small:,} rows, {name}: {ratio:.2f}x")
    spark.stop()


if __name__ == "__main__":
    main()
