"""The live API on a Redis Cluster: the serving tests of ``tests/integration/serving``, imported.

One uvicorn process with ``REDIS_MODE=cluster`` on the stack of ``conftest.py`` (materialized
into the cluster up to a held-out slice). The replay test scores the slice through ``/predict``
one transaction after another, each folded into the cluster by the API's ingestion before the
next is read, and requires every feature to equal Feast's point-in-time training features
(themselves equal to the brute-force reference, ``tests/integration/features``): 0 mismatches.
"""

from __future__ import annotations

import pytest

from tests.integration.serving.test_api import (
    test_batch_scores_in_order_and_limits,
    test_cold_start_gets_defaults,
    test_concurrent_transactions_of_one_customer_lose_no_update,
    test_feature_path_equals_get_online_features,
    test_posted_labels_move_the_online_rate_once_and_are_journaled,
    test_real_looking_ids_are_scored_and_round_trip_through_redis,
    test_replay_parity_with_historical_features,
)
from tests.support.live_api import Live

pytestmark = pytest.mark.integration

__all__ = [  # collected by pytest from this module, on the cluster's fixtures
    "test_batch_scores_in_order_and_limits",
    "test_cold_start_gets_defaults",
    "test_concurrent_transactions_of_one_customer_lose_no_update",
    "test_feature_path_equals_get_online_features",
    "test_posted_labels_move_the_online_rate_once_and_are_journaled",
    "test_real_looking_ids_are_scored_and_round_trip_through_redis",
    "test_replay_parity_with_historical_features",
]


def test_the_api_runs_on_the_cluster(live: Live) -> None:
    """The API process really got the cluster (and says it is ready on it)."""
    assert live.env["REDIS_MODE"] == "cluster"
    assert live.client.get("/ready").status_code == 200
    text = live.client.get("/metrics").text
    assert "fraud_api_online_store_up 1.0" in text
