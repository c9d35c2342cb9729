"""`fraud train` answers bad input with `error: ...` and exit code 2, before any heavy work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from data.generate import write_tables
from tests.support.training_projects import small_params, write_params
from training.cli import app

runner = CliRunner()


def _invoke(root: Path, patch: pytest.MonkeyPatch, *args: str) -> Result:
    from fraud_platform.settings import get_settings

    patch.setenv("PROJECT_ROOT", str(root))
    get_settings.cache_clear()
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("k_folds", 1, "train.k_folds"),
        ("threshold_rule", "best_auc", "train.threshold_rule"),
        ("holdout_fraction", 1.5, "train.holdout_fraction"),
        ("min_precision", 0, "train.min_precision"),
        ("models", ["logistic_regression", "xgboost"], "train.models"),
        ("models", [], "train.models"),
        ("models", ["lightgbm", "lightgbm"], "train.models"),
        ("calibration", "beta", "train.calibration"),
        ("alert_budget_per_1000", 0, "train.alert_budget_per_1000"),
        ("target_recall", 0, "train.target_recall"),
        ("threshold_fallback", "never", "train.threshold_fallback"),
        ("review_cost_per_alert", -1, "train.review_cost_per_alert"),
        ("folds", "by_merchant", "train.folds"),
        ("review_rule", "target_recall", "train.review_rule"),
        ("review_budget_per_1000", 0, "train.review_budget_per_1000"),
        ("review_min_precision", 1.5, "train.review_min_precision"),
    ],
)
def test_bad_params_exit_2_naming_the_key(
    tmp_path: Path, isolated_env: pytest.MonkeyPatch, key: str, value: object, named: str
) -> None:
    params = small_params()
    params["train"][key] = value
    write_params(tmp_path, params)
    for command in ("run", "evaluate"):
        result = _invoke(tmp_path, isolated_env, command)
        assert result.exit_code == 2, result.output
        assert "error:" in result.output
        assert named in result.output
        assert "Traceback" not in result.output


def _tables(labels: list[int]) -> dict[str, pd.DataFrame]:
    n = 3
    at = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(range(n), unit="h")
    transactions = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "customer_id": "c1",
            "merchant_id": "m1",
            "timestamp": at,
            "amount": [10.0, 20.0, 30.0],
            "lat": 40.0,
            "long": -74.0,
        }
    )
    label_frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(labels))],
            "is_fraud": pd.Series(labels, dtype="int8"),
            "label_timestamp": at[: len(labels)] + pd.Timedelta(days=1),
            "fraud_pattern": ["unknown" if y else "none" for y in labels],
        }
    )
    customers = pd.DataFrame(
        {"customer_id": ["c1"], "home_lat": [40.0], "home_long": [-74.0], "created_at": at[:1]}
    )
    merchants = pd.DataFrame(
        {"merchant_id": ["m1"], "category": ["retail"], "lat": [40.0], "long": [-74.0]}
    )
    return {
        "transactions": transactions,
        "labels": label_frame,
        "customers": customers,
        "merchants": merchants,
    }


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "no labeled rows"),
        ([0, 0, 0], "0 fraud and 3 legitimate rows"),
    ],
)
def test_unusable_labels_exit_2(
    tmp_path: Path, isolated_env: pytest.MonkeyPatch, labels: list[int], message: str
) -> None:
    write_params(tmp_path, small_params())
    write_tables(_tables(labels), tmp_path / "data" / "raw")
    result = _invoke(tmp_path, isolated_env, "run")
    assert result.exit_code == 2, result.output
    assert f"error: labeled transactions: {message}" in result.output


def test_missing_raw_data_exit_2(tmp_path: Path, isolated_env: pytest.MonkeyPatch) -> None:
    write_params(tmp_path, small_params())
    result = _invoke(tmp_path, isolated_env, "run")
    assert result.exit_code == 2
    assert "transactions.parquet" in result.output
