"""Shared set-up of the benchmarks: a temporary project root with data, tables and a registry."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from feature_repo.services import STATE_VELOCITY
from fraud_platform.settings import PROJECT_ROOT, Settings, get_settings, load_params


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic data size options shared by the feature and training benchmarks."""
    parser.add_argument("--customers", type=int, default=28_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--customers-per-merchant", type=int, default=5,
        help="Scale merchants with customers (params.yaml's n_merchants is for the demo size).",
    )  # fmt: skip


def prepare_root(
    root: Path, profile: str | None, redis_url: str = "redis://127.0.0.1:1/0"
) -> Settings:
    """Generate a data profile, build the offline tables and ``feast apply`` in ``root``.

    Steps whose output exists are skipped, so a root can be reused between runs. The process
    environment points at the root (``PROJECT_ROOT``, ``REDIS_URL``) afterwards.

    Args:
        root: The project root to fill.
        profile: A data profile of ``params.yaml`` (``None``: the ``generate`` section).
        redis_url: The online store's address (never contacted by retrieval).

    Returns:
        Settings for the root.
    """
    from data.generate import generate, write_tables
    from feature_engine.offline.pipeline import build_features
    from feature_engine.store import run_feast_cli

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "params.yaml").exists():
        shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    os.environ.update({"PROJECT_ROOT": str(root), "REDIS_URL": redis_url})
    get_settings.cache_clear()
    settings = Settings(project_root=root, redis_url=redis_url)
    params = load_params(settings.paths.params_file)
    paths = settings.paths
    if not paths.raw_table("transactions").exists():
        started = time.perf_counter()
        tables = generate(params.generate_profile(profile), params.seed)
        write_tables(tables, paths.raw_dir)
        print(f"generate ({profile or 'default'}): {time.perf_counter() - started:.1f} s")
    if not paths.feature_table("customer_activity").exists():
        result = build_features(paths, params.features, STATE_VELOCITY)
        print(f"offline tables: {result.seconds:.1f} s")
    if not paths.registry.exists():
        applied = run_feast_cli(settings, "apply", capture=True)
        if applied.returncode != 0:
            raise RuntimeError(f"feast apply failed:\n{applied.stderr[-3000:]}")
    return settings
