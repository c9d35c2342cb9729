"""The scoring API against a live uvicorn process, a real redis-server, Feast and MLflow.

Tests run in file order on one API process: the destructive ones (Redis restart, SIGTERM)
come last.
"""

from __future__ import annotations

import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform import redis_server
from fraud_platform.contracts import prediction_for, read_prediction_log
from serving.schemas import BatchOut, ScoreOut
from tests.support.bodies import VALID_TRANSACTION
from tests.support.live_api import API_KEY, Live, stream_drained
from tests.support.stack import STACK_REVIEW_THRESHOLD, STACK_THRESHOLD

pytestmark = pytest.mark.integration


def _later(live: Live, minutes: float) -> str:
    """An ISO timestamp after all the data (so no test touches the replay slice's state)."""
    last = pd.Timestamp(live.meta["last_timestamp"])
    return (last + timedelta(minutes=60 + minutes)).isoformat()


def _txn(live: Live, customer: str, merchant: str, minutes: float, **extra: Any) -> dict:
    return {
        "timestamp": _later(live, minutes),
        "customer_id": customer,
        "merchant_id": merchant,
        "amount": 42.5,
        "lat": 40.7,
        "long": -73.9,
        **extra,
    }


def test_health_and_metrics_are_open(live: Live) -> None:
    assert live.client.get("/health").json() == {"status": "ok"}
    ready = live.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = live.client.get("/metrics")
    assert metrics.status_code == 200
    assert "fraud_api_requests_total" in metrics.text


def test_api_key_required(live: Live) -> None:
    body = _txn(live, "auth-c", "auth-m", 1)
    assert live.post("/predict", body, key=None).status_code == 401
    assert live.post("/predict", body, key="wrong").status_code == 401
    assert live.post("/predict/batch", {"transactions": [body]}, key=None).status_code == 401
    assert live.post("/predict", body, key=API_KEY).status_code == 200
    assert (
        live.post("/predict", body | {"timestamp": _later(live, 2)}, key="second-key").status_code
        == 200
    )


# Every invalid field, missing field, unknown field, junk body and bad label is checked in
# tests/unit/serving/test_validation.py against the real app on a fake service; one of each kind
# here goes through uvicorn and the live stack, as a smoke test of the same path.
def test_bad_field_is_422_naming_it_live(live: Live) -> None:
    response = live.post("/predict", VALID_TRANSACTION | {"merchant_id": "line\nbreak"})
    assert response.status_code == 422, response.text
    assert "merchant_id" in {err["field"] for err in response.json()["detail"]}


def test_junk_body_and_huge_body_live(live: Live) -> None:
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    junk = live.client.post("/predict/batch", content=b"\xff\xfe\x00garbage", headers=headers)
    assert junk.status_code == 422, junk.text
    assert junk.json()["detail"]
    huge = b'{"customer_id": "' + b"x" * 1_100_000 + b'"}'
    assert live.client.post("/predict", content=huge, headers=headers).status_code == 413


def test_bad_label_is_422_naming_the_field_live(live: Live) -> None:
    body = {"transaction_id": "bad-l", "merchant_id": "m", "is_fraud": "yes"}
    response = live.post("/labels", {"labels": [body]})
    assert response.status_code == 422, response.text
    assert "labels.0.is_fraud" in {err["field"] for err in response.json()["detail"]}


REAL_LOOKING_IDS = [
    ("fraud_Kirlin and Sons", "4613314721966"),
    ("fraud_Bins-Howell, Ltd.", "O'Brien-Müller card"),
    ("Café de l'Opéra", "cliente ñandú #7"),
    ("x" * 128, "店铺 № 12"),
]


@pytest.mark.parametrize(("merchant", "customer"), REAL_LOOKING_IDS)
def test_real_looking_ids_are_scored_and_round_trip_through_redis(
    live: Live, merchant: str, customer: str
) -> None:
    """Merchant names with spaces, commas, apostrophes and accents are ids like any other."""
    first = live.post(
        "/predict", _txn(live, customer, merchant, 40, transaction_id=f"{merchant[:120]}#1")
    )
    assert first.status_code == 200, first.text
    assert first.json()["features"]["is_new_customer"] == 1
    second = live.post("/predict", _txn(live, customer, merchant, 41))
    assert second.status_code == 200, second.text
    features = second.json()["features"]
    # The first transaction went into Redis under these ids and came back out under them.
    assert features["txn_count_1h"] == 1 and features["merchant_txn_count_24h"] == 1
    assert first.json()["transaction_id"] == f"{merchant[:120]}#1"


