"""The drift statistics (pure functions): known shifts, null windows, bad columns, labels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp

from monitoring.drift import (
    CATEGORICAL_FEATURES,
    DriftInputError,
    chi2_test,
    compute_drift,
    feature_kinds,
    join_labels,
    model_features,
    select_window,
    service_features,
    window_performance,
)
from tests.support.frames import (
    AMOUNT_FEATURES,
    FEATURES,
    NIGHT_FEATURES,
    log_frame,
    make_features,
    reference_frame,
)

THRESHOLDS: dict[str, Any] = {"ks_p_value": 0.05, "drift_share": 0.3, "min_rows": 200}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return reference_frame()


def test_model_features_come_from_the_feature_definition() -> None:
    assert model_features() == FEATURES
    kinds = feature_kinds()
    assert {n for n, k in kinds.items() if k == "categorical"} == set(CATEGORICAL_FEATURES)
    assert kinds["log_amount"] == "numerical"


def test_amount_shift_flags_amount_features_only(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(1000, seed=11, amount_factor=5))
    result = compute_drift(reference, current, **THRESHOLDS)

    assert set(result.drifted_features) == AMOUNT_FEATURES
    for name in AMOUNT_FEATURES:
        assert result.feature(name).p_value < 1e-6
    for name in set(FEATURES) - AMOUNT_FEATURES:
        assert result.feature(name).p_value > 1e-3, name
    # 5 of 18 features: below the dataset threshold of 0.3, but the model output moved.
    assert len(FEATURES) == 18
    assert result.share_drifted == pytest.approx(5 / 18)
    assert not result.dataset_drift
    assert result.prediction is not None and result.prediction.drifted


def test_amount_and_night_shift_is_dataset_drift(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(1000, seed=12, amount_factor=5, night=True))
    result = compute_drift(reference, current, **THRESHOLDS)

    assert set(result.drifted_features) == AMOUNT_FEATURES | NIGHT_FEATURES
    assert result.feature("hour_of_day").test == "chi2"
    assert result.feature("log_amount").test == "ks"
    assert result.dataset_drift
    assert result.share_drifted == pytest.approx(7 / 18)


@pytest.mark.parametrize("seed", [21, 22, 23, 24, 25])
def test_unshifted_window_is_not_dataset_drift(reference: pd.DataFrame, seed: int) -> None:
    current = log_frame(make_features(1000, seed=seed))
    result = compute_drift(reference, current, **THRESHOLDS)

    assert not result.dataset_drift
    assert result.share_drifted < 0.3
    assert len(result.drifted_features) <= 2  # at alpha 0.05, a stray one is expected
    assert result.prediction is not None and not result.prediction.drifted
    assert not any("small window" in w for w in result.warnings)


def test_prediction_drift_is_reported_apart_from_the_features(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(1000, seed=11, probability_shift=2.0))
    result = compute_drift(reference, current, **THRESHOLDS)

    assert result.prediction is not None and result.prediction.drifted
    assert "probability" not in result.drifted_features
    assert len(result.features) == len(FEATURES)
    assert not result.dataset_drift


def test_p_values_are_scipys(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(500, seed=13, amount_factor=1.3))
    result = compute_drift(reference, current, **THRESHOLDS)

    expected = ks_2samp(reference["amount_sum_24h"], current["amount_sum_24h"])
    assert result.feature("amount_sum_24h").statistic == pytest.approx(expected.statistic)
    assert result.feature("amount_sum_24h").p_value == pytest.approx(expected.pvalue)

    table = pd.crosstab(
        np.r_[np.zeros(len(reference)), np.ones(len(current))],
        np.r_[reference["hour_of_day"], current["hour_of_day"]],
    )
    chi2 = chi2_contingency(table.to_numpy(), correction=False)
    assert result.feature("hour_of_day").p_value == pytest.approx(chi2.pvalue)
    assert result.feature("hour_of_day").statistic == pytest.approx(chi2.statistic)


def test_chi2_flags_a_new_category_and_ignores_a_constant() -> None:
    ref = pd.Series(np.zeros(500), name="is_new_customer")
    assert chi2_test(ref, pd.Series(np.zeros(80))) == (0.0, 1.0)
    current = pd.Series(np.r_[np.zeros(60), np.ones(20)])  # a value never seen in the reference
    statistic, p_value = chi2_test(ref, current)
    assert statistic > 0
    assert p_value < 1e-6


def test_small_window_warns_and_still_computes(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(50, seed=14, amount_factor=20))
    result = compute_drift(reference, current, **THRESHOLDS)

    assert any("small window" in w and "50" in w for w in result.warnings)
    assert result.current_rows == 50
    assert result.feature("log_amount").drifted  # a huge shift shows even in 50 rows


@pytest.mark.parametrize(
    ("change", "side", "named"),
    [
        (
            lambda f: f.drop(columns=["txn_count_1h", "is_night"]),
            "current",
            "is_night, txn_count_1h",
        ),
        (lambda f: f.assign(card_bin=1.0), "current", "card_bin"),
        (
            lambda f: f.drop(columns=["merchant_fraud_rate_30d"]),
            "reference",
            "merchant_fraud_rate_30d",
        ),
        (lambda f: f.assign(extra_feature=0.0), "reference", "extra_feature"),
        (lambda f: f.assign(log_amount="high"), "current", "non-numeric columns: log_amount"),
        (lambda f: f.assign(distance_from_home_km=np.nan), "current", "distance_from_home_km"),
        (lambda f: f.iloc[:0], "current", "no rows"),
    ],
)
def test_bad_columns_are_named(reference: pd.DataFrame, change, side: str, named: str) -> None:
    current = log_frame(make_features(300, seed=15))
    frames = {"reference": reference, "current": current}
    frames[side] = change(frames[side])
    with pytest.raises(DriftInputError, match=side) as info:
        compute_drift(frames["reference"], frames["current"], **THRESHOLDS)
    assert named in str(info.value)


def test_the_reference_names_the_service_and_the_log_may_hold_every_service(
    reference: pd.DataFrame,
) -> None:
    # The prediction log has a column for every served feature; a row scored by a model of
    # another service leaves the columns it does not read empty.
    services = service_features()
    v1, v2 = services["fraud_scoring_v1"], services["fraud_scoring_v2"]
    only_v2 = [name for name in v2 if name not in v1]
    assert only_v2, "v2 declares rows v1 does not"
    current = log_frame(make_features(300, seed=16)).assign(**{name: np.nan for name in only_v2})

    result = compute_drift(reference, current, **THRESHOLDS)
    assert [f.column for f in result.features] == v1

    # A reference sample of a v2 model: its features are tested, the v2-only ones included.
    rng = np.random.default_rng(3)
    v2_reference = reference.assign(**{name: rng.poisson(3.0, len(reference)) for name in only_v2})
    v2_current = current.assign(**{name: rng.poisson(3.0, len(current)) * 4 for name in only_v2})
    result = compute_drift(v2_reference, v2_current, **THRESHOLDS)
    assert [f.column for f in result.features] == v2
    assert set(only_v2) <= set(result.drifted_features)
    # ...and a window scored only by v1 models has nothing to compare them with.
    with pytest.raises(DriftInputError, match="current: columns with no values") as info:
        compute_drift(v2_reference, current, **THRESHOLDS)
    assert only_v2[0] in str(info.value)


def test_window_performance_at_the_threshold() -> None:
    labels = pd.Series([1, 1, 0, 0, 0, 1, None, 0], dtype="Int64")
    probability = pd.Series([0.9, 0.4, 0.6, 0.1, 0.2, 0.8, 0.99, 0.3])
    perf = window_performance(labels, probability, threshold=0.5)

    assert perf is not None
    assert perf.labelled_rows == 7  # the unlabelled row is left out
    assert perf.positives == 3
    assert perf.precision == pytest.approx(2 / 3)  # flagged: 0.9 (fraud), 0.6 (legit), 0.8 (fraud)
    assert perf.recall == pytest.approx(2 / 3)
    assert perf.pr_auc is not None and 0.5 < perf.pr_auc <= 1
    assert window_performance(pd.Series([None, None], dtype="Int64"), probability[:2], 0.5) is None


def test_labels_joined_only_once_known(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(300, seed=16))
    labels = pd.DataFrame(
        {
            "transaction_id": current["transaction_id"],
            "is_fraud": (current["probability"] > 0.3).astype(int),
            "label_timestamp": pd.Timestamp("2026-04-01", tz="UTC")
            + pd.to_timedelta(np.arange(len(current)), "D"),
        }
    )
    as_of = datetime(2026, 4, 10, 12, tzinfo=UTC)  # labels of the first 10 rows are known
    joined = join_labels(current, labels, as_of=as_of)

    assert joined["is_fraud"].notna().sum() == 10
    result = compute_drift(reference, joined, **THRESHOLDS)
    assert result.performance is not None
    assert result.performance.labelled_rows == 10
    assert result.performance.threshold == 0.5  # the window's logged threshold

    unlabelled = compute_drift(reference, current, **THRESHOLDS)
    assert unlabelled.performance is None
    assert any("no labels" in w for w in unlabelled.warnings)


def test_select_window_last_and_since() -> None:
    log = log_frame(make_features(100, seed=17)).sample(frac=1, random_state=0)  # unordered
    last = select_window(log, last=10)
    assert list(last["transaction_id"]) == [f"t{i:06d}" for i in range(90, 100)]

    since = select_window(log, since=datetime(2026, 3, 1, 1, 0))  # naive means UTC
    assert len(since) == 40  # one row a minute from 00:00: minutes 60..99
    assert since["timestamp"].min() == pd.Timestamp("2026-03-01T01:00", tz="UTC")

    with pytest.raises(DriftInputError, match="timestamp"):
        select_window(log.drop(columns=["timestamp"]), since=datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(DriftInputError, match="positive"):
        select_window(log, last=0)


def test_summary_dict_is_complete(reference: pd.DataFrame) -> None:
    current = log_frame(make_features(300, seed=18, amount_factor=5))
    summary = compute_drift(reference, current, **THRESHOLDS).to_dict()

    assert set(summary["features"]) == set(FEATURES)
    entry = summary["features"]["log_amount"]
    assert entry["drifted"] is True
    assert entry["test"] == "ks"
    assert set(entry) >= {"statistic", "p_value", "kind", "reference_rows", "current_rows"}
    assert summary["prediction_drift"]["drifted"] is True
    assert summary["thresholds"] == THRESHOLDS
    assert summary["rows"] == {"reference": len(reference), "current": 300}
