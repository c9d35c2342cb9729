"""Behavioural cases a model must pass before it may serve: scored on the registered artifact.

Each case is a transaction whose features the feature engine computes at request time, exactly
as the API would (:func:`feature_engine.state.request.features_for_request` over the card's and
the merchant's state folded from the project's raw tables with the online fold), scored by
the model loaded back from the registry (what the API loads), at its registered threshold:

* ``example_request``: the product's reference example (a card and a merchant never seen,
  $5,000, far from anywhere) scores above the median legitimate transaction of the holdout
  (:data:`EXAMPLE_QUANTILE`);
* ``card_testing_burst``: an ordinary card's ninth tiny amount within two minutes at its usual
  merchant scores above the same card's usual purchase there at the same moment;
* ``night_10x_amount``: ten times the card's usual amount, at 02:30 UTC, at a merchant 1,000
  km or more from home the card never used (the farthest one it never used when none is that
  far), scores above the card's usual purchase.

The ordinary card is the one with the most transactions among cards never labelled fraud; the
cases happen the day after the data's last transaction, when every label that arrived by then
is in the merchant's label state (later labels are not: point in time). In data where every
card is defrauded at some point (real-shaped data: a year per card), it is the card with the
longest history before its first fraud, and the world is cut there: the cases see only the
transactions (every card's, every merchant's) and labels of before that card's first fraud,
and happen the day after the last of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data.generate import distances_km
from feature_engine.declarations import ServiceTable
from feature_engine.state.fields import activity_layout
from feature_engine.state.fold import CustomerStateBuilder, Transaction, merchant_event, merge_label
from feature_engine.state.request import features_for_request
from feature_engine.state.tiles import EntityState
from feature_repo.services import STATE_VELOCITY
from fraud_platform.contracts import (
    AMOUNT,
    CUSTOMER_ID,
    LABEL,
    LABEL_TIMESTAMP,
    LAT,
    LONG,
    MERCHANT_ID,
    TIMESTAMP,
    TRANSACTION_ID,
)
from training.dataset import TrainingError

if TYPE_CHECKING:
    from fraud_platform.scoring_model import ScoringModel
    from fraud_platform.settings import FeatureParams

MICROS = 1_000_000
# The product's reference example (docs/api.md, `make demo`): unknown card and merchant.
EXAMPLE_REQUEST = {
    "timestamp": "2023-10-27T10:00:00Z",
    CUSTOMER_ID: "C123456",
    MERCHANT_ID: "M_TEST",
    AMOUNT: 5000.0,
    LAT: 50.0,
    LONG: 50.0,
}
BURST_SECONDS = (0, 0, 11, 25, 40, 58, 77, 96)  # eight tiny amounts, two in the same second
FAR_KM = 1_000.0
EXAMPLE_QUANTILE = 0.5  # the example must be riskier than this share of legitimate traffic
MIN_ORDINARY_TRANSACTIONS = 10  # the ordinary card's history before the cases, at least


@dataclass(frozen=True)
class BehaviourCase:
    """One case's outcome.

    Attributes:
        name: ``example_request``, ``card_testing_burst`` or ``night_10x_amount``.
        score: The model's probability of the case's transaction.
        bar: What it must exceed (the threshold, or the usual purchase's probability); an
            alert needs ``score >= bar``, a direction ``score > bar``.
        passed: Whether it did.
        detail: What the case was, in words.
    """

    name: str
    score: float
    bar: float
    passed: bool
    detail: str


def _us(at: pd.Timestamp) -> int:
    return int(at.value // 1_000)


def _transactions(frame: pd.DataFrame) -> Iterable[Transaction]:
    times = pd.to_datetime(frame[TIMESTAMP], utc=True).dt.as_unit("us").astype("int64")
    for row, ts in zip(frame.itertuples(index=False), times, strict=True):
        yield Transaction(
            transaction_id=str(getattr(row, TRANSACTION_ID)),
            customer_id=str(getattr(row, CUSTOMER_ID)),
            merchant_id=str(getattr(row, MERCHANT_ID)),
            ts_us=int(ts),
            amount=float(getattr(row, AMOUNT)),
            lat=float(getattr(row, LAT)),
            long=float(getattr(row, LONG)),
        )


class _World:
    """The raw tables and the online fold over them: any card's and merchant's state."""

    def __init__(self, tables: Mapping[str, pd.DataFrame], features: FeatureParams) -> None:
        self.transactions = tables["transactions"].sort_values(TIMESTAMP, kind="stable")
        self.labels = tables["labels"]
        self.customers = tables["customers"].set_index(CUSTOMER_ID)
        self.merchants = tables["merchants"]
        self.lateness_us = features.max_lateness_seconds * MICROS
        self.cap = features.distinct_values_cap

    def card_state(self, customer_id: str, extra: pd.DataFrame | None = None) -> dict[str, Any]:
        rows = self.transactions[self.transactions[CUSTOMER_ID] == customer_id]
        builder = CustomerStateBuilder(self.lateness_us, self.cap, STATE_VELOCITY)
        for frame in (rows, extra):
            for txn in _transactions(frame if frame is not None else rows.iloc[:0]):
                builder.add(txn)
        return builder.fields()

    def merchant_state(self, merchant_id: str, extra: pd.DataFrame | None = None) -> dict:
        rows = self.transactions[self.transactions[MERCHANT_ID] == merchant_id]
        layout = activity_layout("merchant", STATE_VELOCITY)
        state = EntityState(layout, self.lateness_us, self.cap)
        for frame in (rows, extra):
            for txn in _transactions(frame if frame is not None else rows.iloc[:0]):
                state.add(merchant_event(txn, layout))
        return state.to_fields()

    def merchant_labels(self, merchant_id: str, before_us: int) -> dict[str, Any]:
        mine = self.transactions.loc[
            self.transactions[MERCHANT_ID] == merchant_id, [TRANSACTION_ID]
        ].merge(self.labels, on=TRANSACTION_ID)
        arrived = pd.to_datetime(mine[LABEL_TIMESTAMP], utc=True).dt.as_unit("us").astype("int64")
        state: dict[str, Any] = {}
        for ts, fraud in zip(arrived, mine[LABEL], strict=True):
            if int(ts) <= before_us:  # a label that arrives later is not known yet
                state = merge_label(state, int(ts), bool(fraud))
        return state

    def profile(self, customer_id: str) -> dict[str, Any]:
        if customer_id not in self.customers.index:
            return {}
        home = self.customers.loc[customer_id]
        return {"home_lat": float(home["home_lat"]), "home_long": float(home["home_long"])}


def _score(
    model: ScoringModel,
    service: ServiceTable,
    world: _World,
    request: Mapping[str, Any],
    extra: pd.DataFrame | None = None,
) -> float:
    """The model's probability of one transaction, features computed by the engine."""
    t_us = _us(pd.Timestamp(request[TIMESTAMP]))
    features = features_for_request(
        {"txn_timestamp_us": t_us, AMOUNT: request[AMOUNT], LAT: request[LAT], LONG: request[LONG]},
        world.card_state(request[CUSTOMER_ID], extra),
        world.merchant_state(request[MERCHANT_ID], extra),
        world.merchant_labels(request[MERCHANT_ID], t_us),
        world.profile(request[CUSTOMER_ID]),
        service,
    )
    frame = pd.DataFrame([features]).reindex(columns=model.features).astype(float)
    return float(model.predict_proba(frame)[0, 1])


def example_score(
    model: ScoringModel,
    service: ServiceTable,
    tables: Mapping[str, pd.DataFrame],
    features: FeatureParams,
) -> float:
    """The model's probability of the reference example (:data:`EXAMPLE_REQUEST`), as served."""
    return _score(model, service, _World(tables, features), EXAMPLE_REQUEST)


def run_cases(
    model: ScoringModel,
    legitimate: pd.DataFrame,
    service: ServiceTable,
    tables: Mapping[str, pd.DataFrame],
    features: FeatureParams,
) -> list[BehaviourCase]:
    """Score the behavioural cases with ``model``.

    Args:
        model: The model as the registry gives it back.
        legitimate: Legitimate rows of the holdout (with the model's features): the traffic
            the reference example must stand out from.
        service: The feature service it serves with (its features' definitions).
        tables: The project's raw tables (``transactions``, ``labels``, ``customers``,
            ``merchants``).
        features: ``features`` of ``params.yaml`` (the state's lateness and distinct cap).

    Returns:
        One outcome per case, in the order of the module docstring.

    Raises:
        TrainingError: If no card has :data:`MIN_ORDINARY_TRANSACTIONS` transactions before
            its first fraud, or the ordinary card used every merchant.
    """
    customer_id, cut = ordinary_card(tables["transactions"], tables["labels"])
    if cut is not None:
        tables = _before(tables, cut)
    world = _World(tables, features)
    cases = []
    example = _score(model, service, world, EXAMPLE_REQUEST)
    usual = model.predict_proba(legitimate.loc[:, list(model.features)])[:, 1]
    bar = float(np.quantile(usual, EXAMPLE_QUANTILE))
    cases.append(
        BehaviourCase(
            "example_request",
            example,
            bar,
            example > bar,
            f"unknown card and merchant, 5,000 far from anywhere, above {EXAMPLE_QUANTILE:.0%} "
            f"of the holdout's {len(usual):,} legitimate transactions",
        )
    )

    transactions = world.transactions
    mine = transactions[transactions[CUSTOMER_ID] == customer_id]
    usual_amount = float(mine[AMOUNT].median())
    usual_merchant = str(mine[MERCHANT_ID].value_counts().index[0])
    home = world.profile(customer_id)
    lat, long = (
        home.get("home_lat", float(mine[LAT].iloc[0])),
        home.get("home_long", float(mine[LONG].iloc[0])),
    )
    after = pd.to_datetime(transactions[TIMESTAMP], utc=True).max().normalize()
    after += pd.Timedelta(days=1)

    start = after + pd.Timedelta(hours=15)
    burst = pd.DataFrame(
        {
            TRANSACTION_ID: [f"behaviour-burst-{i}" for i in range(len(BURST_SECONDS))],
            CUSTOMER_ID: customer_id,
            MERCHANT_ID: usual_merchant,
            TIMESTAMP: [start + pd.Timedelta(seconds=s) for s in BURST_SECONDS],
            AMOUNT: np.linspace(1.0, 3.0, len(BURST_SECONDS)).round(2),
            LAT: lat,
            LONG: long,
        }
    )
    at = start + pd.Timedelta(seconds=120)
    base = {TIMESTAMP: at, CUSTOMER_ID: customer_id, MERCHANT_ID: usual_merchant}
    normal = _score(model, service, world, base | {AMOUNT: usual_amount, LAT: lat, LONG: long})
    tested = _score(model, service, world, base | {AMOUNT: 1.5, LAT: lat, LONG: long}, burst)
    cases.append(
        BehaviourCase(
            "card_testing_burst",
            tested,
            normal,
            tested > normal,
            f"card {customer_id}: a ninth tiny amount within two minutes at {usual_merchant} "
            f"above its usual {usual_amount:.2f} there",
        )
    )

    merchants = world.merchants
    distance = distances_km(lat, long, merchants[LAT].to_numpy(), merchants[LONG].to_numpy())
    used = set(transactions.loc[transactions[CUSTOMER_ID] == customer_id, MERCHANT_ID])
    unused = ~merchants[MERCHANT_ID].isin(used).to_numpy()
    if not unused.any():
        raise TrainingError(f"behavioural cases: card {customer_id} used every merchant")
    far = unused & (distance > FAR_KM)
    # The first merchant 1,000 km away; in data whose merchants all sit near their cards
    # (imported data), the farthest one the card never used.
    index = (
        int(np.flatnonzero(far)[0]) if far.any() else int(np.argmax(np.where(unused, distance, -1)))
    )
    place, km = merchants.iloc[index], float(distance[index])
    night = after + pd.Timedelta(hours=2, minutes=30)
    anomalous = _score(
        model,
        service,
        world,
        {
            TIMESTAMP: night,
            CUSTOMER_ID: customer_id,
            MERCHANT_ID: str(place[MERCHANT_ID]),
            AMOUNT: 10 * usual_amount,
            LAT: float(place[LAT]),
            LONG: float(place[LONG]),
        },
    )
    cases.append(
        BehaviourCase(
            "night_10x_amount",
            anomalous,
            normal,
            anomalous > normal,
            f"card {customer_id}: ten times its usual amount at 02:30 UTC, {km:,.0f} km from "
            "home at a merchant it never used, above its usual purchase",
        )
    )
    return cases


def ordinary_card(
    transactions: pd.DataFrame, labels: pd.DataFrame
) -> tuple[str, pd.Timestamp | None]:
    """The card the direction cases are played on, and where the world is cut for them.

    Args:
        transactions: The raw transactions.
        labels: The raw labels.

    Returns:
        The card never labelled fraud with the most transactions, and ``None`` (the whole
        data); else the card with the most transactions before its first fraud, and the time
        of that fraud (the cases see only what happened before it).

    Raises:
        TrainingError: If no card has :data:`MIN_ORDINARY_TRANSACTIONS` such transactions.
    """
    frauds = transactions.merge(labels.loc[labels[LABEL] == 1, [TRANSACTION_ID]], on=TRANSACTION_ID)
    first_fraud = frauds.groupby(CUSTOMER_ID)[TIMESTAMP].min()
    clean = transactions[~transactions[CUSTOMER_ID].isin(first_fraud.index)]
    if len(clean):
        counts = clean[CUSTOMER_ID].value_counts()
        if counts.iloc[0] >= MIN_ORDINARY_TRANSACTIONS:
            return str(counts.index[0]), None
    before = transactions[TIMESTAMP] < transactions[CUSTOMER_ID].map(first_fraud)
    counts = transactions.loc[before, CUSTOMER_ID].value_counts()
    if counts.empty or counts.iloc[0] < MIN_ORDINARY_TRANSACTIONS:
        raise TrainingError(
            "behavioural cases: no card has "
            f"{MIN_ORDINARY_TRANSACTIONS} transactions before its first fraud"
        )
    customer_id = str(counts.index[0])
    return customer_id, pd.Timestamp(first_fraud[customer_id])


def _before(tables: Mapping[str, pd.DataFrame], cut: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The raw tables as the world was before ``cut``: earlier transactions and their labels."""
    transactions = tables["transactions"]
    kept = transactions[transactions[TIMESTAMP] < cut]
    labels = tables["labels"]
    return {
        **tables,
        "transactions": kept,
        "labels": labels[labels[TRANSACTION_ID].isin(kept[TRANSACTION_ID])],
    }
