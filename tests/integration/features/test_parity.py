"""Exactness: offline (get_historical_features), online (Redis) and the brute-force reference agree.

Zero mismatches are allowed: counts exactly, sums and ratios to 1e-9 relative.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from feature_engine.offline.pipeline import latest_state_time
from feature_engine.online import writer as online_state
from feature_engine.online.redis_layout import RedisLayout
from feature_engine.online.writer import OnlineStateWriter
from feature_engine.state.fields import BASELINE_DAYS, DAY_US, LABEL_STATE_DAYS
from feature_engine.state.fold import Transaction
from feature_engine.store import (
    feature_names,
    feature_service,
    historical_features,
    materialize,
    online_features,
    open_store,
    request_row,
)
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES, STATE_VELOCITY
from tests.support.edge_cases import (
    BASE,
    FEATURES,
    FeatureProject,
    feast_cli,
    flush_online,
)
from tests.support.reference import Reference, Request, mismatches, requests_frame

pytestmark = pytest.mark.integration
LATENESS_US = FEATURES.max_lateness_seconds * 1_000_000


@pytest.fixture(scope="module")
def reference(feature_project: FeatureProject) -> Reference:
    t = feature_project.tables
    return Reference(t["transactions"], t["labels"], t["customers"])


def _requests_for(tx: pd.DataFrame) -> list[Request]:
    return [
        Request(
            r.customer_id, r.merchant_id, int(r.timestamp.value // 1000), r.amount, r.lat, r.long
        )
        for r in tx.itertuples()
    ]


def _probe_requests(tx: pd.DataFrame) -> list[Request]:
    """Requests at times no transaction has: window edges, long after, unknown entities."""
    probes = []
    hour = pd.Timedelta(hours=1)
    for r in tx[tx["customer_id"].isin(["c_burst", "c_cap", "c_sleepy"])].itertuples():
        for offset in (hour, 24 * hour, pd.Timedelta(seconds=1), 35 * 24 * hour):
            at = r.timestamp + offset  # exactly t + 1h: the transaction sits at t' - 1h
            probes.append(
                Request(r.customer_id, r.merchant_id, int(at.value // 1000), 12.5, 41.0, -73.0)
            )
    probes.append(
        Request("c_unknown", "m_unknown", int((BASE + 3 * 24 * hour).value // 1000), 5.0, 0.0, 0.0)
    )
    return probes


def _online_row(q: Request) -> dict:
    at = datetime.fromtimestamp(q.t_us // 1_000_000, tz=UTC).replace(microsecond=q.t_us % 1_000_000)
    return request_row(q.customer_id, q.merchant_id, at, q.amount, q.lat, q.long)


def _service_reference(feature_project: FeatureProject, service: str) -> Reference:
    t = feature_project.tables
    return Reference(t["transactions"], t["labels"], t["customers"], SERVICE_TABLES[service])


@pytest.mark.parametrize("service", list(SERVICE_TABLES))
def test_historical_features_match_reference(feature_project: FeatureProject, service: str) -> None:
    """Each feature service, from the one state built for all of them, equals the reference."""
    reference = _service_reference(feature_project, service)
    tx = feature_project.tables["transactions"]
    requests = _requests_for(tx) + _probe_requests(tx)
    store = open_store(feature_project.settings)
    got = historical_features(store, requests_frame(requests), service, progress=None)
    names = feature_names(store, service)
    assert names == list(SERVICE_TABLES[service].feature_names)
    assert len(got) == len(requests)
    problems = []
    for i, q in enumerate(requests):
        bad = mismatches(reference.features(q), got.loc[i, names].to_dict())
        if bad:
            problems.append((q, bad))
    assert not problems, problems[:5]
    # No cap: a probe just after c_cap's burst counts all of its transactions (within an hour),
    # more than the 4 the old state cap kept.
    burst_rows = got[got["customer_id"] == "c_cap"]
    assert burst_rows["txn_count_1h"].max() == (tx["customer_id"] == "c_cap").sum() > 4
    # The busy merchant's offline rows (one per 5-minute tile) hold transactions later than
    # the requests that read them: the on-demand view's `< t` is what keeps them out.
    states = pd.read_parquet(feature_project.settings.paths.feature_table("merchant_activity"))
    busy = states[states["merchant_id"] == "m_busy"]
    stamps_us = busy["event_timestamp"].dt.as_unit("us").astype("int64")
    assert (busy["m_latest_ts_us"] > stamps_us).sum() > 20
    if "txn_count_7d" in names:  # v2's longer windows really reach further than 24 hours
        assert (got["txn_count_7d"] > got["txn_count_24h"]).any()
        assert (got["merchant_txn_count_1h"] < got["merchant_txn_count_24h"]).any()
        assert got["amount_mean_30d"].notna().sum() > len(got) // 2


@pytest.mark.parametrize("service_name", list(SERVICE_TABLES))
def test_online_after_materialize_matches_reference(
    feature_project: FeatureProject, service_name: str, redis_url: str
) -> None:
    """Materialize "as of" a probe time, then read online at that time, however stale the state."""
    reference = _service_reference(feature_project, service_name)
    flush_online(feature_project.settings)
    store = open_store(feature_project.settings)
    service = feature_service(store, service_name)
    names = feature_names(store, service_name)
    tx = feature_project.tables["transactions"]
    end = max(tx["timestamp"].max(), feature_project.tables["labels"]["label_timestamp"].max())
    merchant_of = tx.groupby("customer_id")["merchant_id"].first()
    problems = []
    for offset in (pd.Timedelta(minutes=30), pd.Timedelta(hours=23), pd.Timedelta(days=40)):
        at = end + offset
        materialize(store, end=at.to_pydatetime())  # what a nightly job would have loaded by then
        requests = [
            Request(customer, merchant, int(at.value // 1000), 99.0, 40.5, -73.5)
            for customer, merchant in merchant_of.items()
        ]
        got = online_features(store, [_online_row(q) for q in requests], service, names)
        problems += [
            (q, bad)
            for q, row in zip(requests, got, strict=True)
            if (bad := mismatches(reference.features(q), row))
        ]
    assert not problems, problems[:5]


def test_default_materialize_serves_requests_at_data_time_exactly(
    feature_project: FeatureProject, reference: Reference, redis_url: str
) -> None:
    """The default end is data time: requests between the last transaction and the last label
    (a replay right after the data, while chargebacks still arrive) get the offline values,
    merchant_fraud_rate_30d included, although Redis already holds labels newer than them."""
    flush_online(feature_project.settings)
    store = open_store(feature_project.settings)
    service, names = (
        feature_service(store, FEATURE_SERVICE_NAME),
        feature_names(store, FEATURE_SERVICE_NAME),
    )
    tx, labels = feature_project.tables["transactions"], feature_project.tables["labels"]
    end = latest_state_time(feature_project.settings.paths.features_dir)
    assert end == labels["label_timestamp"].max()  # labels arrive after the last transaction
    materialize(store, end=end)
    last_txn = tx["timestamp"].max()
    assert (end - last_txn) > pd.Timedelta(days=3)  # Redis knows labels from the requests' future
    pairs = tx.drop_duplicates("customer_id")[["customer_id", "merchant_id"]].itertuples()
    requests = [
        Request(
            p.customer_id, p.merchant_id, int((last_txn + offset).value // 1000), 7.5, 40.1, -74.2
        )
        for p in pairs
        for offset in (pd.Timedelta(minutes=1), pd.Timedelta(days=2), pd.Timedelta(days=6))
    ]
    got = online_features(store, [_online_row(q) for q in requests], service, names)
    problems = [
        (q, bad)
        for q, row in zip(requests, got, strict=True)
        if (bad := mismatches(reference.features(q), row))
    ]
    assert not problems, problems[:5]
    rates = [row["merchant_fraud_rate_30d"] for row in got]
    assert sum(rate > 0 for rate in rates) > len(rates) // 4  # labels really reached Redis


@pytest.mark.parametrize("days_after_last_label", [-6, 0, 45, 400])
def test_label_rate_is_exact_or_unknown_whatever_the_materialize_end(
    feature_project: FeatureProject,
    reference: Reference,
    redis_url: str,
    days_after_last_label: int,
) -> None:
    """Redis loaded to any end answers the label rate exactly, or NaN where it cannot know it:
    never a silent 0 (the skew of materializing empty label snapshots to wall-clock now)."""
    flush_online(feature_project.settings)
    store = open_store(feature_project.settings)
    service, names = (
        feature_service(store, FEATURE_SERVICE_NAME),
        feature_names(store, FEATURE_SERVICE_NAME),
    )
    labels = feature_project.tables["labels"].merge(
        feature_project.tables["transactions"][["transaction_id", "merchant_id"]],
        on="transaction_id",
    )
    end = labels["label_timestamp"].max() + pd.Timedelta(days=days_after_last_label)
    materialize(store, end=end.to_pydatetime())
    # What Redis got: each merchant's latest label-state row at or before the end. Its last row
    # (all labels known) keeps LABEL_STATE_DAYS; an earlier one only the 30 days it needs.
    final_day = labels.groupby("merchant_id")["label_timestamp"].max().map(_day)
    # A label day's row is stamped with its last label: loaded only when that is <= end.
    day_of = labels["label_timestamp"].map(_day)
    day_stamp = labels.groupby(["merchant_id", day_of])["label_timestamp"].transform("max")
    known = labels[day_stamp <= end]
    loaded_day = known.groupby("merchant_id")["label_timestamp"].max().map(_day)
    complete_from = {
        m: day - (LABEL_STATE_DAYS if day == final_day[m] else BASELINE_DAYS)
        for m, day in loaded_day.items()
    }
    assert (days_after_last_label >= 0) == (loaded_day == final_day).all()
    requests = [
        Request("c_nobody", m, int((BASE + offset).value // 1000), 5.0, 40.0, -74.0)
        for m in complete_from
        for offset in (pd.Timedelta(days=d, hours=5) for d in (-40, -5, 10, 30, 50, 70, 130))
    ]
    got = online_features(store, [_online_row(q) for q in requests], service, names)
    unknown = exact = 0
    for q, row in zip(requests, got, strict=True):
        value, want = (
            row["merchant_fraud_rate_30d"],
            reference.features(q)["merchant_fraud_rate_30d"],
        )
        first_needed = q.t_us // DAY_US - BASELINE_DAYS
        if first_needed < complete_from[q.merchant_id]:
            # Unknown: the buckets it needs were dropped. The logic says NaN; Feast's online
            # response carries a NaN double as a null.
            assert value is None, (q, value)
            unknown += 1
        elif days_after_last_label >= 0:
            # Exact: every label was loaded.
            assert value == pytest.approx(want, rel=1e-12, abs=1e-12), (q, value, want)
            exact += 1
        else:
            # Loaded to an earlier end, the store knows the labels up to the end: exact for those.
            known_then = Reference(
                feature_project.tables["transactions"],
                known.drop(columns="merchant_id"),
                feature_project.tables["customers"],
            ).features(q)["merchant_fraud_rate_30d"]
            assert value == pytest.approx(known_then, rel=1e-12, abs=1e-12), (q, value)
            exact += 1
    assert unknown > 0 and exact > 0  # both sides of the rule were exercised


def _day(moment: pd.Timestamp) -> int:
    return int(moment.value // 1000) // DAY_US


def test_replay_through_online_ingestion_matches_reference(
    feature_project: FeatureProject, reference: Reference, redis_url: str
) -> None:
    """Materialize up to a cut-off, then score-and-ingest every later transaction in order."""
    flush_online(feature_project.settings)
    store = open_store(feature_project.settings)
    cutoff = BASE + pd.Timedelta(days=20)
    materialize(store, end=cutoff.to_pydatetime())
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    service, names = (
        feature_service(store, FEATURE_SERVICE_NAME),
        feature_names(store, FEATURE_SERVICE_NAME),
    )
    t = feature_project.tables
    tx = t["transactions"][t["transactions"]["timestamp"] > cutoff]
    labels = t["labels"].merge(
        t["transactions"][["transaction_id", "merchant_id"]], on="transaction_id"
    )
    labels = labels[labels["label_timestamp"] > cutoff].sort_values("label_timestamp")
    label_rows = list(labels.itertuples())
    next_label = 0
    problems = []
    for r, q in zip(tx.itertuples(), _requests_for(tx), strict=True):
        # Labels stream in as they arrive: everything known by this transaction's time.
        arrived = []
        while (
            next_label < len(label_rows) and label_rows[next_label].label_timestamp <= r.timestamp
        ):
            lab = label_rows[next_label]
            arrived.append(
                (
                    lab.merchant_id,
                    lab.transaction_id,
                    int(lab.label_timestamp.value // 1000),
                    bool(lab.is_fraud),
                )
            )
            next_label += 1
        writer.ingest_labels(arrived)
        row = online_features(store, [_online_row(q)], service, names)[0]
        if bad := mismatches(reference.features(q), row):
            problems.append((r.transaction_id, bad))
        writer.ingest_transaction(
            Transaction(
                r.transaction_id, r.customer_id, r.merchant_id, q.t_us, r.amount, r.lat, r.long
            )
        )
    assert len(tx) > 100
    assert not problems, problems[:5]


@pytest.mark.parametrize("seed", [3, 4])
def test_late_events_within_the_bound_get_the_reference_features(
    feature_project: FeatureProject, redis_url: str, seed: int
) -> None:
    """Transactions arrive shuffled by up to the lateness bound; each is scored on what has
    arrived before it, and must get exactly what the reference gives from those events."""
    flush_online(feature_project.settings)
    store = open_store(feature_project.settings)
    cutoff = BASE + pd.Timedelta(days=8)
    materialize(store, end=cutoff.to_pydatetime())
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    service, names = (
        feature_service(store, FEATURE_SERVICE_NAME),
        feature_names(store, FEATURE_SERVICE_NAME),
    )
    t = feature_project.tables
    tx = t["transactions"]
    later = tx[(tx["timestamp"] > cutoff) & (tx["timestamp"] <= cutoff + pd.Timedelta(days=14))]
    rng = random.Random(seed)
    lateness = pd.Timedelta(seconds=FEATURES.max_lateness_seconds)
    arrival = later.assign(
        arrives=[ts + rng.random() * lateness for ts in later["timestamp"]]
    ).sort_values("arrives")
    assert (arrival["timestamp"].diff().dt.total_seconds() < 0).sum() > 20  # really out of order
    arrived = tx["timestamp"] <= cutoff
    no_labels = t["labels"].iloc[0:0]  # labels are not what this test is about
    problems, late_seen = [], 0
    for r in arrival.itertuples():
        q = Request(
            r.customer_id, r.merchant_id, int(r.timestamp.value // 1000), r.amount, r.lat, r.long
        )
        known = Reference(tx[arrived], no_labels, t["customers"])
        want = known.features(q)
        got = online_features(store, [_online_row(q)], service, names)[0]
        bad = [m for m in mismatches(want, got) if not m.startswith("merchant_fraud_rate_30d")]
        if bad:
            problems.append((r.transaction_id, bad))
        late_seen += bool(
            (tx[arrived & (tx["customer_id"] == r.customer_id)]["timestamp"] > r.timestamp).any()
        )
        writer.ingest_transaction(
            Transaction(
                r.transaction_id, r.customer_id, r.merchant_id, q.t_us, r.amount, r.lat, r.long
            )
        )
        arrived |= tx["transaction_id"] == r.transaction_id
    assert late_seen > 5  # requests really came after later events of their own card
    assert not problems, problems[:5]


def test_beyond_the_lateness_bound_a_known_card_is_not_called_new(
    feature_project: FeatureProject, redis_url: str
) -> None:
    store = open_store(feature_project.settings)
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    at = BASE + pd.Timedelta(days=700)
    writer.ingest_transaction(
        Transaction("late-1", "c_late", "m_late", int(at.value // 1000), 5.0, 1.0, 1.0)
    )
    too_late = at - pd.Timedelta(seconds=FEATURES.max_lateness_seconds) - pd.Timedelta(hours=2)
    row = online_features(
        store,
        [request_row("c_late", "m_late", too_late.to_pydatetime(), 5.0, 1.0, 1.0)],
        FEATURE_SERVICE_NAME,
    )[0]
    assert row["is_new_customer"] == 0
    just_late = at - pd.Timedelta(seconds=FEATURES.max_lateness_seconds - 60)
    row = online_features(
        store,
        [request_row("c_late", "m_late", just_late.to_pydatetime(), 5.0, 1.0, 1.0)],
        FEATURE_SERVICE_NAME,
    )[0]
    assert row["is_new_customer"] == 1  # within the bound the state knows: nothing before it


def test_ingesting_twice_counts_once(feature_project: FeatureProject, redis_url: str) -> None:
    store = open_store(feature_project.settings)
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    at = BASE + pd.Timedelta(days=400)
    txn = Transaction("dup-1", "c_dup", "m_dup", int(at.value // 1000), 10.0, 1.0, 1.0)
    writer.ingest_transaction(txn)
    writer.ingest_transaction(txn)  # a retry must not double count
    later = request_row(
        "c_dup", "m_dup", (at + pd.Timedelta(seconds=5)).to_pydatetime(), 1.0, 1.0, 1.0
    )
    row = online_features(store, [later], FEATURE_SERVICE_NAME)[0]
    assert row["txn_count_1h"] == 1
    assert row["merchant_txn_count_24h"] == 1
    assert row["amount_sum_1h"] == pytest.approx(10.0)


def test_retries_count_once_after_the_raw_region_moved_past_them(
    feature_project: FeatureProject, redis_url: str
) -> None:
    """Tiles keep no transaction ids: a retry of a transaction the tiles hold (moved there by
    a later one, or folded straight in because it came in late) is recognised by its seen-key."""
    store = open_store(feature_project.settings)
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    at = BASE + pd.Timedelta(days=500)

    def txn(tid: str, offset: pd.Timedelta, amount: float) -> Transaction:
        return Transaction(
            tid, "c_retry", "m_retry", int((at + offset).value // 1000), amount, 1, 1
        )

    first = txn("r-1", pd.Timedelta(0), 10.0)
    writer.ingest_transaction(first)
    writer.ingest_transaction(txn("r-2", pd.Timedelta(hours=3), 20.0))  # moves r-1 to the tiles
    late = txn("r-0", pd.Timedelta(hours=-1), 5.0)  # older than the raw region: into the tiles
    for _ in range(2):  # the late one and its retry, then retries of the moved one
        writer.ingest_transaction(late)
    writer.ingest_transaction(first)
    state = writer.read("customer_activity", "c_retry")
    assert state is not None and state["c_txn_ids"] == ["r-2"]  # r-1 really left the raw region
    probe = request_row(
        "c_retry", "m_retry", (at + pd.Timedelta(hours=4)).to_pydatetime(), 1.0, 1.0, 1.0
    )
    row = online_features(store, [probe], FEATURE_SERVICE_NAME)[0]
    assert row["txn_count_24h"] == 3 and row["merchant_txn_count_24h"] == 3
    assert row["amount_sum_24h"] == pytest.approx(35.0)


def test_a_write_between_read_and_compare_and_set_is_folded_in_not_lost(
    feature_project: FeatureProject, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer changes the card's state after this one read it: the script refuses the
    stale write and hands back the new fields, the fold runs again on them, and both count."""
    store = open_store(feature_project.settings)
    writer, other = (
        OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY) for _ in range(2)
    )
    us = int((BASE + pd.Timedelta(days=600)).value // 1000)
    mine = Transaction("cas-1", "c_cas", "m_cas", us, 10.0, 1.0, 1.0)
    theirs = Transaction("cas-2", "c_cas", "m_cas_2", us + 1_000_000, 20.0, 1.0, 1.0)
    folds: list[int] = []
    merge = online_state.merge_transaction

    def merge_with_an_intruder(
        state: dict[str, Any] | None, txn: Transaction, *args: Any
    ) -> dict[str, Any]:
        if txn is mine:
            folds.append(len((state or {}).get("c_txn_ids") or []))
            if len(folds) == 1:
                other.ingest_transaction(theirs)  # lands between this fold's read and its CAS
        return merge(state, txn, *args)

    monkeypatch.setattr(online_state, "merge_transaction", merge_with_an_intruder)
    writer.ingest_transaction(mine)
    assert folds == [0, 1]  # folded on the state it read, then again on the one the script saw
    state = writer.read("customer_activity", "c_cas")
    assert state is not None and sorted(state["c_txn_ids"]) == ["cas-1", "cas-2"]
    later = request_row(
        "c_cas", "m_cas", pd.Timestamp(us + 5_000_000, unit="us", tz="UTC").to_pydatetime(),
        1.0, 1.0, 1.0,
    )  # fmt: skip
    row = online_features(store, [later], FEATURE_SERVICE_NAME)[0]
    assert row["txn_count_1h"] == 2 and row["amount_sum_1h"] == pytest.approx(30.0)


def test_merchant_counts_a_reused_transaction_id_of_another_card(
    feature_project: FeatureProject, redis_url: str
) -> None:
    """Idempotency is by (card, transaction id): a retry counts once, another card's reuse of
    the same id at the same merchant counts as the other transaction it is."""
    store = open_store(feature_project.settings)
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    at = BASE + pd.Timedelta(days=500)
    us = int(at.value // 1000)
    writer.ingest_transaction(Transaction("shared-1", "c_one", "m_shared", us, 10.0, 1.0, 1.0))
    writer.ingest_transaction(Transaction("shared-1", "c_two", "m_shared", us + 1, 20.0, 1.0, 1.0))
    writer.ingest_transaction(Transaction("shared-1", "c_two", "m_shared", us + 1, 20.0, 1.0, 1.0))
    later = request_row(
        "c_three", "m_shared", (at + pd.Timedelta(minutes=1)).to_pydatetime(), 1.0, 1.0, 1.0
    )
    assert online_features(store, [later], FEATURE_SERVICE_NAME)[0]["merchant_txn_count_24h"] == 2


def test_feast_cli_materialize_then_incremental(
    feature_project: FeatureProject, redis_url: str
) -> None:
    """The real CLI loads Redis; the online values then match what materialize() gives."""
    flush_online(feature_project.settings)
    store = open_store(feature_project.settings)
    tx = feature_project.tables["transactions"]
    last = tx.iloc[-1]
    probe = request_row(
        last.customer_id, last.merchant_id, datetime(2030, 1, 1, tzinfo=UTC), 1.0, 0.0, 0.0
    )
    assert (
        online_features(store, [probe], FEATURE_SERVICE_NAME)[0]["is_new_customer"] == 1
    )  # Redis is empty

    result = feast_cli(  # the installed `feast` script, as a user runs it
        feature_project.settings,
        "materialize",
        "1970-01-01T00:00:00",
        "2030-01-01T00:00:00",
        script=True,
    )
    assert "customer_activity" in result.stdout
    row = online_features(store, [probe], FEATURE_SERVICE_NAME)[0]
    assert row["is_new_customer"] == 0  # the customer's state reached Redis through the CLI
    assert row["seconds_since_last_txn"] == 30 * 86_400.0  # capped: last seen years earlier

    # Incremental runs pick up from the last end time and leave loaded state in place.
    result = feast_cli(feature_project.settings, "materialize-incremental", "2031-01-01T00:00:00")
    assert "customer_activity" in result.stdout
    assert online_features(store, [probe], FEATURE_SERVICE_NAME)[0] == row


def test_ingest_labels_command_moves_online_merchant_rates(
    feature_project: FeatureProject, reference: Reference, redis_url: str
) -> None:
    flush_online(feature_project.settings)  # no label state online at all
    labels = feature_project.tables["labels"]
    at = labels["label_timestamp"].max() + pd.Timedelta(days=1)
    store = open_store(feature_project.settings)
    merchants = sorted(feature_project.tables["transactions"]["merchant_id"].unique())
    requests = [Request("c_any", m, int(at.value // 1000), 1.0, 40.0, -74.0) for m in merchants]
    before = online_features(store, [_online_row(q) for q in requests], FEATURE_SERVICE_NAME)
    assert all(row["merchant_fraud_rate_30d"] == 0.0 for row in before)

    # The real command, in its own process with this project's root and Redis.
    settings = feature_project.settings
    env = {
        **os.environ,
        "PROJECT_ROOT": str(feature_project.root),
        "REDIS_URL": redis_url,
        "REDIS_MODE": settings.redis_mode,
    }
    command = ["features", "ingest-labels", "--since", "1970-01-01T00:00:00"]
    result = subprocess.run(
        [str(Path(sys.executable).with_name("fraud")), *command, "--until", at.isoformat()],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"folded {len(labels):,} labels" in result.stdout
    after = online_features(store, [_online_row(q) for q in requests], FEATURE_SERVICE_NAME)
    for q, row in zip(requests, after, strict=True):
        expected = reference.features(q)["merchant_fraud_rate_30d"]
        assert row["merchant_fraud_rate_30d"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert any(row["merchant_fraud_rate_30d"] > 0 for row in after)


def test_labels_are_counted_once_whatever_the_source(
    feature_project: FeatureProject, reference: Reference, redis_url: str
) -> None:
    """A label already counted online, loaded by `fraud features materialize` or folded by
    `ingest-labels`, is not counted again by either, nor by ``POST /labels``' fold."""
    settings = feature_project.settings
    env = {
        **os.environ,
        "PROJECT_ROOT": str(feature_project.root),
        "REDIS_URL": redis_url,
        "REDIS_MODE": settings.redis_mode,
    }
    fraud = str(Path(sys.executable).with_name("fraud"))

    def run(*args: str) -> str:
        result = subprocess.run(
            [fraud, "features", *args], env=env, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    tables = feature_project.tables
    labels = tables["labels"].merge(
        tables["transactions"][["transaction_id", "merchant_id"]], on="transaction_id"
    )
    at = labels["label_timestamp"].max() + pd.Timedelta(days=1)
    store = open_store(settings)
    merchants = sorted(tables["transactions"]["merchant_id"].unique())
    rows = [
        _online_row(Request("c_any", m, int(at.value // 1000), 1.0, 40.0, -74.0)) for m in merchants
    ]
    expected = [
        reference.features(Request("c_any", m, int(at.value // 1000), 1.0, 40.0, -74.0))[
            "merchant_fraud_rate_30d"
        ]
        for m in merchants
    ]

    def rates() -> list[float]:
        served = online_features(store, rows, FEATURE_SERVICE_NAME)
        return [row["merchant_fraud_rate_30d"] for row in served]

    assert any(rate > 0 for rate in expected)  # the label feature is really exercised

    # Folded twice on an empty store (what ingest-labels runs): the second time counts nothing.
    writer = OnlineStateWriter(RedisLayout(store), FEATURES, STATE_VELOCITY)
    arrived = [
        (
            str(r.merchant_id),
            str(r.transaction_id),
            int(r.label_timestamp.value // 1000),
            bool(r.is_fraud),
        )
        for r in labels.sort_values("label_timestamp").itertuples()
    ]
    flush_online(settings)
    assert writer.ingest_labels(arrived) == len(labels)
    assert writer.ingest_labels(arrived) == 0
    assert rates() == pytest.approx(expected, rel=1e-12, abs=1e-12)

    # After a rebuild's materialize, every label it loaded is marked: ingest-labels and the
    # fold of POST /labels (ingest_label) for a raw-labelled transaction count nothing again.
    flush_online(settings)
    output = run("materialize")
    assert f"marked {len(labels):,} labels the loaded state counts as folded" in output
    assert rates() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    output = run("ingest-labels", "--since", "1970-01-01T00:00:00", "--until", at.isoformat())
    assert f"folded 0 labels into the online merchant label buckets ({len(labels):,} already" in (
        output
    )
    fraud_label = labels[labels["is_fraud"] == 1].iloc[0]
    label_us = int(fraud_label["label_timestamp"].value // 1000)
    assert not writer.ingest_label(
        str(fraud_label["merchant_id"]), str(fraud_label["transaction_id"]), label_us, True
    )
    assert rates() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # A label of a transaction not yet labelled still counts, once (two days before the
    # probes: inside their 30-day window).
    merchant, new_us = str(fraud_label["merchant_id"]), int(at.value // 1000) - 2 * DAY_US
    assert writer.ingest_label(merchant, "never-labelled", new_us, True)
    assert not writer.ingest_label(merchant, "never-labelled", new_us, True)
    assert rates() != pytest.approx(expected, rel=1e-12, abs=1e-12)
