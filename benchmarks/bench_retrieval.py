"""Training retrieval at real-history scale: the as-of store against Feast's stock DuckDB store.

Run: ``.venv/bin/python -m benchmarks.bench_retrieval [--profile long_history]
[--sizes 300000 650000 1300000] [--repeat 3] [--stock-rows 20000]``.

On the ``long_history`` profile (about 1,000 cards over 18 months, ~1,300 transactions per
card, like the public Kaggle sets) it times ``feature_engine.store.historical_features`` of the
whole feature service (the training call) at several row counts, each measurement in a fresh
child process so that its peak RSS is its own. Feast's stock DuckDB store (pairwise join) runs
in a child too, only up to ``--stock-rows`` and ``--stock-seconds``, beside the as-of store at
the same rows for the ratio. Figures are printed (medians over ``--repeat``), nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._memory import PeakRss
from feature_repo.services import FEATURE_SERVICE_NAME


def measure(root: Path, rows: int, store_type: str | None, sample: bool) -> dict[str, Any]:
    """One retrieval of ``rows`` transactions; seconds and peak RSS.

    The first ``rows`` in time order, or (``sample``) rows drawn across the whole period, so
    that a capped run still sees full-length histories.
    """
    import pandas as pd

    from benchmarks._setup import prepare_root
    from feature_engine.store import historical_features, open_store

    settings = prepare_root(root, None)
    transactions = pd.read_parquet(settings.paths.raw_table("transactions"))
    if sample:
        transactions = transactions.sample(n=min(rows, len(transactions)), random_state=0)
    else:
        transactions = transactions.head(rows)
    store = open_store(settings, None if store_type is None else {"type": store_type})
    with PeakRss() as peak:
        started = time.perf_counter()
        frame = historical_features(store, transactions, FEATURE_SERVICE_NAME, progress=None)
        seconds = time.perf_counter() - started
    return {"rows": len(frame), "seconds": seconds, "peak_rss": peak.peak}


def _child(
    root: Path, rows: int, store_type: str | None, timeout: float, sample: bool = False
) -> dict[str, Any] | None:
    """:func:`measure` in a child process; None when it runs out of time or memory."""
    command = [sys.executable, "-m", "benchmarks.bench_retrieval", "--child", str(root),
               "--child-rows", str(rows)]  # fmt: skip
    if sample:
        command.append("--child-sample")
    if store_type:
        command += ["--child-store", store_type]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _line(label: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    seconds = statistics.median(r["seconds"] for r in runs)
    peak = max(r["peak_rss"] for r in runs)
    rows = runs[0]["rows"]
    print(
        f"{label}: {rows:,} rows, median {seconds:.1f} s over {len(runs)} run(s) "
        f"({rows / seconds:,.0f} rows/s), peak RSS {peak / 2**30:.2f} GiB"
    )
    return {"seconds": seconds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long_history")
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000, 650_000, 1_300_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stock-rows", type=int, default=20_000)
    parser.add_argument("--stock-seconds", type=float, default=600.0)
    parser.add_argument("--root", type=Path, help="Reuse (or create) this root.")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-store", help=argparse.SUPPRESS)
    parser.add_argument("--child-sample", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.child_rows, args.child_store, args.child_sample)))
        return

    from benchmarks._setup import prepare_root

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    settings = prepare_root(root, args.profile)
    import pandas as pd

    n_total = len(pd.read_parquet(settings.paths.raw_table("transactions"), columns=["amount"]))
    print(f"root {root}: {n_total:,} transactions ({args.profile})")
    per_row = []
    for size in args.sizes:
        rows = min(size, n_total)
        runs = [r for _ in range(args.repeat) if (r := _child(root, rows, None, 1800))]
        if runs:
            line = _line(f"as-of store, {rows:,} rows", runs)
            per_row.append((rows, line["seconds"] / rows))
    if len(per_row) > 1:
        first, last = per_row[0], per_row[-1]
        print(
            f"cost per row from {first[0]:,} to {last[0]:,} rows: {first[1] * 1e6:.1f} -> "
            f"{last[1] * 1e6:.1f} µs ({last[1] / first[1]:.2f}x; 1.00x is linear)"
        )
    # The same rows for both, drawn across the period: full-length histories.
    stock = _child(root, args.stock_rows, "duckdb", args.stock_seconds, sample=True)
    asof = _child(root, args.stock_rows, None, args.stock_seconds, sample=True)
    if stock is None:
        print(f"stock DuckDB store: no answer for {args.stock_rows:,} rows within limits")
    elif asof:
        _line("stock DuckDB store (Feast's ibis join)", [stock])
        _line("as-of store, same rows", [asof])
        ratio = stock["seconds"] / asof["seconds"]
        print(f"ratio stock / as-of at {args.stock_rows:,} sampled rows: {ratio:.1f}x")


if __name__ == "__main__":
    main()