def test_posted_labels_move_the_online_rate_once_and_are_journaled(live: Live) -> None:
    from feature_engine.offline.events import read_event_tables

    def rate_on(minutes: float) -> float:
        response = live.post("/predict", _txn(live, "label-c", "label-m", minutes))
        assert response.status_code == 200, response.text
        return float(response.json()["features"]["merchant_fraud_rate_30d"])

    assert rate_on(400) == 0.0
    labels = [
        {"transaction_id": "lt-1", "merchant_id": "label-m", "is_fraud": True,
         "label_timestamp": _later(live, 410), "fraud_pattern": "card_testing"},
        {"transaction_id": "lt-2", "merchant_id": "label-m", "is_fraud": False,
         "label_timestamp": _later(live, 420)},
    ]  # fmt: skip
    first = live.post("/labels", {"labels": labels})
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 2, "applied": 2, "duplicates": []}
    two_days_later = 400 + 2 * 1440
    assert rate_on(two_days_later) == pytest.approx(0.5)
    again = live.post("/labels", {"labels": labels}).json()
    assert again == {"received": 2, "applied": 0, "duplicates": ["lt-1", "lt-2"]}
    assert rate_on(two_days_later + 1) == pytest.approx(0.5)  # idempotent: not counted twice
    events = read_event_tables(live.root / "data" / "raw", live.root / "data" / "ingested")
    journaled = events.labels.to_pandas().set_index("transaction_id")
    assert (
        journaled.loc["lt-1", "merchant_id"] == "label-m" and journaled.loc["lt-1", "is_fraud"] == 1
    )
    assert journaled.loc["lt-2", "fraud_pattern"] == "none"
    scored = events.transactions.to_pandas()
    assert (scored["merchant_id"] == "label-m").sum() == 3  # the scored transactions, journaled


def test_labels_need_the_api_key(live: Live) -> None:
    body = {"labels": [{"transaction_id": "k-l", "merchant_id": "m", "is_fraud": False}]}
    assert live.post("/labels", body, key=None).status_code == 401


def test_late_transactions_say_how_late_and_beyond_the_bound_are_flagged(live: Live) -> None:
    first = live.post("/predict", _txn(live, "late-c", "late-m", 300))
    assert first.status_code == 200 and first.json()["lateness_seconds"] == 0.0
    ten_minutes_late = live.post("/predict", _txn(live, "late-c", "late-m2", 290)).json()
    assert ten_minutes_late["lateness_seconds"] == pytest.approx(600.0)
    assert ten_minutes_late["late_beyond_bound"] is False
    # Exact within the bound: the card's other transaction is 10 minutes *after* this one.
    assert ten_minutes_late["features"]["txn_count_24h"] == 0
    assert ten_minutes_late["features"]["is_new_customer"] == 1
    before = _metric(live, "fraud_api_late_beyond_bound_total")
    three_hours_late = live.post("/predict", _txn(live, "late-c", "late-m3", 120)).json()
    assert three_hours_late["late_beyond_bound"] is True
    assert three_hours_late["lateness_seconds"] == pytest.approx(3 * 3600.0)
    assert three_hours_late["features"]["is_new_customer"] == 0  # a known card is not new
    assert _metric(live, "fraud_api_late_beyond_bound_total") == before + 1


def _close(a: Any, b: Any) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return a is None  # unknown (no history): NaN offline, null in the API's answer
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def test_replay_parity_with_historical_features(live: Live) -> None:
    """Live API features of a held-out slice equal Feast's point-in-time training features."""
    held_out = pd.read_parquet(live.root / "slice.parquet")
    expected = pd.read_parquet(live.root / "expected.parquet")
    names = live.meta["names"]
    assert len(held_out) >= 50
    assert held_out["timestamp"].dt.floor("D").nunique() == 1  # one UTC day: same label buckets
    mismatches = []
    warm = 0
    for i, row in enumerate(held_out.itertuples()):
        body = {
            "transaction_id": row.transaction_id,
            "timestamp": row.timestamp.isoformat(),
            "customer_id": row.customer_id,
            "merchant_id": row.merchant_id,
            "amount": row.amount,
            "lat": row.lat,
            "long": row.long,
        }
        response = live.post("/predict", body)
        assert response.status_code == 200, response.text
        got = response.json()["features"]
        warm += got["txn_count_24h"] > 0
        for name in names:
            want = expected.loc[i, name]
            want = want.item() if hasattr(want, "item") else want  # numpy scalar -> Python
            same_type = got[name] is None or type(got[name]) is type(want)
            if not _close(got[name], want) or not same_type:
                mismatches.append((row.transaction_id, name, got[name], want))
    assert mismatches == []
    assert warm > len(held_out) // 3  # the slice really exercised stored and ingested state


