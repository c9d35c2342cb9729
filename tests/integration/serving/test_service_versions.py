"""The API serves each model with the feature service its registry version names (v1 or v2).

A live uvicorn process on the test stack; the alias is moved to a version trained on
``fraud_scoring_v2`` and back, as a promotion through the champion/challenger rule would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pandas as pd
import pytest
from mlflow import MlflowClient

from feature_engine.online.redis_layout import RedisLayout
from feature_engine.store import open_store, request_row
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform.contracts import read_prediction_log
from fraud_platform.settings import Settings
from serving.features import make_reader
from tests.support.live_api import Live

pytestmark = pytest.mark.integration
V2 = "fraud_scoring_v2"


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _serving(live: Live, version: str) -> bool:
    return bool(live.client.get("/ready").json()["model_version"]["version"] == version)


def _body(live: Live, tid: str, minutes: float) -> dict:
    at = pd.Timestamp(live.meta["last_timestamp"]) + timedelta(hours=2, minutes=minutes)
    return {
        "transaction_id": tid,
        "timestamp": at.isoformat(),
        "customer_id": live.meta["known_customer"],
        "merchant_id": live.meta["known_merchant"],
        "amount": 73.25,
        "lat": 40.7,
        "long": -73.9,
    }


def test_a_model_trained_on_v2_is_served_v2_features(live: Live) -> None:
    v1_names = list(SERVICE_TABLES[FEATURE_SERVICE_NAME].feature_names)
    v2_names = list(SERVICE_TABLES[V2].feature_names)
    first = live.post("/predict", _body(live, "sv-1", 0))
    assert first.status_code == 200, first.text
    assert list(first.json()["features"]) == v1_names  # the v1 model: v1's features only

    # The registry too: an earlier test of the session may have set a process-wide registry URI.
    uri = live.env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, alias = "fraud-detector", "production"
    v1_version, v2_version = live.meta["model"]["version"], live.meta["model"]["v2_version"]
    assert client.get_model_version(name, v2_version).tags["feature_service"] == V2
    client.set_registered_model_alias(name, alias, v2_version)
    try:
        _wait(lambda: _serving(live, v2_version), 30, "the v2 model")
        second = live.post("/predict", _body(live, "sv-2", 1))
        assert second.status_code == 200, second.text
        served = second.json()
        assert served["model_version"]["version"] == v2_version
        assert list(served["features"]) == v2_names
        # v2 really looks further back than v1: the card's week holds more than its day.
        features = served["features"]
        assert features["txn_count_7d"] >= features["txn_count_24h"] >= 1  # sv-1, a minute ago
        assert features["merchant_txn_count_1h"] >= 1
        # The same values as the v2 service read through Feast's resolution in this process,
        # on the same Redis (sv-2 itself, ingested since, is not before its own time).
        settings = Settings(project_root=live.root, redis_url=live.env["REDIS_URL"])
        store = open_store(settings)
        reader = make_reader(store, RedisLayout(store), "feast", V2)
        body = _body(live, "sv-2", 1)
        row = request_row(
            body["customer_id"],
            body["merchant_id"],
            pd.Timestamp(body["timestamp"]).to_pydatetime(),
            body["amount"],
            body["lat"],
            body["long"],
        )
        expected = reader.read([row])[0]
        assert {n: features[n] for n in v2_names} == {n: expected[n] for n in v2_names}
        # The prediction log has every service's columns: v2's are filled for sv-2 only.
        _wait(
            lambda: "sv-2" in set(read_prediction_log(live.root / "data" / "prediction_log")[
                "transaction_id"
            ]),
            10,
            "the logged prediction",
        )  # fmt: skip
        log = read_prediction_log(live.root / "data" / "prediction_log").set_index("transaction_id")
        assert log.loc["sv-2", "txn_count_7d"] == features["txn_count_7d"]
        assert pd.isna(log.loc["sv-1", "txn_count_7d"])
    finally:
        client.set_registered_model_alias(name, alias, v1_version)
        _wait(lambda: _serving(live, v1_version), 30, "the v1 model back")
