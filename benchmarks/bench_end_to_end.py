"""The real-data path end to end: a Kaggle-schema CSV through ``fraud train run``.

Run: ``.venv/bin/python -m benchmarks.bench_end_to_end [--profile long_history]``.

The ``long_history`` profile (about 1,000 cards over 18 months, ~1.3M transactions, like the
public Kaggle training file) is written as a CSV in the Kaggle credit-card layout, through the
importer's own column mapping (``data.importer.KAGGLE_MAPPING``) with a leading unnamed index
column, as in ``fraudTrain.csv``. Then the real commands run one after another in a fresh
project root, each timed: ``fraud data import``, ``fraud features build``, ``fraud features
apply`` and ``fraud train run`` (Feast retrieval, 5-fold CV of model and baseline, MLflow).
Writing the CSV is set-up, not timed. Figures are printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long_history")
    parser.add_argument("--root", type=Path, help="Project root to use (a temp dir by default).")
    args = parser.parse_args()

    from data.generate import generate
    from data.importer import to_kaggle_frame
    from fraud_platform.settings import PROJECT_ROOT, load_params

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    params = load_params(root / "params.yaml")
    csv_path = root / "fraudTrain.csv"
    started = time.perf_counter()
    tables = generate(params.generate_profile(args.profile), params.seed)
    to_kaggle_frame(tables).to_csv(csv_path, index=True)  # unnamed leading index, as Kaggle's
    n_rows = len(tables["transactions"])
    del tables
    print(f"set-up: {n_rows:,}-row Kaggle-schema CSV in {time.perf_counter() - started:.1f} s")

    env = {
        **os.environ,
        "PROJECT_ROOT": str(root),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # training reads the offline store only
    }
    fraud = str(Path(sys.executable).with_name("fraud"))
    phases = {
        "fraud data import": [fraud, "data", "import", str(csv_path)],
        "fraud features build": [fraud, "features", "build"],
        "fraud features apply": [fraud, "features", "apply"],
        "fraud train run": [fraud, "train", "run"],
    }
    timings: dict[str, float] = {}
    for name, command in phases.items():
        started = time.perf_counter()
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        timings[name] = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            raise SystemExit(f"{name} failed with exit code {done.returncode}")
        tail = [line for line in done.stdout.splitlines() if line.strip()][-2:]
        print(f"{name}: {timings[name]:.1f} s | " + " | ".join(tail))
    total = sum(timings.values())
    print(f"end to end, import -> train ({n_rows:,} rows): {total:.1f} s ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