@pytest.mark.parametrize("path", ["feast", "direct"])
def test_feature_path_equals_get_online_features(live: Live, path: str) -> None:
    # Every held-out row, read alone and all in one call: same values, same Python types.
    assert live.readers["rows"] > 50
    assert live.readers["mismatches"][path] == 0


def test_answers_are_what_the_response_models_would_send(live: Live) -> None:
    # The scoring routes send their dicts as JSON directly (serving/responses.py), without
    # FastAPI's validation against the response model: they must already be exactly that.
    one = live.post("/predict", _txn(live, "shape-c", "shape-m", 7)).json()  # unknown: nulls
    assert one == ScoreOut.model_validate(one).model_dump(mode="json")
    batch = live.post("/predict/batch", {"transactions": [_txn(live, "shape-c", "shape-m", 8)]})
    batch = batch.json()
    assert batch == BatchOut.model_validate(batch).model_dump(mode="json")


def test_cold_start_gets_defaults(live: Live) -> None:
    response = live.post("/predict", _txn(live, "never-seen-c", "never-seen-m", 5))
    assert response.status_code == 200
    out = response.json()
    assert out["cold_start"] is True
    features = out["features"]
    assert features["is_new_customer"] == 1 and features["is_new_merchant"] == 1
    assert features["txn_count_24h"] == 0 and features["merchant_txn_count_24h"] == 0
    # No history is said explicitly: null in the answer and listed as unknown, never a value
    # an old quiet card at home could also have; the amount has no baseline to compare with.
    unknown = SERVICE_TABLES[FEATURE_SERVICE_NAME].unknown_without_history
    assert set(unknown) <= set(out["unknown_features"])
    assert all(features[name] is None for name in unknown)
    assert features["amount_no_baseline"] == 42.5
    assert 0 <= out["probability"] <= 1
    assert (out["threshold"], out["review_threshold"]) == (STACK_THRESHOLD, STACK_REVIEW_THRESHOLD)
    assert out["prediction"] == prediction_for(
        out["probability"], STACK_THRESHOLD, STACK_REVIEW_THRESHOLD
    )
    assert len(out["transaction_id"]) == 32  # generated uuid4 hex
    assert len(out["explanation"]) == 5
    contributions = [abs(e["contribution"]) for e in out["explanation"]]
    assert contributions == sorted(contributions, reverse=True)
    assert out["model_version"]["name"] == "fraud-detector"
    known = live.post(
        "/predict",
        _txn(live, live.meta["known_customer"], live.meta["known_merchant"], 6),
    ).json()
    assert known["cold_start"] is False


def test_batch_scores_in_order_and_limits(live: Live) -> None:
    items = [_txn(live, f"batch-c{i}", "batch-m", 10 + i, transaction_id=f"b{i}") for i in range(3)]
    response = live.post("/predict/batch", {"transactions": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["transaction_id"] for r in results] == ["b0", "b1", "b2"]
    # Read before the batch's own ingestion: none of the items sees the others.
    assert [r["features"]["merchant_txn_count_24h"] for r in results] == [0, 0, 0]
    after = live.post("/predict", _txn(live, "batch-c9", "batch-m", 20)).json()
    assert after["features"]["merchant_txn_count_24h"] == 3
    too_many = [_txn(live, "lim-c", "lim-m", 30)] * 257
    over = live.post("/predict/batch", {"transactions": too_many})
    assert over.status_code == 422
    assert over.json()["detail"][0]["field"] == "transactions"
    assert live.post("/predict/batch", {"transactions": []}).status_code == 422
    bad_item = live.post("/predict/batch", {"transactions": [items[0], {**items[1], "lat": 99}]})
    assert bad_item.status_code == 422
    assert bad_item.json()["detail"][0]["field"] == "transactions.1.lat"


def test_concurrent_transactions_of_one_customer_lose_no_update(live: Live) -> None:
    n = 24
    bodies = [
        _txn(live, "conc-c", f"conc-m{i % 3}", 40 + i / 100, transaction_id=f"conc{i}")
        for i in range(n)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda b: (
                    httpx.post(
                        f"{live.base}/predict", json=b, headers={"X-API-Key": API_KEY}, timeout=30
                    ).status_code
                ),
                bodies,
            )
        )
    assert statuses == [200] * n
    live.scored.extend(f"conc{i}" for i in range(n))
    probe = live.post("/predict", _txn(live, "conc-c", "conc-m0", 45)).json()["features"]
    assert probe["txn_count_1h"] == n
    assert probe["txn_count_24h"] == n


