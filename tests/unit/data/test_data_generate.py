"""The synthetic generator: determinism, schema, fraud rate and the signature of each pattern."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.generate import generate, write_tables
from data.schema import FRAUD_PATTERNS, RAW_TABLES
from data.validate import RawDataError
from fraud_platform.settings import GenerateParams

from .data_helpers import SMALL_CUSTOMERS, SMALL_DAYS, SMALL_SEED, haversine_km

TEN_MINUTES = pd.Timedelta(minutes=10)


def _with_labels(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return tables["transactions"].merge(tables["labels"], on="transaction_id", validate="1:1")


def test_same_seed_gives_identical_files(generate_params: GenerateParams, tmp_path: Path) -> None:
    first = generate(generate_params, 3, n_customers=150, days=7)
    second = generate(generate_params, 3, n_customers=150, days=7)
    for name in RAW_TABLES:
        pd.testing.assert_frame_equal(first[name], second[name])
    write_tables(first, tmp_path / "a")
    write_tables(second, tmp_path / "b")
    for name in RAW_TABLES:
        a = (tmp_path / "a" / f"{name}.parquet").read_bytes()
        b = (tmp_path / "b" / f"{name}.parquet").read_bytes()
        assert a == b, name


def test_different_seed_gives_different_data(generate_params: GenerateParams) -> None:
    first = generate(generate_params, 3, n_customers=150, days=7)
    other = generate(generate_params, 4, n_customers=150, days=7)
    assert not first["transactions"].equals(other["transactions"])
    assert not first["customers"].equals(other["customers"])


def test_size_overrides_are_used(
    small_tables: dict[str, pd.DataFrame], generate_params: GenerateParams
) -> None:
    txns = small_tables["transactions"]
    assert len(small_tables["customers"]) == SMALL_CUSTOMERS
    start = pd.Timestamp(generate_params.start_date, tz="UTC")
    period = txns.loc[txns["timestamp"] >= start, "timestamp"]
    span = period.max() - start
    assert pd.Timedelta(days=SMALL_DAYS - 1) < span < pd.Timedelta(days=SMALL_DAYS)
    # The warm-up: generate_params.warmup_days of history before the period, not more.
    warmup = start - txns["timestamp"].min()
    days = generate_params.warmup_days
    assert pd.Timedelta(days=days - 1) < warmup <= pd.Timedelta(days=days)


def test_written_files_have_exactly_the_contract_schema(
    small_tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    written = write_tables(small_tables, tmp_path)
    assert set(written) == set(RAW_TABLES)
    for name, schema in RAW_TABLES.items():
        assert pq.read_schema(written[name]).equals(schema), name
        assert pq.read_table(written[name]).num_rows == len(small_tables[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.parquet" for n in RAW_TABLES)


def test_frames_convert_to_the_contract_schema(small_tables: dict[str, pd.DataFrame]) -> None:
    for name, schema in RAW_TABLES.items():
        frame = small_tables[name]
        assert list(frame.columns) == schema.names
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for field in schema:
            assert table.schema.field(field.name).type.equals(field.type), (name, field.name)


def test_transactions_sorted_unique_whole_seconds_with_ties(
    small_tables: dict[str, pd.DataFrame],
) -> None:
    txns = small_tables["transactions"]
    assert txns["transaction_id"].is_unique
    keys = list(zip(txns["timestamp"], txns["transaction_id"], strict=True))
    assert keys == sorted(keys)
    assert (txns["timestamp"].dt.microsecond == 0).all()
    assert txns["timestamp"].duplicated().any()  # exact ties exist, features must handle them
    assert (txns["amount"] > 0).all()
    assert txns["customer_id"].isin(small_tables["customers"]["customer_id"]).all()
    assert txns["merchant_id"].isin(small_tables["merchants"]["merchant_id"]).all()


def test_legitimate_spending_is_mostly_near_home_and_daytime(
    small_tables: dict[str, pd.DataFrame],
) -> None:
    rows = _with_labels(small_tables).merge(small_tables["customers"], on="customer_id")
    legit = rows[rows["is_fraud"] == 0]
    distance = haversine_km(legit["home_lat"], legit["home_long"], legit["lat"], legit["long"])
    assert np.mean(distance < 100) > 0.8
    hours = legit["timestamp"].dt.hour
    assert hours.between(8, 21).mean() > 0.7


@pytest.mark.parametrize("seed", [42, 1, 2])
def test_default_params_fraud_rate_between_half_and_two_percent(
    generate_params: GenerateParams, seed: int
) -> None:
    tables = generate(generate_params, seed)
    rows = _with_labels(tables)
    # Over the period: the warm-up before it is ordinary spending only.
    start = pd.Timestamp(generate_params.start_date, tz="UTC")
    assert 0.005 <= rows.loc[rows["timestamp"] >= start, "is_fraud"].mean() <= 0.02
    assert rows.loc[rows["timestamp"] < start, "is_fraud"].sum() == 0


def test_labels_one_per_transaction_and_strictly_later(
    small_tables: dict[str, pd.DataFrame], generate_params: GenerateParams
) -> None:
    rows = _with_labels(small_tables)
    assert len(rows) == len(small_tables["transactions"]) == len(small_tables["labels"])
    delay = rows["label_timestamp"] - rows["timestamp"]
    assert (delay > pd.Timedelta(0)).all()
    fraud_delay = delay[rows["is_fraud"] == 1] / pd.Timedelta(days=1)
    assert fraud_delay.between(
        generate_params.chargeback_delay_days_min, generate_params.chargeback_delay_days_max
    ).all()
    legit_delay = delay[rows["is_fraud"] == 0] / pd.Timedelta(days=1)
    assert (legit_delay >= generate_params.legit_label_delay_days).all()
    assert legit_delay.nunique() > 1  # jittered, not one constant delay
    assert set(rows.loc[rows["is_fraud"] == 0, "fraud_pattern"]) == {"none"}
    assert set(rows.loc[rows["is_fraud"] == 1, "fraud_pattern"]) == set(FRAUD_PATTERNS)


def test_card_testing_bursts_small_amounts_within_minutes_with_same_second_ties(
    small_tables: dict[str, pd.DataFrame],
) -> None:
    rows = _with_labels(small_tables)
    testing = rows[rows["fraud_pattern"] == "card_testing"]
    assert testing["customer_id"].nunique() >= 1
    for _, burst in testing.groupby("customer_id"):
        assert burst["amount"].between(0.5, 5.0).all()
        seconds = np.sort(burst["timestamp"].astype("int64").to_numpy() // 1_000_000)
        window_end = seconds + int(TEN_MINUTES.total_seconds())
        in_ten_minutes = np.searchsorted(seconds, window_end) - np.arange(len(seconds))
        assert in_ten_minutes.max() >= 10
        assert burst["timestamp"].duplicated().any()


def test_account_takeover_large_far_from_home_at_new_merchants(
    small_tables: dict[str, pd.DataFrame],
) -> None:
    rows = _with_labels(small_tables).merge(small_tables["customers"], on="customer_id")
    takeover = rows[rows["fraud_pattern"] == "account_takeover"]
    legit = rows[rows["is_fraud"] == 0]
    assert len(takeover) > 0
    distance = haversine_km(
        takeover["home_lat"], takeover["home_long"], takeover["lat"], takeover["long"]
    )
    assert (distance > 500).all()
    for customer, stolen in takeover.groupby("customer_id"):
        own = legit[legit["customer_id"] == customer]
        assert (stolen["amount"] > 3 * own["amount"].median()).all()
        assert not set(stolen["merchant_id"]) & set(own["merchant_id"])
    night = takeover["timestamp"].dt.hour < 6
    assert night.mean() > (legit["timestamp"].dt.hour < 6).mean()


def test_cards_open_through_the_period_and_spend_only_once_open(
    small_tables: dict[str, pd.DataFrame], generate_params: GenerateParams
) -> None:
    txns, customers = small_tables["transactions"], small_tables["customers"]
    start = pd.Timestamp(generate_params.start_date, tz="UTC")
    warmup_start = start - pd.Timedelta(days=generate_params.warmup_days)
    opened = customers.set_index("customer_id")["created_at"]
    new = opened[opened >= start]
    assert len(new) == round(generate_params.new_card_share * len(customers))
    assert (new < start + pd.Timedelta(days=SMALL_DAYS)).all()
    assert (opened[opened < start] < warmup_start).all()  # the others predate the warm-up
    # No card spends before it opened; a new card's spending spreads over the period.
    first = txns.groupby("customer_id")["timestamp"].min()
    assert (first > opened.loc[first.index]).all()
    assert first.loc[first.index.isin(new.index)].nunique() > 10


def test_new_account_fraud_is_a_stolen_identity_s_first_big_purchases(
    small_tables: dict[str, pd.DataFrame],
) -> None:
    rows = _with_labels(small_tables).merge(small_tables["customers"], on="customer_id")
    stolen = rows[rows["fraud_pattern"] == "new_account"]
    assert stolen["customer_id"].nunique() >= 1
    # The whole card is the fraudster's: no legitimate spending, no other pattern.
    cards = rows[rows["customer_id"].isin(stolen["customer_id"])]
    assert (cards["fraud_pattern"] == "new_account").all()
    assert (stolen["timestamp"] - stolen["created_at"] <= pd.Timedelta(days=3, hours=12)).all()
    distance = haversine_km(stolen["home_lat"], stolen["home_long"], stolen["lat"], stolen["long"])
    assert (distance > 500).all()
    legit = rows[rows["is_fraud"] == 0]
    assert stolen["amount"].median() > 10 * legit["amount"].median()
    night = stolen["timestamp"].dt.hour < 6
    assert night.mean() > (legit["timestamp"].dt.hour < 6).mean()


def test_compromised_merchant_fraud_spreads_over_time_and_customers(
    small_tables: dict[str, pd.DataFrame],
) -> None:
    rows = _with_labels(small_tables)
    compromised = rows[rows["fraud_pattern"] == "compromised_merchant"]
    assert len(compromised) > 0
    busiest = compromised.groupby("merchant_id").size().idxmax()
    at_merchant = rows[rows["merchant_id"] == busiest]
    fraud = at_merchant[at_merchant["fraud_pattern"] == "compromised_merchant"]
    assert fraud["timestamp"].max() - fraud["timestamp"].min() > pd.Timedelta(days=1)
    assert fraud["customer_id"].nunique() > 1
    # Ordinary-looking amounts: nothing like card-testing pennies or takeover splurges.
    legit_amounts = at_merchant.loc[at_merchant["is_fraud"] == 0, "amount"]
    assert legit_amounts.min() <= fraud["amount"].median() <= legit_amounts.max()
    # Only part of the merchant's traffic is fraud, and none before the breach starts.
    assert 0 < len(fraud) < len(at_merchant)
    before = at_merchant[at_merchant["timestamp"] < fraud["timestamp"].min()]
    assert (before["fraud_pattern"] != "compromised_merchant").all()


def test_breach_dates_are_reported_and_bound_the_pattern(
    generate_params: GenerateParams, small_tables: dict[str, pd.DataFrame]
) -> None:
    breaches: dict[str, pd.Timestamp] = {}
    tables = generate(
        generate_params, SMALL_SEED, n_customers=SMALL_CUSTOMERS, days=SMALL_DAYS, breaches=breaches
    )
    # Asking for the breach dates changes no table.
    for name in RAW_TABLES:
        pd.testing.assert_frame_equal(tables[name], small_tables[name])
    rows = _with_labels(tables)
    compromised = rows[rows["fraud_pattern"] == "compromised_merchant"]
    assert set(compromised["merchant_id"]) <= set(breaches)
    assert (compromised["timestamp"] >= compromised["merchant_id"].map(breaches)).all()
    # The first compromised fraud of a merchant comes at or after its breach, never before.
    first = compromised.groupby("merchant_id")["timestamp"].min()
    assert all(first[m] >= breaches[m] for m in first.index)


def test_cash_out_runs_new_cards_through_the_breached_merchant_in_bursts(
    generate_params: GenerateParams,
) -> None:
    params = generate_params.model_copy(
        update={"compromised_merchant_style": "cash_out", "compromised_merchant_rate": 0.03}
    )
    breaches: dict[str, pd.Timestamp] = {}
    tables = generate(
        params, SMALL_SEED, n_customers=SMALL_CUSTOMERS, days=SMALL_DAYS, breaches=breaches
    )
    rows = _with_labels(tables)
    fraud = rows[rows["fraud_pattern"] == "compromised_merchant"]
    assert len(fraud) > 20
    assert (fraud["timestamp"] >= fraud["merchant_id"].map(breaches)).all()
    # Cards new to the merchant: none of them paid it in an ordinary transaction, ever.
    ordinary = rows[rows["is_fraud"] == 0]
    paid = set(zip(ordinary["customer_id"], ordinary["merchant_id"], strict=True))
    pairs = zip(fraud["customer_id"], fraud["merchant_id"], strict=True)
    assert not any(pair in paid for pair in pairs)
    # Off the merchant's baseline: at least twice its median ordinary amount.
    median = ordinary.groupby("merchant_id")["amount"].median()
    assert (fraud["amount"] >= 2 * fraud["merchant_id"].map(median) - 0.01).all()
    # In bursts: most of them have another of the merchant's frauds within half an hour.
    gaps = fraud.sort_values("timestamp").groupby("merchant_id")["timestamp"].diff()
    assert (gaps <= pd.Timedelta(minutes=30)).mean() > 0.5
    # The merchant's ordinary rows stay legitimate (no relabelled row).
    assert set(rows.loc[rows["is_fraud"] == 0, "fraud_pattern"]) == {"none"}


def test_no_fraud_when_rates_are_zero(generate_params: GenerateParams) -> None:
    params = generate_params.model_copy(
        update={
            "card_testing_rate": 0.0,
            "account_takeover_rate": 0.0,
            "compromised_merchant_rate": 0.0,
            "new_account_fraud_rate": 0.0,
        }
    )
    labels = generate(params, SMALL_SEED, n_customers=100, days=5)["labels"]
    assert labels["is_fraud"].sum() == 0


def test_progress_is_reported(generate_params: GenerateParams) -> None:
    messages: list[str] = []
    generate(generate_params, SMALL_SEED, n_customers=50, days=3, progress=messages.append)
    assert len(messages) >= 3
    assert any("fraud rate" in message for message in messages)


def test_write_tables_writes_nothing_when_tables_are_bad(
    small_tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    write_tables(small_tables, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad = dict(small_tables)
    bad["transactions"] = small_tables["transactions"].assign(amount=-1.0)
    with pytest.raises(RawDataError, match="column amount"):
        write_tables(bad, tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before
