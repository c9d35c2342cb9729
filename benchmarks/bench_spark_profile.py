"""The Spark profile against the DuckDB profile: state build and training retrieval.

Run: ``.venv/bin/python -m benchmarks.bench_spark_profile [--profile long_history]
[--rows 20000] [--repeat 3] [--build-repeat 1] [--root DIR]``.

One data profile (``long_history`` by default: ~1,000 cards over 18 months, ~1.3M
transactions) is generated once into a DuckDB root and copied into a Spark root
(``FEATURE_PROFILE=spark``). Then, in this one process:

* state build: the DuckDB pipeline (``build_features``) against the Spark build
  (``build_features_spark``, PySpark ``local[2]`` by default: ``SPARK_MASTER``), every table;
* retrieval: ``historical_features`` of the default feature service for ``--rows`` transactions
  drawn across the whole period (full-length histories), through the as-of DuckDB store and
  through Feast's Spark offline store (its point-in-time join pairs every entity row with every
  earlier state row of its entity, like Feast's stock DuckDB store).

Medians over ``--build-repeat`` (builds) and ``--repeat`` (retrievals) and the ratios
Spark / DuckDB are printed; nothing is asserted. The Spark session's start is timed apart and
excluded from both Spark figures. On one machine Spark is expected to be slower: the point is
that it runs, and by how much.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feature_repo.services import FEATURE_SERVICE_NAME, STATE_VELOCITY


def _median_seconds(label: str, run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    runs = ", ".join(f"{t:.1f}" for t in times)
    print(f"{label}: median {median:.1f} s over {repeat} run(s) ({runs} s)", flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long_history")
    parser.add_argument("--rows", type=int, default=20_000, help="Entity rows to retrieve.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each retrieval.")
    parser.add_argument("--build-repeat", type=int, default=1, help="Runs of each state build.")
    parser.add_argument("--root", type=Path, help="Reuse (or create) this root.")
    args = parser.parse_args()

    import pandas as pd

    from benchmarks._setup import prepare_root
    from feature_engine.offline.pipeline import build_features
    from feature_engine.spark.pipeline import build_features_spark
    from feature_engine.spark.session import spark_session
    from feature_engine.store import historical_features, open_store, run_feast_cli
    from fraud_platform.settings import Settings, load_params

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-spark-"))
    duck = prepare_root(root / "duckdb", args.profile)  # generate, DuckDB tables, apply
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

    # ------------------------------------------------------------------ state build
    scratch = root / "scratch"
    duck_build = _median_seconds(
        "state build, DuckDB",
        lambda: build_features(duck.paths, features, STATE_VELOCITY, out_dir=scratch / "duckdb"),
        args.build_repeat,
    )
    spark_build = _median_seconds(
        "state build, Spark",
        lambda: build_features_spark(spark_settings, features, STATE_VELOCITY),
        args.build_repeat,
    )
    applied = run_feast_cli(spark_settings, "apply", capture=True)
    if applied.returncode != 0:
        raise RuntimeError(f"feast apply (spark) failed:\n{applied.stderr[-3000:]}")

    # ------------------------------------------------------------------ retrieval
    sample = transactions.sample(n=min(args.rows, len(transactions)), random_state=0)
    duck_store, spark_store = open_store(duck), open_store(spark_settings)
    duck_get = _median_seconds(
        f"retrieval of {len(sample):,} rows, DuckDB (as-of store)",
        lambda: historical_features(duck_store, sample, FEATURE_SERVICE_NAME, progress=None),
        args.repeat,
    )
    spark_get = _median_seconds(
        f"retrieval of {len(sample):,} rows, Spark (Feast's Spark store)",
        lambda: historical_features(spark_store, sample, FEATURE_SERVICE_NAME, progress=None),
        args.repeat,
    )
    print(f"ratio Spark / DuckDB, state build: {spark_build / duck_build:.1f}x")
    print(f"ratio Spark / DuckDB, retrieval:   {spark_get / duck_get:.1f}x")
    spark.stop()


if __name__ == "__main__":
    main()
