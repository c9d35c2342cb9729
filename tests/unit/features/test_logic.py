"""The feature logic alone, no Feast and no Redis: the one definition against the reference.

* :func:`feature_engine.state.request.features_for_request` on state folded one transaction (and
label)
  at a time by the online merges gives exactly the brute-force reference's features, on the
  edge-case data (same-second bursts, events exactly at t - 1h and t - 24h, a burst beyond the
  cap, a customer idle for 40 days, late labels);
* the online merges, in any order, give the DuckDB pipeline's state rows.

``tests/integration/features`` holds the same line through Feast and a real Redis.
"""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from feature_engine.declarations import ServiceTable
from feature_engine.offline.pipeline import build_features
from feature_engine.state.fields import BASELINE_DAYS, DAY_US, HOUR_US, state_fields
from feature_engine.state.fold import (
    Transaction,
    merge_label,
    merge_merchant_transaction,
    merge_transaction,
)
from feature_engine.state.request import features_for_request, lookback_start_us
from feature_repo.derived import MAX_GAP_SECONDS
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES, STATE_VELOCITY
from feature_repo.velocity import VELOCITY, VELOCITY_V2
from fraud_platform.settings import Paths
from tests.support.edge_cases import (
    DISTINCT_CAP,
    EXTENDED_SERVICE,
    FEATURES,
    edge_case_tables,
    write_raw,
)
from tests.support.reference import Reference, Request, mismatches

LATENESS_US = FEATURES.max_lateness_seconds * 1_000_000


V1 = SERVICE_TABLES[FEATURE_SERVICE_NAME]
Project = tuple[Paths, dict[str, pd.DataFrame], ServiceTable]