def test_new_alias_is_picked_up_without_restart(live: Live) -> None:
    before = live.post("/predict", _txn(live, "swap-c", "swap-m", 50)).json()["model_version"]
    assert before["version"] == live.meta["model"]["version"]
    from mlflow import MlflowClient

    uri = live.env["MLFLOW_TRACKING_URI"]
    new = {
        "version": live.meta["model"]["next_version"],
        "run_id": live.meta["model"]["next_run_id"],
    }
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("fraud-detector", "production", new["version"])
    deadline = time.monotonic() + 20
    seen = before["version"]
    i = 0
    while time.monotonic() < deadline and seen != new["version"]:
        i += 1
        response = live.post("/predict", _txn(live, "swap-c", "swap-m", 51 + i / 100))
        assert response.status_code == 200  # no request fails during the swap
        seen = response.json()["model_version"]["version"]
        time.sleep(0.1)
    assert seen == new["version"] != before["version"]
    assert live.client.get("/ready").json()["model_version"]["run_id"] == new["run_id"]


def _metric(live: Live, name: str, **labels: str) -> float:
    """Sum of a metric's samples (those with the given labels) on the live API."""
    text = live.client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _wait_until_ingested(live: Live) -> None:
    """Until every answered scoring request's transactions are in Redis (stream or async)."""
    if live.env["SERVING_INGEST_MODE"] == "stream":
        stream_drained(live.stack.redis_url)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answered = sum(
            _metric(live, "fraud_api_requests_total", endpoint=path, status="200")
            for path in ("/predict", "/predict/batch")
        )
        if _metric(live, "fraud_api_ingestion_lag_seconds_count") >= answered:
            return
        time.sleep(0.05)
    raise AssertionError("ingestion did not catch up")


def _redis_snapshot(live: Live) -> dict[bytes, Any]:
    client = redis.Redis.from_url(live.stack.redis_url)
    return {
        # The ingestion stream's dump holds its consumers' last-seen times (each worker poll
        # changes them): its last appended id is what a write would change.
        key: client.xinfo_stream(key)["last-generated-id"]
        if key.endswith(b":ingest:txn")
        else client.dump(key)
        for key in client.scan_iter(count=1000)
        # The workers' heartbeats change every second: liveness, not state.
        if not key.endswith(b":ingest:workers")
    }


def test_a_refused_transaction_changes_no_state(live: Live) -> None:
    first = live.post("/predict", _txn(live, "guard-c", "guard-m", 55))
    assert first.status_code == 200
    _wait_until_ingested(live)
    before = _redis_snapshot(live)
    logged_before = len(read_prediction_log(live.root / "data" / "prediction_log"))
    future = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=10)).isoformat()
    refused = [
        ("/predict", _txn(live, "guard-c", "guard-m", 0, timestamp=future)),
        ("/predict", _txn(live, "guard-c", "guard-m", 0, timestamp="2199-12-31T00:00:00Z")),
        ("/predict", _txn(live, "guard-c", "guard-m", 0, timestamp="9999-12-31T23:59:59-01:00")),
        # One bad item refuses the whole batch: the good one is not scored either.
        ("/predict/batch", {"transactions": [
            _txn(live, "guard-c", "guard-m", 56), _txn(live, "guard-c", "guard-m", 0,
                                                        timestamp=future)]}),
    ]  # fmt: skip
    for path, body in refused:
        response = live.post(path, body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"].endswith("timestamp")
    time.sleep(0.3)  # a write that slipped through would be on its way by now
    _wait_until_ingested(live)
    assert _redis_snapshot(live) == before
    assert len(read_prediction_log(live.root / "data" / "prediction_log")) == logged_before
    # And the customer's next real transaction does not see any of them.
    after = live.post("/predict", _txn(live, "guard-c", "guard-m", 57)).json()["features"]
    assert after["txn_count_1h"] == 1 and after["merchant_txn_count_24h"] == 1


def test_just_inside_the_future_skew_is_accepted(live: Live) -> None:
    soon = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=4)).isoformat()
    response = live.post("/predict", _txn(live, "skew-c", "skew-m", 0, timestamp=soon))
    assert response.status_code == 200, response.text


