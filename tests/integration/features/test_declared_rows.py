"""A new declared feature reaches Feast with no other change: offline and online.

The extended table (``tests.support.edge_cases.EXTENDED_SERVICE``) adds one row of every
operation, a 7-day card window and two merchant rows to the declared velocity table, and one
derived feature (``amount_over_max_24h``, declared like those of ``feature_repo/derived.py``).
Built, applied (in-process, through the same ``fraud_definitions``), retrieved with
``get_historical_features`` and read online after ``materialize``, its features equal the
brute-force reference, which iterates the same table: 0 mismatches.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from feature_engine.offline.pipeline import build_features, latest_state_time
from feature_engine.store import (
    feature_names,
    historical_features,
    materialize,
    online_features,
    open_store,
)
from feature_repo.definitions import fraud_definitions
from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.settings import Settings
from tests.integration.features.test_parity import _online_row, _probe_requests
from tests.support.edge_cases import (
    EXTENDED_SERVICE,
    FEATURES,
    edge_case_tables,
    write_raw,
)
from tests.support.reference import Reference, Request, mismatches, requests_frame

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> tuple:
    """The edge-case project built and applied with the extended declaration table."""
    root = tmp_path_factory.mktemp("extended")
    settings = Settings(project_root=root, redis_url=redis_url)
    tables = edge_case_tables()
    write_raw(tables, settings.paths.raw_dir)
    build_features(settings.paths, FEATURES, EXTENDED_SERVICE.velocity)
    store = open_store(settings)
    store.apply(
        fraud_definitions(
            settings.paths.features_dir, {FEATURE_SERVICE_NAME: EXTENDED_SERVICE}
        ).objects()
    )
    reference = Reference(
        tables["transactions"],
        tables["labels"],
        tables["customers"],
        EXTENDED_SERVICE,
    )
    return settings, tables, reference


def test_the_service_serves_the_new_rows(extended: tuple) -> None:
    settings, _, _ = extended
    names = feature_names(open_store(settings), FEATURE_SERVICE_NAME)
    assert names == list(EXTENDED_SERVICE.feature_names)
    assert {"txn_count_7d", "merchant_amount_sum_24h", "amount_mean_6h"} <= set(names)
    assert "amount_over_max_24h" in names  # the fixture's derived feature, too


def test_historical_features_of_new_rows_match_the_reference(extended: tuple) -> None:
    settings, tables, reference = extended
    tx = tables["transactions"]
    requests = [
        Request(r.customer_id, r.merchant_id, int(r.timestamp.value // 1000), r.amount, r.lat,
                r.long)
        for r in tx.itertuples()
    ] + _probe_requests(tx)  # fmt: skip
    store = open_store(settings)
    got = historical_features(store, requests_frame(requests), FEATURE_SERVICE_NAME, progress=None)
    names = feature_names(store, FEATURE_SERVICE_NAME)
    problems = [
        (q, bad)
        for i, q in enumerate(requests)
        if (bad := mismatches(reference.features(q), got.loc[i, names].to_dict()))
    ]
    assert not problems, problems[:5]
    # The 7-day window really reaches beyond the 24 h one somewhere in the data.
    assert (got["txn_count_7d"] > got["txn_count_24h"]).any()
    assert (got["merchant_distinct_cards_1h"] > 1).any()
    assert got["amount_over_max_24h"].notna().any() and got["amount_over_max_24h"].isna().any()


def test_online_features_of_new_rows_match_the_reference(extended: tuple) -> None:
    settings, tables, reference = extended
    store = open_store(settings)
    end = latest_state_time(settings.paths.features_dir)
    materialize(store, end + timedelta(seconds=1))
    tx = tables["transactions"]
    last = tx["timestamp"].max()
    # Requests after the data's end: what Redis holds is the state as of the last event.
    requests = [
        Request(r.customer_id, r.merchant_id, int((last + pd.Timedelta(minutes=m)).value // 1000),
                10.0, r.lat, r.long)
        for m, r in zip((1, 30, 90, 600), tx.sort_values("timestamp").tail(4).itertuples(),
                        strict=True)
    ]  # fmt: skip
    got = online_features(store, [_online_row(q) for q in requests], FEATURE_SERVICE_NAME)
    problems = [
        (q, bad)
        for q, row in zip(requests, got, strict=True)
        if (bad := mismatches(reference.features(q), row))
    ]
    assert not problems, problems
    assert any(row["merchant_amount_sum_24h"] > 0 for row in got)