@pytest.fixture(
    scope="module", params=[V1, EXTENDED_SERVICE], ids=["declared", "declared-plus-rows"]
)
def project(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Project:
    """The edge-case raw tables and their offline state tables (DuckDB only), for the declared
    velocity table and for the table with a new row of every operation: the second proves a
    new row is built, folded, evaluated and referenced with no other change."""
    service: ServiceTable = request.param
    paths = Paths(root=tmp_path_factory.mktemp("logic"))
    tables = edge_case_tables()
    write_raw(tables, paths.raw_dir)
    build_features(paths, FEATURES, service.velocity)
    return paths, tables, service


def test_features_for_request_on_folded_state_match_the_reference(project: Project) -> None:
    """Score every transaction on the state of everything before it, then fold it in."""
    _, t, service = project
    velocity = service.velocity
    reference = Reference(t["transactions"], t["labels"], t["customers"], service)
    homes = t["customers"].set_index("customer_id")[["home_lat", "home_long"]]
    labels = (
        t["labels"]
        .merge(t["transactions"][["transaction_id", "merchant_id"]], on="transaction_id")
        .sort_values("label_timestamp", kind="stable")
    )
    label_rows = list(labels.itertuples())
    customers: dict[str, dict] = {}
    merchants: dict[str, dict] = {}
    label_states: dict[str, dict] = {}
    next_label, problems, warm = 0, [], 0
    seen: set[str] = set()  # declared rows that took a non-zero value at least once
    for r in t["transactions"].itertuples():
        t_us = int(r.timestamp.value // 1000)
        while (
            next_label < len(label_rows) and label_rows[next_label].label_timestamp <= r.timestamp
        ):
            lab = label_rows[next_label]
            label_states[lab.merchant_id] = merge_label(
                label_states.get(lab.merchant_id), int(lab.label_timestamp.value // 1000),
                bool(lab.is_fraud),
            )  # fmt: skip
            next_label += 1
        request = {"txn_timestamp_us": t_us, "amount": r.amount, "lat": r.lat, "long": r.long}
        profile = homes.loc[r.customer_id].to_dict() if r.customer_id in homes.index else {}
        got = features_for_request(
            request,
            customers.get(r.customer_id, {}),
            merchants.get(r.merchant_id, {}),
            label_states.get(r.merchant_id, {}),
            profile,
            service,
        )
        assert set(got) == set(service.feature_names)
        seen.update(
            row.name for row in velocity.rows if got[row.name] and not math.isnan(got[row.name])
        )
        want = reference.features(
            Request(r.customer_id, r.merchant_id, t_us, r.amount, r.lat, r.long)
        )
        if bad := mismatches(want, got):
            problems.append((r.transaction_id, bad))
        warm += got["txn_count_24h"] > 0
        txn = Transaction(
            r.transaction_id, r.customer_id, r.merchant_id, t_us, r.amount, r.lat, r.long
        )
        customers[r.customer_id] = merge_transaction(
            customers.get(r.customer_id), txn, LATENESS_US, DISTINCT_CAP, velocity
        )
        merchants[r.merchant_id] = merge_merchant_transaction(
            merchants.get(r.merchant_id), txn, LATENESS_US, DISTINCT_CAP, velocity
        )
    assert not problems, problems[:5]
    assert seen == {row.name for row in velocity.rows}  # every row was really exercised
    assert warm > len(t["transactions"]) // 2  # the state really was used
    assert next_label > 100  # and labels really arrived along the way


def test_unknown_entities_get_the_defaults() -> None:
    got = features_for_request(
        {"txn_timestamp_us": 1_767_225_600_000_000, "amount": 99.0, "lat": 1.0, "long": 2.0},
        {},
        {},
        {},
        {},
        V1,
    )
    assert got["is_new_customer"] == got["is_new_merchant"] == 1
    assert got["txn_count_24h"] == got["merchant_txn_count_24h"] == 0
    # No history is unknown (NaN), never a value an old quiet card at home could also have.
    assert set(V1.unknown_without_history) == {
        "seconds_since_last_txn", "km_per_hour_from_last_txn", "amount_to_avg_30d",
        "distance_from_home_km",
    }  # fmt: skip
    for name in V1.unknown_without_history:
        assert math.isnan(got[name]), name
    assert got["amount_no_baseline"] == 99.0  # the amount, with nothing to compare it to
    assert got["merchant_fraud_rate_30d"] == 0.0 and got["hour_of_day"] == 0


def test_a_known_card_has_no_unknowns_and_no_amount_without_baseline() -> None:
    t = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC
    state = merge_transaction(
        None,
        Transaction("t1", "c1", "m1", t - 2 * DAY_US, 50.0, 1.0, 2.0),
        LATENESS_US,
        8,
        STATE_VELOCITY,
    )
    got = features_for_request(
        {"txn_timestamp_us": t, "amount": 99.0, "lat": 1.0, "long": 2.0},
        state,
        {},
        {},
        {"home_lat": 1.0, "home_long": 2.0},
        V1,
    )
    assert got["is_new_customer"] == 0 and got["amount_no_baseline"] == 0.0
    assert got["seconds_since_last_txn"] == 2 * 86_400.0
    assert got["amount_to_avg_30d"] == pytest.approx(99.0 / 50.0)
    assert got["distance_from_home_km"] == 0.0 and got["km_per_hour_from_last_txn"] == 0.0


def test_lookback_start_is_the_longest_declared_window() -> None:
    t = 1_767_225_600_000_000 + 5 * HOUR_US  # 05:00 UTC: v1's baseline reaches furthest back
    assert lookback_start_us(t, V1) == t - 5 * HOUR_US - BASELINE_DAYS * DAY_US
    assert lookback_start_us(t, V1) < t - VELOCITY.state_window_us("customer")
    assert lookback_start_us(t, V1) <= t - int(MAX_GAP_SECONDS * 1_000_000)
    # v2's 30-day rolling mean, on daily tiles, reaches 31 days back: further than the baseline.
    v2 = SERVICE_TABLES["fraud_scoring_v2"]
    assert STATE_VELOCITY.state_window_us("customer") == 31 * DAY_US
    assert VELOCITY_V2.state_window_us("customer") == 31 * DAY_US
    assert lookback_start_us(t, v2) == t - 31 * DAY_US


@pytest.mark.parametrize("shuffle_seed", [None, 1, 2])
def test_online_merge_equals_batch_pipeline(project: Project, shuffle_seed: int | None) -> None:
    """Folding transactions (and labels) one at a time, in any order, gives the pipeline's last
    state row of each customer and merchant."""
    paths, tables, service = project
    velocity = service.velocity
    tx = tables["transactions"]
    txns = [
        Transaction(
            r.transaction_id,
            r.customer_id,
            r.merchant_id,
            int(r.timestamp.value // 1000),
            r.amount,
            r.lat,
            r.long,
        )
        for r in tx.itertuples()
    ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(txns)
    customers: dict[str, dict] = {}
    merchants: dict[str, dict] = {}
    label_states: dict[str, dict] = {}
    t = tables
    arrived = t["labels"].merge(
        t["transactions"][["transaction_id", "merchant_id"]], on="transaction_id"
    )
    folds = [
        (r.merchant_id, int(r.label_timestamp.value // 1000), bool(r.is_fraud))
        for r in arrived.itertuples()
    ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(folds)
    for merchant_id, label_ts_us, is_fraud in folds:
        label_states[merchant_id] = merge_label(
            label_states.get(merchant_id), label_ts_us, is_fraud
        )
    for txn in txns:
        customers[txn.customer_id] = merge_transaction(
            customers.get(txn.customer_id), txn, LATENESS_US, DISTINCT_CAP, velocity
        )
        merchants[txn.merchant_id] = merge_merchant_transaction(
            merchants.get(txn.merchant_id), txn, LATENESS_US, DISTINCT_CAP, velocity
        )
    for table, states, key in (
        ("customer_activity", customers, "customer_id"),
        ("merchant_activity", merchants, "merchant_id"),
        ("merchant_label_stats", label_states, "merchant_id"),
    ):
        batch = pd.read_parquet(paths.feature_table(table)).sort_values("event_timestamp")
        batch = batch.groupby(key).tail(1)  # the state as of the last transaction
        assert set(batch[key]) == set(states)
        expected_fields = {name for name, _ in state_fields(velocity)[table]}
        assert set(batch.columns) == expected_fields | {key, "event_timestamp"}
        for row in batch.to_dict("records"):
            online = states[row[key]]
            assert set(online) == expected_fields
            for name, value in online.items():
                expected = (
                    list(row[name])
                    if hasattr(row[name], "__len__") and not isinstance(row[name], str)
                    else row[name]
                )
                # Sums of floats depend on the order they were added in: equal to rounding.
                if name == "c_day_sums" or name.endswith("_amount_sum"):
                    assert expected == pytest.approx(value, rel=1e-12), (row[key], name)
                else:
                    assert expected == value, (row[key], name)
