"""Folds grouped by card, and the REVIEW band: its threshold, its decisions, its figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraud_platform.contracts import FRAUD, LEGIT, REVIEW, ModelTags, ModelTagsError, prediction_for
from fraud_platform.settings import TrainParams
from tests.support.training_projects import small_params
from training.dataset import TrainingError
from training.evaluation import (
    OperatingPoint,
    ThresholdRuleError,
    fold_splits,
    review_threshold,
    score_metrics,
)


def _train_params(**changes: Any) -> TrainParams:
    return TrainParams.model_validate(small_params()["train"] | changes)


def _cards(n_cards: int = 40, rows_per_card: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    """Cards with many rows each; every fourth card is defrauded on a few of its rows."""
    rng = np.random.default_rng(3)
    cards = np.repeat([f"c{i}" for i in range(n_cards)], rows_per_card)
    y = np.zeros(len(cards), dtype=int)
    for i in range(0, n_cards, 4):
        rows = np.flatnonzero(cards == f"c{i}")
        y[rng.choice(rows, size=3, replace=False)] = 1
    order = rng.permutation(len(cards))  # cards interleaved, as transactions are in time
    return pd.DataFrame({"customer_id": cards[order]}), y[order]


def _cards_in_both(frame: pd.DataFrame, splits: list[tuple[np.ndarray, np.ndarray]]) -> set[str]:
    cards = frame["customer_id"].to_numpy()
    shared: set[str] = set()
    for fit, validation in splits:
        shared |= set(cards[fit]) & set(cards[validation])
    return shared


def test_folds_by_card_never_split_a_card() -> None:
    frame, y = _cards()
    splits = fold_splits(frame, y, _train_params(k_folds=5, folds="by_card"), seed=42)
    assert len(splits) == 5
    assert _cards_in_both(frame, splits) == set()
    validated = np.sort(np.concatenate([validation for _, validation in splits]))
    np.testing.assert_array_equal(validated, np.arange(len(y)))  # every row scored once
    assert all(y[validation].sum() > 0 for _, validation in splits)  # fraud in every fold


def test_folds_by_transaction_split_cards_the_grouped_check_catches_it() -> None:
    # The previous splitter: the same assertion fails on it, a card's rows in both sides.
    frame, y = _cards()
    splits = fold_splits(frame, y, _train_params(k_folds=5, folds="by_transaction"), seed=42)
    assert len(_cards_in_both(frame, splits)) > 0


def test_folds_by_card_need_a_defrauded_card_per_fold() -> None:
    frame, y = _cards(n_cards=12)  # cards 0, 4, 8 are defrauded: 3 cards for 5 folds
    with pytest.raises(TrainingError, match=r"3 card\(s\) with a fraud, fewer than train.k_folds"):
        fold_splits(frame, y, _train_params(k_folds=5), seed=0)
    with pytest.raises(TrainingError, match="carry no customer_id"):
        fold_splits(frame.rename(columns={"customer_id": "card"}), y, _train_params(), seed=0)


# Ten out-of-fold rows: scores 0.05 ... 0.95; frauds at 0.95, 0.85, 0.65 and 0.35.
Y = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1, 1])
SCORES = np.round(np.arange(0.05, 1.0, 0.1), 2)
FRAUD_POINT = OperatingPoint(0.85, "target_recall", "target_recall")  # 2 alerts, both fraud


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # 100 per 1,000 of 10 rows: one REVIEW row below 0.85, the 0.75 one.
        ({"review_rule": "alert_budget", "review_budget_per_1000": 100}, 0.75),
        # 300 per 1,000: three REVIEW rows, 0.75, 0.65 and 0.55.
        ({"review_rule": "alert_budget", "review_budget_per_1000": 300}, 0.55),
        # Everything flagged at least 0.55 fraud: 4 of 7 from 0.35 up, 4 of 8 from 0.25.
        ({"review_rule": "min_precision", "review_min_precision": 0.55}, 0.35),
        ({"review_rule": None}, 0.85),  # no band
    ],
)
def test_review_threshold_by_hand_sits_at_or_below_the_fraud_threshold(
    changes: dict[str, Any], expected: float
) -> None:
    review = review_threshold(Y, SCORES, FRAUD_POINT, _train_params(**changes), "lightgbm")
    assert review == pytest.approx(expected)
    assert review <= FRAUD_POINT.threshold


def test_a_review_budget_the_band_cannot_meet_fails_naming_the_rule() -> None:
    params = _train_params(review_rule="alert_budget", review_budget_per_1000=50)  # 0 of 10 rows
    with pytest.raises(ThresholdRuleError) as err:
        review_threshold(Y, SCORES, FRAUD_POINT, params, "lightgbm")
    message = str(err.value)
    assert message.startswith("lightgbm: train.review_rule alert_budget: no threshold flags")
    assert "train.review_rule: null" in message
    # The request-only baseline is only reported: it gets no band rather than an error.
    assert review_threshold(Y, SCORES, FRAUD_POINT, params, "baseline", lenient=True) == 0.85


def test_a_review_precision_the_fraud_alerts_fall_short_of_fails() -> None:
    # FRAUD at 0.55: 0.55 .. 0.95 is 3 of 5 fraud, short of 0.7; min_precision's lowest
    # threshold reaching 0.7 is 0.65 (3 of 4): above the FRAUD threshold, so no band fits.
    point = OperatingPoint(0.55, "target_recall", "target_recall")
    params = _train_params(review_rule="min_precision", review_min_precision=0.7)
    with pytest.raises(ThresholdRuleError, match=r"above the FRAUD threshold 0\.55") as err:
        review_threshold(Y, SCORES, point, params, "logistic_regression")
    assert "the FRAUD alerts alone are 0.6000 fraud" in str(err.value)
    assert err.value.best == pytest.approx(0.6)
    unreachable = _train_params(review_rule="min_precision", review_min_precision=1.0)
    with pytest.raises(ThresholdRuleError, match=r"train\.review_rule min_precision: no threshold"):
        review_threshold(Y, SCORES[::-1], point, unreachable, "logistic_regression")


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(0.9, FRAUD), (0.85, FRAUD), (0.849, REVIEW), (0.75, REVIEW), (0.749, LEGIT), (0.0, LEGIT)],
)
def test_the_decision_per_band(probability: float, expected: str) -> None:
    assert prediction_for(probability, 0.85, 0.75) == expected


def test_without_a_band_there_is_no_review() -> None:
    assert [prediction_for(p, 0.5, 0.5) for p in (0.49, 0.5)] == [LEGIT, FRAUD]


def test_band_figures_by_hand() -> None:
    metrics = score_metrics(Y, SCORES, 0.85, review_at=0.55)
    # FRAUD: 0.85, 0.95 (both fraud). REVIEW: 0.55, 0.65, 0.75 (one fraud, 0.65).
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["review_precision"] == pytest.approx(1 / 3)
    assert metrics["review_alerts_per_1000"] == pytest.approx(300.0)
    assert metrics["flagged_precision"] == pytest.approx(3 / 5)
    assert metrics["flagged_recall"] == pytest.approx(0.75)
    assert metrics["flagged_alerts_per_1000"] == pytest.approx(500.0)
    plain = score_metrics(Y, SCORES, 0.85)  # no band: FRAUD and "flagged" agree
    assert plain["review_alerts_per_1000"] == 0.0
    assert plain["flagged_recall"] == plain["recall"]


def test_review_threshold_tag_round_trips_and_must_sit_below_the_threshold() -> None:
    tags = ModelTags(threshold=0.9, features=("a",), review_threshold=0.25)
    parsed = ModelTags.from_tags(tags.to_tags())
    assert parsed == tags and parsed.review_at == 0.25
    assert ModelTags.from_tags({"threshold": "0.9", "features": "a"}).review_at == 0.9
    with pytest.raises(ModelTagsError, match=r"review_threshold 0.95 not in \[0, threshold 0.9\]"):
        ModelTags.from_tags(tags.to_tags() | {"review_threshold": "0.95"})
