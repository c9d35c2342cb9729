"""Synthetic reference/current frames for the monitoring tests (numpy, fixed seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from feature_engine.declarations import Aggregation
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from simulation.verdict import EXPECTED_DRIFT

SERVICE = SERVICE_TABLES[FEATURE_SERVICE_NAME]
FEATURES = list(SERVICE.feature_names)
# The features an "amount x5" shift moves: what the declarations say moves under it
# (feature_repo/derived.py's drift expectations, velocity rows as simulation/verdict.py reads
# them), plus every velocity row over the amount, which the generator below scales too.
AMOUNT_FEATURES = {
    name for name, how in EXPECTED_DRIFT["amount"].items() if how == "moves" and name in FEATURES
} | {row.name for row in SERVICE.velocity.rows if row.column == "amount"}
NIGHT_FEATURES = {
    name for name, how in EXPECTED_DRIFT["night"].items() if how == "moves" and name in FEATURES
}


def _velocity_column(
    row: Aggregation, rng: np.random.Generator, n: int, amount_factor: float
) -> np.ndarray:
    """Plausible values of a declared velocity row this module has no hand-made marginal for."""
    hours = row.window.total_seconds() / 3600
    count = rng.poisson((0.4 if row.entity == "customer" else 12.0) * max(hours, 1.0) ** 0.5, n)
    if row.operation in ("count", "distinct_count"):
        return count
    each = rng.lognormal(3.5, 0.6, n) * amount_factor
    if row.operation == "sum":
        return count * each
    if row.operation == "max":
        return np.where(count > 0, each * 1.3, 0.0)
    return np.where(count > 0, each, np.nan)  # mean, last: unknown when the window is empty


def make_features(
    n: int,
    seed: int,
    *,
    amount_factor: float = 1.0,
    night: bool = False,
    probability_shift: float = 0.0,
) -> pd.DataFrame:
    """Rows of every model feature with plausible marginals, optionally shifted.

    The columns are the default service's features, in its order. The features known here get
    hand-made marginals (drawn in a fixed order, so a seed gives the same frame); any other
    declared velocity row gets one from its operation and window, any other derived feature a
    plain one of its type: the monitoring tests follow the declarations.
    """
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.5, 1.0, n) * amount_factor
    hour = rng.integers(0, 6, n) if night else rng.integers(0, 24, n)
    count_1h = rng.poisson(0.4, n)
    count_24h = count_1h + rng.poisson(1.5, n)
    sum_1h = count_1h * rng.lognormal(3.5, 0.6, n) * amount_factor
    sum_24h = sum_1h + (count_24h - count_1h) * rng.lognormal(3.5, 0.6, n) * amount_factor
    known = {
        "log_amount": np.log1p(amount),
        "hour_of_day": hour,
        "is_night": (hour < 6).astype(int),
        "txn_count_1h": count_1h,
        "txn_count_24h": count_24h,
        "amount_sum_1h": sum_1h,
        "amount_sum_24h": sum_24h,
        "amount_max_24h": np.maximum(sum_24h / np.maximum(count_24h, 1), 0) * 1.3,
        "distinct_merchants_24h": np.minimum(count_24h, rng.poisson(1.2, n)),
        "seconds_since_last_txn": rng.exponential(40_000, n),
        "amount_to_avg_30d": amount / rng.lognormal(3.5, 0.3, n),
        "amount_no_baseline": np.where(rng.random(n) < 0.03, amount, 0.0),
        "distance_from_home_km": rng.exponential(15, n),
        "km_per_hour_from_last_txn": rng.exponential(4, n),
        "merchant_txn_count_24h": rng.poisson(12, n),
        "merchant_fraud_rate_30d": rng.beta(1, 80, n),
        "is_new_customer": (rng.random(n) < 0.05).astype(int),
        "is_new_merchant": (rng.random(n) < 0.3).astype(int),
    }
    for row in SERVICE.velocity.rows:
        if row.name not in known:
            known[row.name] = _velocity_column(row, rng, n, amount_factor)
    for feature in SERVICE.derived:  # a new derived feature: a plain marginal of its type
        if feature.name not in known:
            plain = rng.poisson(1.0, n) if feature.dtype is int else rng.lognormal(0.0, 1.0, n)
            known[feature.name] = plain
    frame = pd.DataFrame({name: known[name] for name in FEATURES})
    score = 0.8 * (frame["log_amount"] - 4.5) + 0.5 * frame["txn_count_1h"] - 3 + probability_shift
    frame["probability"] = 1 / (1 + np.exp(-score))
    return frame


def reference_frame(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """A training reference sample: the features, ``is_fraud`` and ``probability``."""
    frame = make_features(n, seed)
    rng = np.random.default_rng(seed + 1000)
    frame["is_fraud"] = (rng.random(n) < frame["probability"]).astype(int)
    return frame


def log_frame(features: pd.DataFrame, *, start: str = "2026-03-01") -> pd.DataFrame:
    """Feature rows dressed as the API's prediction log."""
    n = len(features)
    out = features.copy()
    out["prediction"] = np.where(out["probability"] >= 0.5, "FRAUD", "LEGIT")
    out["threshold"] = 0.5
    out["timestamp"] = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n) * 60, "s")
    out["scored_at"] = out["timestamp"] + pd.Timedelta(milliseconds=5)
    out["transaction_id"] = [f"t{i:06d}" for i in range(n)]
    out["customer_id"] = [f"c{i % 97:04d}" for i in range(n)]
    out["merchant_id"] = [f"m{i % 13:03d}" for i in range(n)]
    out["model_version"] = "3"
    out["cold_start"] = False
    return out


def write_reference(root: Path, frame: pd.DataFrame | None = None) -> Path:
    path = root / "models" / "reference_sample.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    (reference_frame() if frame is None else frame).to_parquet(path)
    return path


def write_log(root: Path, frame: pd.DataFrame, name: str = "predictions-000001") -> Path:
    folder = root / "data" / "prediction_log"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    frame.to_parquet(path)
    return path


def set_param(root: Path, section: str, key: str, value: object) -> None:
    """Change one value of the project's params.yaml (comments are not kept)."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params))
