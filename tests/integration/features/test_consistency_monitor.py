"""The consistency monitor on a real stack: served values vs. get_historical_features.

Requests at data time are read online after the default materialize (as the API would read
them), then recomputed offline by the monitor's shadow build: 0 mismatches. A wrong label state
injected into Redis is then flagged on exactly the one feature it touches.
"""

from __future__ import annotations

import pandas as pd
import pytest

from feature_engine.offline.pipeline import latest_state_time
from feature_engine.online.redis_layout import RedisLayout
from feature_engine.online.writer import OnlineStateWriter
from feature_engine.store import (
    feature_names,
    materialize,
    online_features,
    open_store,
    request_row,
)
from feature_repo.services import FEATURE_SERVICE_NAME, STATE_VELOCITY
from monitoring.consistency import compare_features, recompute_offline
from tests.support.edge_cases import FEATURES, FeatureProject, flush_online

pytestmark = pytest.mark.integration


def _served(store, requests: pd.DataFrame) -> pd.DataFrame:
    rows = [
        request_row(
            r.customer_id, r.merchant_id, r.timestamp.to_pydatetime(), r.amount, r.lat, r.long
        )
        for r in requests.itertuples()
    ]
    return pd.concat(
        [
            requests.reset_index(drop=True),
            pd.DataFrame(online_features(store, rows, FEATURE_SERVICE_NAME)),
        ],
        axis=1,
    )


def test_monitor_finds_no_skew_then_flags_exactly_the_injected_one(
    feature_project: FeatureProject, redis_url: str
) -> None:
    settings = feature_project.settings
    flush_online(feature_project.settings)
    store = open_store(settings)
    materialize(store, end=latest_state_time(settings.paths.features_dir))
    tx = feature_project.tables["transactions"]
    after = tx["timestamp"].max() + pd.Timedelta(hours=2)
    requests = (
        tx.drop_duplicates("customer_id")[["customer_id", "merchant_id", "lat", "long"]]
        .assign(
            transaction_id=lambda f: [f"probe-{i}" for i in range(len(f))],
            timestamp=after,
            amount=42.0,
        )
        .reset_index(drop=True)
    )
    names = feature_names(store, FEATURE_SERVICE_NAME)
    served = _served(store, requests)
    offline = recompute_offline(settings, served)
    clean = compare_features(served, offline, names, max_mismatch_rate=0.0)
    assert clean.rows == len(requests) and clean.total_mismatches == 0, clean.to_dict()
    assert (served["merchant_fraud_rate_30d"] > 0).any()  # the label feature is really compared

    # Skew: a burst of wrong fraud labels reaches one merchant's online state only.
    victim = requests["merchant_id"].iloc[0]
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    wrong_day = after - pd.Timedelta(days=2)
    wrong = [(victim, f"wrong-{i}", int(wrong_day.value // 1000), True) for i in range(5)]
    writer.ingest_labels(wrong)
    skewed = compare_features(_served(store, requests), offline, names, max_mismatch_rate=0.0)
    assert skewed.failing == ["merchant_fraud_rate_30d"]
    flagged = next(f for f in skewed.features if f.feature == "merchant_fraud_rate_30d")
    assert flagged.mismatches == (requests["merchant_id"] == victim).sum()
