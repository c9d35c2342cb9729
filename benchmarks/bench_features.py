"""Feature-platform benchmark: pipeline, historical retrieval, materialize, online read.

Run: ``.venv/bin/python -m benchmarks.bench_features [--customers 28000 --days 30]``
(28k customers x 30 days is about 1M transactions), or ``--profile long_history`` for the
data profile shaped like the public Kaggle sets (1,000 cards x 18 months). Everything happens
in a temporary root with its own local redis-server; figures are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks._memory import PeakRss
from benchmarks._setup import add_size_arguments
from feature_repo.services import FEATURE_SERVICE_NAME, STATE_VELOCITY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_arguments(parser)
    parser.add_argument("--online-reads", type=int, default=2_000)
    parser.add_argument("--profile", help="A data profile of params.yaml instead of the sizes.")
    args = parser.parse_args()

    from data.generate import generate, write_tables
    from fraud_platform import redis_server
    from fraud_platform.settings import Settings, feast_environment, get_settings, load_params

    root = Path(tempfile.mkdtemp(prefix="bench-features-"))
    server = redis_server.start(root=root)
    os.environ.update({"PROJECT_ROOT": str(root), "REDIS_URL": server.url})
    get_settings.cache_clear()
    settings = Settings(project_root=root, redis_url=server.url)
    params = load_params()
    try:
        started = time.perf_counter()
        if args.profile:
            tables = generate(params.generate_profile(args.profile), params.seed)
        else:
            sizes = params.generate.model_copy(
                update={"n_merchants": max(1, args.customers // args.customers_per_merchant)}
            )
            tables = generate(sizes, params.seed, n_customers=args.customers, days=args.days)
        write_tables(tables, settings.paths.raw_dir)
        n_txn = len(tables["transactions"])
        print(f"generate+write: {n_txn:,} transactions in {time.perf_counter() - started:.1f} s")

        from feature_engine.offline.pipeline import build_features

        result = build_features(settings.paths, params.features, STATE_VELOCITY)
        print(f"offline tables: {result.seconds:.1f} s for {n_txn:,} transactions")

        env = {**os.environ, **feast_environment(settings)}
        feast = str(Path(sys.executable).with_name("feast"))
        started = time.perf_counter()
        subprocess.run([feast, "apply"], cwd=settings.paths.feature_repo, env=env, check=True,
                       capture_output=True)  # fmt: skip
        print(f"feast apply: {time.perf_counter() - started:.1f} s")

        from feature_engine.store import (
            feature_names,
            feature_service,
            historical_features,
            online_features,
            open_store,
            request_row,
        )

        store = open_store(settings)
        transactions = tables["transactions"]
        rss_before = psutil.Process().memory_info().rss
        with PeakRss() as peak:
            started = time.perf_counter()
            frame = historical_features(store, transactions, FEATURE_SERVICE_NAME, progress=print)
            seconds = time.perf_counter() - started
        print(
            f"get_historical_features: {len(frame):,} rows in {seconds:.1f} s "
            f"({len(frame) / seconds:,.0f} rows/s), peak RSS {peak.peak / 2**30:.2f} GiB "
            f"(+{(peak.peak - rss_before) / 2**30:.2f} GiB over the {rss_before / 2**30:.2f} "
            "GiB held before)"
        )
        del frame

        n_customers = transactions["customer_id"].nunique()
        n_merchants = transactions["merchant_id"].nunique()
        started = time.perf_counter()
        subprocess.run(
            [feast, "materialize", "1970-01-01T00:00:00", f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}"],
            cwd=settings.paths.feature_repo, env=env, check=True, capture_output=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        entity_rows = 2 * n_customers + 2 * n_merchants  # activity + profile, activity + labels
        print(
            f"feast materialize (CLI, incl. start-up): {seconds:.1f} s, {n_customers:,} customers, "
            f"{entity_rows:,} entity rows over 4 views = {entity_rows / seconds:,.0f} rows/s"
        )
        import redis

        throughput = []
        for _ in range(3):  # the same load without the CLI's start-up (imports, registry)
            redis.Redis.from_url(server.url).flushdb()
            started = time.perf_counter()
            store.materialize(
                start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=datetime.now(UTC)
            )
            throughput.append(entity_rows / (time.perf_counter() - started))
        print(
            f"materialize in-process (store.materialize, empty Redis): median "
            f"{statistics.median(throughput):,.0f} entity rows/s over 3 runs"
        )

        service, names = (
            feature_service(store, FEATURE_SERVICE_NAME),
            feature_names(store, FEATURE_SERVICE_NAME),
        )
        last = transactions.iloc[-1]
        rows = [
            request_row(
                str(r.customer_id), str(r.merchant_id), datetime.now(UTC), 42.0, r.lat, r.long
            )
            for r in transactions.sample(args.online_reads, random_state=0).itertuples()
        ]
        online_features(store, rows[:10], service, names)  # warm up
        latencies = []
        for row in rows:
            t0 = time.perf_counter()
            online_features(store, [row], service, names)
            latencies.append((time.perf_counter() - t0) * 1e3)
        latencies.sort()
        q = statistics.quantiles(latencies, n=100)
        print(
            f"get_online_features (whole service, 1 row, in-process): p50 {q[49]:.2f} ms, "
            f"p95 {q[94]:.2f} ms, p99 {q[98]:.2f} ms over {len(latencies)} reads "
            f"(last customer {last.customer_id})"
        )
    finally:
        redis_server.stop(root=root)


if __name__ == "__main__":
    main()
