"""Pure training functions on hand-made arrays: no Feast, no MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from fraud_platform.settings import TrainParams
from tests.support.training_projects import small_params
from training.dataset import TrainingError, check_labels
from training.evaluation import (
    ThresholdRuleError,
    alerting_point,
    choose_threshold,
    decision_metrics,
    holdout_mask,
    operating_point,
    recall_at_fpr,
    score_metrics,
)
from training.lineage import flatten_params, raw_data_hash

Y = np.array([0, 0, 0, 0, 1, 0, 1, 1])
SCORES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])


def test_best_f1_threshold_maximises_f1() -> None:
    # At 0.5: 3 of 4 flagged are fraud, all 3 frauds caught -> F1 0.857, the best cut.
    assert choose_threshold(Y, SCORES, "best_f1", 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("min_precision", "expected"),
    [
        (0.7, 0.5),  # precision 0.75 already at 0.5: the lowest threshold reaching 0.7
        (0.9, 0.7),  # 0.5 and 0.6 fall short; from 0.7 on precision is 1.0
        (1.0, 0.7),
    ],
)
def test_min_precision_threshold_is_lowest_reaching_target(
    min_precision: float, expected: float
) -> None:
    threshold = choose_threshold(Y, SCORES, "min_precision", min_precision)
    assert threshold == pytest.approx(expected)
    flagged = threshold <= SCORES
    assert Y[flagged].mean() >= min_precision


@pytest.mark.parametrize("budget", [20.0, 125.0, 250.0, 400.0, 999.0])
def test_alert_budget_threshold_flags_at_most_the_budget_and_no_less_than_needed(
    budget: float,
) -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(1000), 2)  # many ties: tied rows are flagged together
    y = (rng.random(1000) < scores / 4).astype(int)
    threshold = choose_threshold(y, scores, "alert_budget", 0.5, budget)
    flagged = int((scores >= threshold).sum())
    assert flagged <= budget / 1000 * len(scores)
    # The next lower score would exceed the budget: the threshold uses all of it it can.
    lower = scores[scores < threshold]
    if len(lower):
        assert int((scores >= lower.max()).sum()) > budget / 1000 * len(scores)


def test_alert_budget_smaller_than_the_top_tie_is_an_error_not_a_silent_model() -> None:
    scores = np.array([0.9, 0.9, 0.9, 0.1])
    # One alert allowed (250 per 1,000 of 4 rows) but the top score ties three rows: 750.
    with pytest.raises(ThresholdRuleError, match="fewest alerts any threshold gives is 750") as err:
        choose_threshold(np.array([1, 0, 1, 0]), scores, "alert_budget", 0.5, 250.0)
    assert (err.value.rule, err.value.best) == ("alert_budget", 750.0)


# The operating points of the hand-made set Y/SCORES (frauds at 0.5, 0.7 and 0.8; a legitimate
# row at 0.6), each worked out by hand:
#   alert_budget 250 per 1,000 of 8 rows: 2 alerts allowed -> flag 0.7 and 0.8;
#   alert_budget 500: 4 allowed -> 0.5 (0.5, 0.6, 0.7, 0.8);
#   target_recall 0.6: 2 of 3 frauds -> the highest threshold catching two is 0.7;
#   target_recall 0.9 (or 1.0): all 3 -> 0.5, the lowest fraud's score.
@pytest.mark.parametrize(
    ("rule", "value", "threshold", "precision", "recall", "alerts_per_1000"),
    [
        ("alert_budget", 250.0, 0.7, 1.0, 2 / 3, 250.0),
        ("alert_budget", 500.0, 0.5, 0.75, 1.0, 500.0),
        ("alert_budget", 499.0, 0.6, 2 / 3, 2 / 3, 375.0),
        ("target_recall", 0.6, 0.7, 1.0, 2 / 3, 250.0),
        ("target_recall", 0.9, 0.5, 0.75, 1.0, 500.0),
        ("target_recall", 1.0, 0.5, 0.75, 1.0, 500.0),
        ("min_precision", 0.9, 0.7, 1.0, 2 / 3, 250.0),
    ],
)
def test_operating_point_of_each_rule_by_hand(
    rule: str,
    value: float,
    threshold: float,
    precision: float,
    recall: float,
    alerts_per_1000: float,
) -> None:
    params = _train_params(threshold_rule=rule, **{_RULE_PARAM[rule]: value})
    point = operating_point(Y, SCORES, params, "model")
    assert (point.rule, point.fell_back) == (rule, False)
    assert point.threshold == pytest.approx(threshold)
    metrics = score_metrics(Y, SCORES, point.threshold)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["alerts_per_1000"] == pytest.approx(alerts_per_1000)


_RULE_PARAM = {
    "alert_budget": "alert_budget_per_1000",
    "target_recall": "target_recall",
    "min_precision": "min_precision",
}


def _train_params(**changes: Any) -> TrainParams:
    return TrainParams.model_validate(small_params()["train"] | changes)


UNREACHABLE_Y = np.array([1, 0, 0, 1])
UNREACHABLE_SCORES = np.array([0.1, 0.2, 0.9, 0.8])  # precision: 0 at 0.9, 0.5 at 0.8, 1/3, 0.5


def test_unmeetable_min_precision_names_the_rule_and_the_best_precision() -> None:
    params = _train_params(threshold_rule="min_precision", min_precision=0.6)
    with pytest.raises(ThresholdRuleError) as err:
        operating_point(UNREACHABLE_Y, UNREACHABLE_SCORES, params, "lightgbm")
    message = str(err.value)
    assert message.startswith("lightgbm: train.threshold_rule min_precision")
    assert "no threshold reaches precision 0.6" in message
    assert "the best achievable is 0.5000" in message
    assert "train.threshold_fallback" in message
    assert err.value.best == pytest.approx(0.5)


def test_unmeetable_rule_falls_back_only_to_the_named_rule_and_says_why() -> None:
    params = _train_params(
        threshold_rule="min_precision", min_precision=0.6, threshold_fallback="target_recall"
    )
    point = operating_point(UNREACHABLE_Y, UNREACHABLE_SCORES, params, "lightgbm")
    # target_recall 0.8 of the small params: both frauds -> the lower one's score, 0.1.
    assert (point.rule, point.requested, point.threshold) == ("target_recall", "min_precision", 0.1)
    assert point.fell_back and "the best achievable is 0.5000" in str(point.fallback_reason)


def test_fallback_that_fails_too_is_an_error() -> None:
    params = _train_params(
        threshold_rule="min_precision",
        min_precision=0.6,
        threshold_fallback="alert_budget",
        alert_budget_per_1000=1,  # 4 rows: no alert allowed
    )
    with pytest.raises(ThresholdRuleError, match="the fallback fails too"):
        operating_point(UNREACHABLE_Y, UNREACHABLE_SCORES, params, "lightgbm")


def test_rule_met_out_of_fold_but_alerting_on_no_holdout_row_is_unmet() -> None:
    # min_precision 0.9 is met out of fold at 0.7 (by hand above); a holdout whose highest
    # probability is 0.65 would get no alert at all.
    params = _train_params(threshold_rule="min_precision", min_precision=0.9)
    point = operating_point(Y, SCORES, params, "lightgbm")
    holdout = np.array([0.1, 0.3, 0.65])
    with pytest.raises(ThresholdRuleError, match="flags none of the 3 holdout rows") as err:
        alerting_point(point, Y, SCORES, holdout, params, "lightgbm")
    assert "highest holdout probability is 0.65" in str(err.value)
    # With a fallback named: target_recall 0.8 of the small params -> 0.5 (all 3 frauds).
    named = _train_params(
        threshold_rule="min_precision", min_precision=0.9, threshold_fallback="target_recall"
    )
    fell = alerting_point(point, Y, SCORES, holdout, named, "lightgbm")
    assert (fell.rule, fell.threshold, fell.fell_back) == ("target_recall", 0.5, True)
    # A threshold some holdout row reaches is kept as it is.
    assert alerting_point(point, Y, SCORES, np.array([0.1, 0.75]), params, "x") is point


def test_fallback_equal_to_the_rule_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"train\.threshold_fallback"):
        _train_params(threshold_rule="alert_budget", threshold_fallback="alert_budget")


def test_net_savings_is_fraud_amount_caught_minus_review_cost() -> None:
    amounts = np.array([10.0, 20, 30, 40, 100, 60, 200, 300])
    # Threshold 0.5: four alerts (0.5, 0.6, 0.7, 0.8), frauds caught 100 + 200 + 300 = 600,
    # review 4 x 25 = 100: net 500 over 8 rows = 62,500 per 1,000.
    metrics = score_metrics(Y, SCORES, 0.5, amounts, review_cost_per_alert=25.0)
    assert metrics["net_savings_per_1000"] == pytest.approx(62_500.0)
    queue = decision_metrics(Y, SCORES, 0.5, amounts, 25.0)
    assert queue == {
        "alerts": 4.0,
        "frauds_caught": 3.0,
        "fraud_amount": 600.0,
        "fraud_amount_caught": 600.0,
        "review_cost": 100.0,
        "net_savings": 500.0,
    }
    # A higher threshold misses the 100 fraud and saves one review: 500 - 50 = 450.
    assert decision_metrics(Y, SCORES, 0.7, amounts, 25.0)["net_savings"] == 450.0


def test_unknown_threshold_rule_is_rejected() -> None:
    with pytest.raises(ValueError, match="threshold_rule"):
        choose_threshold(Y, SCORES, "best_auc", 0.5)


def test_recall_at_one_percent_fpr() -> None:
    y = np.array([0] * 200 + [1] * 4)
    scores = np.concatenate([np.linspace(0, 0.9, 200), [0.95, 0.97, 0.2, 0.1]])
    # Two legit rows above 0.2 would be 1 % FPR (2/200): the two frauds above 0.9 are caught.
    assert recall_at_fpr(y, scores, 0.01) == pytest.approx(0.5)
    assert recall_at_fpr(y, scores, 1.0) == pytest.approx(1.0)


def test_score_metrics_at_threshold() -> None:
    metrics = score_metrics(Y, SCORES, 0.65)
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert 0 < metrics["pr_auc"] <= 1
    assert metrics["roc_auc"] == pytest.approx(14 / 15)


def test_holdout_is_latest_share_of_the_period_not_of_rows() -> None:
    # 90 rows on day 0, 10 rows spread over days 1..10: the last 20 % of the period is days 8..10.
    times = list(pd.date_range("2026-01-01", periods=90, freq="min", tz="UTC"))
    times += list(pd.date_range("2026-01-02", "2026-01-11", periods=10, tz="UTC"))
    mask = holdout_mask(pd.Series(times), 0.2)
    held = pd.Series(times)[mask]
    assert held.min() >= pd.Timestamp("2026-01-09", tz="UTC")
    assert mask.sum() == 3
    assert not mask[:90].any()


def test_same_second_rows_never_straddle_the_cut() -> None:
    times = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-05", "2026-01-05", "2026-01-06"]))
    mask = holdout_mask(times.dt.tz_localize("UTC"), 0.1)  # cut at Jan 5, 12:00
    assert list(mask) == [False, False, False, True]
    mask = holdout_mask(times.dt.tz_localize("UTC"), 0.2)  # cut exactly at the tied second
    assert list(mask) == [False, True, True, True]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "no labeled rows"),
        ([0, 0, 0], "0 fraud and 3 legitimate"),
        ([1, 1], "2 fraud and 0 legitimate"),
    ],
)
def test_check_labels_rejects_unusable_targets(labels: list[int], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        check_labels(np.array(labels), "somewhere")


def test_check_labels_needs_a_fraud_per_fold() -> None:
    check_labels(np.array([0, 1, 0, 1, 0, 1]), "train", min_per_class=3)
    with pytest.raises(TrainingError, match="at least 4 of each class"):
        check_labels(np.array([0, 1, 0, 1, 0, 1]), "train", min_per_class=4)


def test_flatten_params_keeps_every_leaf() -> None:
    nested = {"seed": 1, "train": {"C": 0.5, "k_folds": 3}, "import": {"x": {"y": 2}}}
    assert flatten_params(nested) == {
        "seed": 1,
        "train.C": 0.5,
        "train.k_folds": 3,
        "import.x.y": 2,
    }


def test_raw_data_hash_prefers_dvc_then_computes(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "transactions.parquet").write_bytes(b"abc")
    computed, source = raw_data_hash(tmp_path)
    assert source == "computed"
    (raw / "transactions.parquet").write_bytes(b"abd")
    assert raw_data_hash(tmp_path)[0] != computed  # any byte change changes the version

    lock = {"stages": {"generate": {"outs": [{"path": "data/raw", "md5": "f00.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert raw_data_hash(tmp_path) == ("f00.dir", "dvc.lock")

    (tmp_path / "data" / "raw.dvc").write_text(
        yaml.safe_dump({"outs": [{"md5": "bar.dir", "path": "raw"}]})
    )
    assert raw_data_hash(tmp_path) == ("bar.dir", "data/raw.dvc")


def test_reference_sample_skips_the_warm_up_days() -> None:
    from types import SimpleNamespace

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from training.evaluation import reference_sample
    from training.model import freeze

    days = pd.date_range("2026-01-01", periods=20, freq="D", tz="UTC")
    train = pd.DataFrame({"event_timestamp": days, "x": np.arange(20.0), "is_fraud": [0, 1] * 10})
    pipeline = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())])
    pipeline.fit(train[["x"]], train["is_fraud"])
    fitted = freeze("logistic_regression", pipeline, ["x"], np.array([9.5]))
    model = SimpleNamespace(model=fitted, features=["x"])
    evaluation = SimpleNamespace(model=model, train=train)

    warm = reference_sample(evaluation, size=100, seed=0, warmup_days=7)  # type: ignore[arg-type]
    assert warm["x"].min() == 7.0  # day 0..6 are the warm-up
    assert len(warm) == 13
    everything = reference_sample(evaluation, size=100, seed=0)  # type: ignore[arg-type]
    assert len(everything) == 20
    too_long = reference_sample(evaluation, size=100, seed=0, warmup_days=50)  # type: ignore[arg-type]
    assert len(too_long) == 20  # a warm-up longer than the period keeps every row
    # The probability is what the frozen model (served the same way) gives each row.
    expected = pipeline.predict_proba(too_long[["x"]])[:, 1]  # uncalibrated: plain sigmoid
    np.testing.assert_allclose(too_long["probability"], expected, rtol=1e-12)


def test_slice_metrics_per_pattern_and_cold_start() -> None:
    from training.evaluation import slice_metrics

    holdout = pd.DataFrame(
        {
            "is_fraud": [0, 0, 0, 0, 1, 1, 1, 1],
            "fraud_pattern": ["none"] * 4 + ["card_testing"] * 2 + ["account_takeover"] * 2,
            "is_new_customer": [1, 0, 0, 0, 1, 0, 0, 0],
        }
    )
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.9, 0.5, 0.7, 0.25])
    slices = slice_metrics(holdout, scores, threshold=0.4)
    assert set(slices) == {"card_testing", "account_takeover", "cold_start"}
    # card testing: both frauds flagged; ranked above every legit row but 0.6 -> AP (1 + 2/3)/2
    assert slices["card_testing"]["recall"] == 1.0
    assert slices["card_testing"]["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert slices["card_testing"]["rows"] == 6 and slices["card_testing"]["frauds"] == 2
    assert slices["account_takeover"]["recall"] == 0.5
    assert slices["cold_start"] == {"recall": 1.0, "rows": 2.0, "frauds": 1.0, "pr_auc": 1.0}


def test_slice_metrics_without_patterns_keep_only_cold_start() -> None:
    from training.evaluation import slice_metrics

    imported = pd.DataFrame(
        {
            "is_fraud": [0, 1, 0, 1],
            "fraud_pattern": ["none", "unknown", "none", "unknown"],  # the importer's labels
            "is_new_customer": [0, 0, 0, 0],
        }
    )
    assert slice_metrics(imported, np.array([0.1, 0.9, 0.2, 0.8]), 0.5) == {}
    no_column = imported.drop(columns=["fraud_pattern"]).assign(is_new_customer=1)
    assert set(slice_metrics(no_column, np.array([0.1, 0.9, 0.2, 0.8]), 0.5)) == {"cold_start"}


def _u_shaped_amounts(n: int = 4_000) -> tuple[pd.DataFrame, np.ndarray]:
    """Fraud at small and at large amounts: what card testing and takeover look like."""
    rng = np.random.default_rng(5)
    x = pd.DataFrame(
        {"log_amount": rng.uniform(0, 9, n), "amount_no_baseline": 0.0, "other": rng.normal(size=n)}
    )
    risk = np.where((x["log_amount"] < 1.5) | (x["log_amount"] > 7.5), 0.6, 0.02)
    return x, (rng.random(n) < risk).astype(int)


def _with_monotone(params: Any, increasing: list[str]) -> Any:
    lightgbm = params.lightgbm.model_copy(update={"monotone_increasing": tuple(increasing)})
    return params.model_copy(update={"lightgbm": lightgbm})


@pytest.mark.parametrize("increasing", [[], ["log_amount"]])
def test_lightgbm_monotone_constraint_makes_the_score_rise_with_the_amount(
    increasing: list[str],
) -> None:
    from fraud_platform.settings import PROJECT_ROOT, load_params
    from training.model import build_estimator, fit_estimator, freeze

    params = _with_monotone(load_params(PROJECT_ROOT / "params.yaml").train, increasing)
    x, y = _u_shaped_amounts()
    features = list(x.columns)
    fill = x.mean().to_numpy()
    fitted = fit_estimator("lightgbm", build_estimator("lightgbm", params, 0, features), x, y, fill)
    model = freeze("lightgbm", fitted, features, fill)
    grid = pd.DataFrame({"log_amount": np.linspace(0, 9, 50), "amount_no_baseline": 0.0})
    grid["other"] = 0.0
    steps = np.diff(model.raw_score(grid))
    if increasing:
        assert (steps >= 0).all()  # the constraint holds on the whole grid
    else:
        assert (steps < 0).any()  # without it, the trees learn the U the data has


def test_a_monotone_constraint_on_no_feature_is_refused() -> None:
    from fraud_platform.settings import PROJECT_ROOT, load_params
    from training.model import build_estimator

    params = _with_monotone(
        load_params(PROJECT_ROOT / "params.yaml").train, ["log_amount", "amount_typo"]
    )
    with pytest.raises(
        ValueError, match=r"monotone_increasing: not model features: \['amount_typo'\]"
    ):
        build_estimator("lightgbm", params, 0, ["log_amount", "hour_of_day"])