def test_redis_down_gives_fast_503_and_recovers_with_its_state(live: Live) -> None:
    seen = live.post("/predict", _txn(live, "down-c", "down-m", 60))
    assert seen.status_code == 200
    _wait_until_ingested(live)
    body = _txn(live, "down-c", "down-m", 61)
    redis_server.stop(live.stack.root)
    try:
        down = live.post("/predict", body)
        assert down.status_code == 503
        assert down.json()["error"] == "service_unavailable"
        assert "online store" in down.json()["detail"]
        assert down.headers["Retry-After"] == "1"
        started = time.perf_counter()
        again = live.post("/predict", body)  # known down: answered without touching Redis
        assert again.status_code == 503
        assert time.perf_counter() - started < 1.0  # target 250 ms; loose for a busy machine
        ready = live.client.get("/ready")
        assert ready.status_code == 503 and "online store" in ready.json()["reasons"][0]
        assert live.client.get("/health").status_code == 200
        assert _metric(live, "fraud_api_online_store_up") == 0
    finally:
        restarted = redis_server.start(root=live.stack.root)
    assert restarted.url == live.stack.redis_url  # same port: the API reconnects by itself
    deadline = time.monotonic() + 15
    response = None
    while time.monotonic() < deadline and (response is None or response.status_code != 200):
        response = live.post("/predict", body)
        time.sleep(0.1)
    assert response is not None and response.status_code == 200
    # The append-only file kept the state: the transaction scored before the outage counts.
    assert response.json()["features"]["txn_count_1h"] == 1
    assert live.proc.poll() is None  # same process
    assert _metric(live, "fraud_api_online_store_up") == 1


def test_prediction_log_complete_after_sigterm(live: Live) -> None:
    assert live.scored
    metrics = live.client.get("/metrics").text
    assert "fraud_api_ingestion_lag_seconds_count" in metrics
    assert 'fraud_api_predictions_total{prediction="LEGIT"}' in metrics or (
        'fraud_api_predictions_total{prediction="FRAUD"}' in metrics
    )
    live.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after a graceful shutdown: exit by SIGTERM, not a crash.
    assert live.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (live.root / "api.log").read_text()
    folder = live.root / "data" / "prediction_log"
    assert not list(folder.glob("*.jsonl")), "a clean stop compacts every segment"
    assert list(folder.glob("predictions-*.parquet"))
    log = read_prediction_log(folder)
    assert sorted(log["transaction_id"]) == sorted(live.scored)
    for column in [
        *live.meta["names"],
        "probability",
        "prediction",
        "timestamp",
        "amount",
        "lat",
        "long",
        "model_version",
        "threshold",
        "scored_at",
        "cold_start",
        "customer_id",
        "merchant_id",
    ]:
        assert column in log.columns, column
    assert str(log["timestamp"].dt.tz) == "UTC"
    # Each logged decision is its band's: FRAUD, REVIEW (the stack model's band) or LEGIT.
    expected = [
        prediction_for(p, t, STACK_REVIEW_THRESHOLD)
        for p, t in zip(log["probability"], log["threshold"], strict=True)
    ]
    assert log["prediction"].tolist() == expected
    # The request's own fields are logged: the replayed slice's rows match their source.
    held_out = pd.read_parquet(live.root / "slice.parquet").set_index("transaction_id")
    replayed = log.set_index("transaction_id").loc[held_out.index]
    for column in ("amount", "lat", "long", "customer_id", "merchant_id"):
        assert (replayed[column] == held_out[column]).all(), column
    assert (replayed["timestamp"] == held_out["timestamp"].dt.tz_convert("UTC")).all()
