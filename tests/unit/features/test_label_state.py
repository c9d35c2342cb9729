"""Labels as of event time: the merchant label state's window rule (feature_engine.state.fold)."""

from __future__ import annotations

import math
import random

import pytest

from feature_engine.state.fields import BASELINE_DAYS, DAY_US, LABEL_STATE_DAYS
from feature_engine.state.fold import merge_label
from feature_engine.state.request import merchant_fraud_rate

DAY0 = 20_000  # a UTC day number


def _fold(labels: list[tuple[int, bool]]) -> dict:
    state: dict | None = None
    for label_ts_us, is_fraud in labels:
        state = merge_label(state, label_ts_us, is_fraud)
    assert state is not None
    return state


def _at(day: int, hour: int = 12) -> int:
    return day * DAY_US + hour * 3_600_000_000


def test_rate_counts_complete_days_before_today_only() -> None:
    state = _fold([(_at(DAY0), True), (_at(DAY0 + 1), False), (_at(DAY0 + 2), True)])
    assert merchant_fraud_rate(state, DAY0 + 2) == pytest.approx(1 / 2)  # day DAY0+2 not yet
    assert merchant_fraud_rate(state, DAY0 + 3) == pytest.approx(2 / 3)
    assert merchant_fraud_rate(state, DAY0 + BASELINE_DAYS + 1) == pytest.approx(1 / 2)
    assert merchant_fraud_rate(state, DAY0 + BASELINE_DAYS + 3) == 0.0  # all aged out: no labels


def test_a_state_newer_than_the_request_answers_exactly_within_its_kept_days() -> None:
    early = [(_at(DAY0 + d), d % 3 == 0) for d in range(10)]
    late = (_at(DAY0 + 70), True)  # a chargeback the store already knows, from t's future
    state = _fold([*early, late])
    today = DAY0 + 12
    assert today - BASELINE_DAYS >= DAY0 + 70 - LABEL_STATE_DAYS  # still inside the kept days
    assert merchant_fraud_rate(state, today) == pytest.approx(4 / 10)


def test_a_request_older_than_the_kept_days_is_unknown_not_zero() -> None:
    state = _fold([(_at(DAY0), True), (_at(DAY0 + 200), False)])
    too_old = DAY0 + 200 - LABEL_STATE_DAYS + BASELINE_DAYS - 1
    assert math.isnan(merchant_fraud_rate(state, too_old))
    assert merchant_fraud_rate(state, too_old + 1) == 0.0  # the whole window is kept: exact


def test_fold_order_does_not_matter_and_old_days_are_dropped() -> None:
    labels = [(_at(DAY0 + d, h), (d + h) % 4 == 0) for d in range(0, 150, 3) for h in (1, 9)]
    in_order = _fold(labels)
    shuffled = list(labels)
    random.Random(5).shuffle(shuffled)
    assert _fold(shuffled) == in_order
    assert min(in_order["ml_day_numbers"]) >= max(in_order["ml_day_numbers"]) - LABEL_STATE_DAYS
    assert in_order["ml_complete_from_day"] == max(in_order["ml_day_numbers"]) - LABEL_STATE_DAYS


def test_a_short_horizon_state_stays_short_after_an_online_fold() -> None:
    """A 30-day row loaded by an earlier materialize does not pretend to know 90 days."""
    short = {
        "ml_latest_ts_us": _at(DAY0),
        "ml_day_numbers": [DAY0 - 10, DAY0],
        "ml_day_labels": [1, 1],
        "ml_day_frauds": [1, 0],
        "ml_complete_from_day": DAY0 - BASELINE_DAYS,
    }
    folded = merge_label(short, _at(DAY0 + 1), False)
    assert folded["ml_complete_from_day"] == DAY0 - BASELINE_DAYS
    assert merchant_fraud_rate(folded, DAY0 + 2) == pytest.approx(1 / 3)
    assert math.isnan(merchant_fraud_rate(folded, DAY0 - 1))  # needs DAY0 - 31: not known


def test_unknown_merchant_has_rate_zero() -> None:
    assert merchant_fraud_rate({}, DAY0) == 0.0


def test_a_shorter_window_counts_only_its_days_and_needs_less_history() -> None:
    # One fraud 20 days before today, two legitimate labels in the last week.
    state = _fold([(_at(DAY0), True), (_at(DAY0 + 15), False), (_at(DAY0 + 18), False)])
    today = DAY0 + 20
    assert merchant_fraud_rate(state, today) == pytest.approx(1 / 3)
    assert merchant_fraud_rate(state, today, window_days=7) == 0.0  # the fraud is older
    assert merchant_fraud_rate(state, DAY0 + 1, window_days=1) == 1.0
    # A state that holds only the last 10 days answers a 7-day window, not a 30-day one.
    recent = dict(state, ml_complete_from_day=today - 10)
    assert math.isnan(merchant_fraud_rate(recent, today))
    assert merchant_fraud_rate(recent, today, window_days=7) == 0.0
    with pytest.raises(ValueError, match="window_days"):
        merchant_fraud_rate(state, today, window_days=BASELINE_DAYS + 1)
