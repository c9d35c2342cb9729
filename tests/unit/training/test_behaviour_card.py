"""Which card the behavioural cases are played on, and what world they see."""

from __future__ import annotations

import pandas as pd
import pytest

from fraud_platform.contracts import CUSTOMER_ID, LABEL, TIMESTAMP, TRANSACTION_ID
from training.behaviour import MIN_ORDINARY_TRANSACTIONS, _before, ordinary_card
from training.dataset import TrainingError

START = pd.Timestamp("2023-01-01", tz="UTC")


def _card(customer_id: str, days: int, fraud_on: int | None) -> tuple[list[dict], list[dict]]:
    rows = [
        {
            TRANSACTION_ID: f"{customer_id}-{day}",
            CUSTOMER_ID: customer_id,
            TIMESTAMP: START + pd.Timedelta(days=day, hours=12),
        }
        for day in range(days)
    ]
    labels = [
        {TRANSACTION_ID: row[TRANSACTION_ID], LABEL: int(day == fraud_on)}
        for day, row in enumerate(rows)
    ]
    return rows, labels


def _tables(*cards: tuple[str, int, int | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, labels = [], []
    for card in cards:
        more_rows, more_labels = _card(*card)
        rows += more_rows
        labels += more_labels
    return pd.DataFrame(rows), pd.DataFrame(labels)


def test_a_card_never_defrauded_is_used_with_the_whole_data() -> None:
    # "long" has the most transactions but is defrauded; "clean" never is: clean wins.
    transactions, labels = _tables(("long", 60, 50), ("clean", 30, None), ("short", 12, None))
    assert ordinary_card(transactions, labels) == ("clean", None)


def test_when_every_card_is_defrauded_the_longest_clean_history_is_cut_at_its_fraud() -> None:
    # Real-shaped data: every card meets fraud at some point. "late" has 40 clean days before
    # its fraud, "early" 20 (although it has more transactions in all).
    transactions, labels = _tables(("early", 90, 20), ("late", 60, 40))
    customer_id, cut = ordinary_card(transactions, labels)
    assert (customer_id, cut) == ("late", START + pd.Timedelta(days=40, hours=12))
    world = _before({"transactions": transactions, "labels": labels}, cut)
    # Nothing from the fraud on: neither the card's own fraud nor any card's later rows.
    assert world["transactions"][TIMESTAMP].max() < cut
    assert len(world["transactions"]) == 40 + 40  # days 0-39 of each card (day 40 at the cut)
    assert set(world["labels"][TRANSACTION_ID]) == set(world["transactions"][TRANSACTION_ID])
    assert (
        world["labels"]
        .loc[world["labels"][TRANSACTION_ID].str.startswith("late"), LABEL]
        .eq(0)
        .all()
    )


def test_no_card_with_enough_clean_history_is_a_clear_error() -> None:
    transactions, labels = _tables(("a", 30, MIN_ORDINARY_TRANSACTIONS - 1), ("b", 5, 0))
    with pytest.raises(TrainingError, match=f"{MIN_ORDINARY_TRANSACTIONS} transactions before"):
        ordinary_card(transactions, labels)
