"""The consistency monitor's comparison: pure, without a stack."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from monitoring.consistency import compare_features, values_match, write_report

FEATURES = ["txn_count_1h", "amount_sum_24h", "merchant_fraud_rate_30d"]


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["transaction_id", "timestamp", *FEATURES]).assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True)
    )


SERVED = _frame(
    [
        ("t1", "2026-01-01T00:00:00Z", 1, 10.0, 0.1),
        ("t2", "2026-01-01T00:01:00Z", 2, 20.000000000001, 0.2),
        ("t3", "2026-01-01T00:02:00Z", 3, 30.0, None),
        ("t4", "2026-01-01T00:03:00Z", 4, 40.0, 0.0),
    ]
)


def test_identical_values_and_last_bit_noise_are_consistent() -> None:
    offline = SERVED.assign(merchant_fraud_rate_30d=[0.1, 0.2, 0.3, 0.0])
    result = compare_features(SERVED, offline, FEATURES, max_mismatch_rate=0.0)
    assert result.total_mismatches == 0 and not result.failing
    rate = next(f for f in result.features if f.feature == "merchant_fraud_rate_30d")
    assert rate.unknown == 1 and rate.compared == 3  # a served null is counted apart


def test_exactly_the_skewed_feature_fails_with_examples() -> None:
    offline = SERVED.assign(
        merchant_fraud_rate_30d=[0.1, 0.25, 0.3, 0.5], txn_count_1h=[1, 2, 3, 4]
    )
    result = compare_features(SERVED, offline, FEATURES, max_mismatch_rate=0.0)
    assert result.failing == ["merchant_fraud_rate_30d"]
    skewed = next(f for f in result.features if f.feature == "merchant_fraud_rate_30d")
    assert skewed.mismatches == 2 and skewed.mismatch_rate == pytest.approx(2 / 3)
    assert [e["transaction_id"] for e in skewed.examples] == ["t2", "t4"]
    assert skewed.examples[0]["served"] == 0.2 and skewed.examples[0]["offline"] == 0.25


def test_threshold_lets_a_small_rate_pass() -> None:
    offline = SERVED.assign(txn_count_1h=[1, 2, 3, 5])
    assert compare_features(SERVED, offline, FEATURES, max_mismatch_rate=0.3).failing == []
    assert compare_features(SERVED, offline, FEATURES, max_mismatch_rate=0.2).failing == [
        "txn_count_1h"
    ]


def test_missing_columns_and_duplicate_keys_are_errors() -> None:
    with pytest.raises(ValueError, match="offline data lacks columns"):
        compare_features(SERVED, SERVED.drop(columns=["txn_count_1h"]), FEATURES, 0.0)
    with pytest.raises(ValueError, match="not unique"):
        compare_features(SERVED, pd.concat([SERVED, SERVED]), FEATURES, 0.0)


def test_values_match_counts_exactly_and_sums_to_1e9() -> None:
    assert values_match(3, 3.0)
    assert not values_match(3, 4)
    assert values_match(100.0, 100.0 * (1 + 1e-12))
    assert not values_match(100.0, 100.0 * (1 + 1e-6))
    assert values_match(None, math.nan) and not values_match(None, 0.0)


def test_report_files_hold_the_verdict(tmp_path) -> None:
    offline = SERVED.assign(txn_count_1h=[1, 2, 3, 5], merchant_fraud_rate_30d=[0.1, 0.2, 0, 0])
    result = compare_features(SERVED, offline, FEATURES, max_mismatch_rate=0.0)
    summary, report, prom = write_report(result, tmp_path / "r")
    assert '"failing_features": [\n    "txn_count_1h"\n  ]' in summary.read_text()
    assert "FAIL: txn_count_1h" in report.read_text()
    lines = prom.read_text().splitlines()
    assert 'fraud_feature_consistency_mismatch_rate{feature="txn_count_1h"} 0.25' in lines
    assert 'fraud_feature_consistency_mismatch_rate{feature="amount_sum_24h"} 0' in lines
