"""The API's feature read in process: the default path against ``get_online_features``.

On the small test stack (``tests/support/stack.py``), one row at a time, the readers of
``serving/features.py`` alternate in rounds on the same requests: :class:`FeastReader` (the
default), :class:`DirectReader` and :class:`OnlineFeaturesReader` (``get_online_features``
itself). Prints each reader's median latency (median of the rounds' medians).

Run: ``.venv/bin/python -m benchmarks.bench_feature_read [--root DIR] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.bench_serving import Workload
from tests.support import stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="reuse a stack built here")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=400, help="reads per reader and round")
    args = parser.parse_args()

    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.store import open_store, request_row
    from fraud_platform import redis_server
    from fraud_platform.settings import Settings
    from serving.features import DirectReader, FeastReader, FeatureReader, OnlineFeaturesReader

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-read-"))
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    try:
        meta = stack.load_or_build_stack(root, stack.stack_env(root, server.url))
        store = open_store(Settings(project_root=root, redis_url=server.url))
        layout = RedisLayout(store)
        readers: dict[str, FeatureReader] = {
            "default (FeastReader)": FeastReader(store, layout),
            "direct": DirectReader(store, layout),
            "get_online_features": OnlineFeaturesReader(store),
        }
        work = Workload(meta)
        rows = []
        for _ in range(args.rows):
            t = work.transaction()
            when = pd.Timestamp(t["timestamp"]).to_pydatetime()
            rows.append(
                request_row(t["customer_id"], t["merchant_id"], when, t["amount"], t["lat"],
                            t["long"])
            )  # fmt: skip
        medians: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, reader in readers.items():
                latencies = []
                for row in rows:
                    started = time.perf_counter()
                    reader.read([row])
                    latencies.append(time.perf_counter() - started)
                medians[name].append(statistics.median(latencies) * 1e6)
        reference = statistics.median(medians["get_online_features"])
        for name, values in medians.items():
            median = statistics.median(values)
            print(f"{name:24s} median {median:7.0f} µs  ({reference / median:.1f}x faster than "
                  f"get_online_features); rounds: {[round(v) for v in values]}")  # fmt: skip
    finally:
        redis_server.stop(root)


if __name__ == "__main__":
    main()
