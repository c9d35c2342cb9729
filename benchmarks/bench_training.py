"""Training benchmark: historical retrieval, 5-fold CV + holdout (every model, baseline), MLflow.

Run: ``.venv/bin/python -m benchmarks.bench_training [--customers 28000 --days 30]``
(28k customers x 30 days is about 1M transactions). Works in a temporary root, or in
``--root`` where an earlier run left its raw data, offline tables and registry (generation,
build and apply are then skipped). No Redis is needed: training reads the offline store only.
Figures are printed, nothing is asserted. Heavy at full size: about 1M rows through Feast.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks._memory import PeakRss
from benchmarks._setup import add_size_arguments
from feature_repo.services import STATE_VELOCITY


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_arguments(parser)
    parser.add_argument("--root", type=Path, help="Reuse (or create) this root; a temp dir else.")
    parser.add_argument(
        "--register", action="store_true", help="Also time the MLflow run and registration."
    )
    args = parser.parse_args()

    from fraud_platform.settings import (
        PROJECT_ROOT,
        Settings,
        feast_environment,
        get_settings,
        load_params,
    )

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-training-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "params.yaml").exists():
        shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ.update(
        {
            "PROJECT_ROOT": str(root),
            "REDIS_URL": "redis://127.0.0.1:1/0",  # never contacted: offline store only
            "MLFLOW_TRACKING_URI": tracking_uri,
        }
    )
    get_settings.cache_clear()
    settings = Settings(project_root=root, mlflow_tracking_uri=tracking_uri)
    params = load_params(settings.paths.params_file)
    paths = settings.paths
    print(f"root: {root}")
    phases: dict[str, float] = {}

    if not paths.raw_table("transactions").exists():
        from data.generate import generate, write_tables

        started = time.perf_counter()
        sizes = params.generate.model_copy(
            update={"n_merchants": max(1, args.customers // args.customers_per_merchant)}
        )
        tables = generate(sizes, params.seed, n_customers=args.customers, days=args.days)
        write_tables(tables, paths.raw_dir)
        del tables
        phases["generate"] = time.perf_counter() - started
    if not paths.feature_table("customer_activity").exists():
        from feature_engine.offline.pipeline import build_features

        result = build_features(paths, params.features, STATE_VELOCITY)
        phases["build offline tables"] = result.seconds
    if not paths.registry.exists():
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).with_name("feast")), "apply"],
            cwd=paths.feature_repo,
            env={**os.environ, **feast_environment(settings)},
            check=True,
            capture_output=True,
        )
        phases["feast apply"] = time.perf_counter() - started
    for phase, seconds in phases.items():
        print(f"{phase}: {seconds:.1f} s (set-up)")

    from training.dataset import load_training_set
    from training.evaluation import evaluate
    from training.run import train_and_register

    rss_before = psutil.Process().memory_info().rss
    with PeakRss() as peak:
        started = time.perf_counter()
        training_set = load_training_set(settings, progress=print)
        retrieval = time.perf_counter() - started
    rows = len(training_set.frame)
    frame_bytes = training_set.frame.memory_usage(deep=True).sum()
    print(
        f"retrieval (labeled transactions + get_historical_features): {rows:,} rows in "
        f"{retrieval:.1f} s ({rows / retrieval:,.0f} rows/s), peak RSS {_gib(peak.peak)} "
        f"(+{_gib(peak.peak - rss_before)}), frame {frame_bytes / 2**20:.0f} MiB"
    )

    with PeakRss() as peak:
        started = time.perf_counter()
        evaluation = evaluate(training_set, params.train, params.seed, progress=print)
        seconds = time.perf_counter() - started
    each = ", ".join(f"{r.kind} {r.seconds:.1f} s" for r in evaluation.candidates)
    print(
        f"{params.train.k_folds}-fold CV + calibration + refit + holdout, every model and the "
        f"baseline: {seconds:.1f} s ({each}, baseline {evaluation.baseline.seconds:.1f} s), "
        f"peak RSS {_gib(peak.peak)}; holdout PR-AUC of the selected {evaluation.model.kind} "
        f"{evaluation.model.holdout['pr_auc']:.4f} vs baseline "
        f"{evaluation.baseline.holdout['pr_auc']:.4f}"
    )
    del evaluation

    if args.register:
        with PeakRss() as peak:
            started = time.perf_counter()
            summary = train_and_register(
                settings, params, training_set=training_set, progress=print
            )
            seconds = time.perf_counter() - started
        print(
            f"train_and_register (evaluate again + MLflow logging + registry): {seconds:.1f} s, "
            f"v{summary.model_version} {summary.decision}, peak RSS {_gib(peak.peak)}"
        )

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(
        f"peak RSS of this process {_gib(own)}; of the largest child (feast apply) {_gib(children)}"
    )


if __name__ == "__main__":
    main()
