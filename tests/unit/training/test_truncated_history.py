"""The truncated-history rule: which labeled rows may train (issue 18).

A row trains only if its features' lookback (the longest declared window) starts inside the
data, or its card demonstrably opened after the data's start. Generated data's warm-up must
never train; imported data, which has no open dates, loses its first window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.generate import generate
from feature_engine.state.fields import BASELINE_DAYS, DAY_US
from feature_engine.state.request import lookback_start_us
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform.settings import load_params
from training.dataset import complete_history_mask, drop_truncated_history

START_US = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC: the data's first transaction


def test_a_row_trains_once_its_lookback_is_inside_the_data() -> None:
    # The first instant whose lookback starts exactly at the data start: midnight 30 days on.
    first_complete = START_US + BASELINE_DAYS * DAY_US
    assert lookback_start_us(first_complete, SERVICE_TABLES[FEATURE_SERVICE_NAME]) == START_US
    times = np.array([START_US, first_complete - 1, first_complete, first_complete + DAY_US])
    old_card = np.full(len(times), START_US - 365 * DAY_US)
    assert complete_history_mask(times, old_card, START_US).tolist() == [
        False,
        False,
        True,
        True,
    ]


def test_a_card_opened_after_the_data_start_trains_from_its_first_row() -> None:
    times = np.array([START_US + 5, START_US + DAY_US])
    opened = np.array([START_US + 1, START_US])  # the second: not after the start
    assert complete_history_mask(times, opened, START_US).tolist() == [True, False]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    params = load_params()
    return generate(params.generate, params.seed, n_customers=300, days=6)


def test_generated_warm_up_never_trains_and_new_cards_always_do(
    tables: dict[str, pd.DataFrame],
) -> None:
    params = load_params().generate
    assert params.warmup_days <= BASELINE_DAYS  # the documented condition of the guarantee
    transactions, customers = tables["transactions"], tables["customers"]
    data_start = transactions["timestamp"].min()
    kept, dropped = drop_truncated_history(transactions, customers, data_start)

    assert dropped == len(transactions) - len(kept) > 0
    period_start = pd.Timestamp(params.start_date, tz="UTC")
    assert (kept["timestamp"] >= period_start).all()  # no warm-up row
    opened = customers.set_index("customer_id")["created_at"]
    new_cards = opened[opened > data_start].index
    assert len(new_cards) > 0
    of_new_cards = transactions["customer_id"].isin(new_cards)
    assert kept["customer_id"].isin(new_cards).sum() == of_new_cards.sum()
    # Pre-existing cards train from the day their 30-day lookback is inside the data.
    old = kept[~kept["customer_id"].isin(new_cards)]
    lookback = old["timestamp"].dt.floor("D") - pd.Timedelta(days=BASELINE_DAYS)
    assert (lookback >= data_start).all()


def test_without_open_dates_the_first_window_of_the_data_trains_nothing(
    tables: dict[str, pd.DataFrame],
) -> None:
    transactions = tables["transactions"]
    data_start = transactions["timestamp"].min()
    # Imported data: every card "not known to have opened after the data's start".
    customers = tables["customers"].assign(created_at=data_start)
    kept, dropped = drop_truncated_history(transactions, customers, data_start)
    first_day = (data_start + pd.Timedelta(days=BASELINE_DAYS)).floor("D")
    assert kept["timestamp"].min() >= first_day
    expected = transactions["timestamp"].dt.floor("D") - pd.Timedelta(days=BASELINE_DAYS)
    assert len(kept) == int((expected >= data_start).sum())
    assert dropped == len(transactions) - len(kept)
    # A card the customers table does not know (one the API met first) has no open date.
    unknown, dropped_unknown = drop_truncated_history(transactions, customers.iloc[:0], data_start)
    assert len(unknown) == len(kept) and dropped_unknown == dropped


def test_the_data_start_is_the_raw_data_s_not_an_early_request_the_api_took_in(
    tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    """The reference example (2023) posted to the demo API must not unlock the warm-up."""
    from data.generate import write_tables
    from feature_engine.offline.events import open_journals
    from training.dataset import labeled_transactions

    write_tables(tables, tmp_path / "raw")
    raw_only, dropped = labeled_transactions(tmp_path / "raw")
    early = datetime(2023, 10, 27, 10, tzinfo=UTC)
    transactions, labels = open_journals(tmp_path / "ingested")
    transactions.append(
        {"transaction_id": "api-1", "customer_id": "C123456", "merchant_id": "M_TEST",
         "timestamp": early, "amount": 5000.0, "lat": 50.0, "long": 50.0}
    )  # fmt: skip
    labels.append(
        {"transaction_id": "api-1", "merchant_id": "M_TEST", "is_fraud": 1,
         "label_timestamp": early + timedelta(days=1), "fraud_pattern": "unknown"}
    )  # fmt: skip
    transactions.close()
    labels.close()
    with_journal, dropped_with_journal = labeled_transactions(
        tmp_path / "raw", tmp_path / "ingested"
    )
    assert dropped_with_journal == dropped + 1  # the early row too: its lookback is outside
    assert with_journal["transaction_id"].tolist() == raw_only["transaction_id"].tolist()
