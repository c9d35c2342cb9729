"""Behavioural tests of the trained models: invariance and direction on scenarios of one card.

Both families are trained once per module, through the real pipeline (:func:`evaluate` on the
session's training set, retrieved through Feast), on the small generated project. Scenario
features come from the brute-force reference (``tests/support/reference.py``), written from
the feature definitions and sharing no code with the platform, over the project's raw tables
plus the scenario's own transactions.

* Invariance: renaming transactions (ids only) changes no feature Feast retrieves, so no score.
* Direction: a card-testing burst scores above the same card's normal purchase; ten times the
  card's usual amount, at night, far from home, scores above every usual purchase of the card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from data.generate import distances_km
from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.contracts import CUSTOMER_ID, LABEL, TRANSACTION_ID
from tests.support.reference import Reference, Request
from tests.support.training_projects import Project, isolated_environment
from training.dataset import TrainingSet
from training.evaluation import Evaluation, ModelResult, evaluate

pytestmark = pytest.mark.integration

FAMILIES = ("logistic_regression", "lightgbm")


@dataclass
class Card:
    """An ordinary card: never defrauded, the most transactions of the project."""

    customer_id: str
    home: tuple[float, float]
    usual_amount: float  # its median amount
    usual_merchant: str  # where it buys most
    rows: pd.DataFrame  # its retrieved (legitimate) training rows
    after: pd.Timestamp  # midnight after the data's last transaction


@pytest.fixture(scope="module")
def evaluation(projects: dict[str, Project], training_set: TrainingSet) -> Evaluation:
    params = projects["full"].params
    return evaluate(training_set, params.train, params.seed)


@pytest.fixture(scope="module")
def card(projects: dict[str, Project], training_set: TrainingSet) -> Card:
    tables = projects["full"].tables
    transactions, labels = tables["transactions"], tables["labels"]
    defrauded = transactions.merge(labels[labels[LABEL] == 1], on=TRANSACTION_ID)[CUSTOMER_ID]
    ordinary = transactions[~transactions[CUSTOMER_ID].isin(defrauded)]
    customer_id = ordinary[CUSTOMER_ID].value_counts().index[0]
    mine = ordinary[ordinary[CUSTOMER_ID] == customer_id]
    home = tables["customers"].set_index(CUSTOMER_ID).loc[customer_id]
    frame = training_set.frame
    return Card(
        customer_id=customer_id,
        home=(float(home["home_lat"]), float(home["home_long"])),
        usual_amount=float(mine["amount"].median()),
        usual_merchant=str(mine["merchant_id"].value_counts().index[0]),
        rows=frame[frame[CUSTOMER_ID] == customer_id],
        after=transactions["timestamp"].max().normalize() + pd.Timedelta(days=1),
    )


def _result(evaluation: Evaluation, kind: str) -> ModelResult:
    return next(result for result in evaluation.candidates if result.kind == kind)


def _score(result: ModelResult, reference: Reference, request: Request) -> float:
    features = reference.features(request)
    frame = pd.DataFrame([features], columns=result.features, dtype=float)
    return float(result.model.predict_proba(frame)[0, 1])


def _reference(project: Project, extra: pd.DataFrame | None = None) -> Reference:
    tables = project.tables
    transactions = tables["transactions"]
    if extra is not None:
        transactions = pd.concat([transactions, extra], ignore_index=True)
    return Reference(
        transactions,
        tables["labels"],
        tables["customers"],
    )


def _us(at: pd.Timestamp) -> int:
    return int(at.value // 1_000)


@pytest.mark.parametrize("kind", FAMILIES)
def test_renaming_transactions_changes_no_score(
    kind: str, projects: dict[str, Project], training_set: TrainingSet, evaluation: Evaluation
) -> None:
    from feature_engine.store import historical_features, open_store

    project = projects["full"]
    result = _result(evaluation, kind)
    raw = project.tables["transactions"]
    trained = raw[raw[TRANSACTION_ID].isin(training_set.frame[TRANSACTION_ID])]  # history kept
    chosen = trained.sample(n=200, random_state=1).sort_values(TRANSACTION_ID)
    renamed = chosen.assign(**{TRANSACTION_ID: "renamed-" + chosen[TRANSACTION_ID]})
    with isolated_environment(project.root):
        store = open_store(project.settings)
        retrieved = historical_features(store, renamed, FEATURE_SERVICE_NAME, progress=None)
    original = training_set.frame.set_index(TRANSACTION_ID).loc[chosen[TRANSACTION_ID]]
    assert list(retrieved[TRANSACTION_ID]) == list(renamed[TRANSACTION_ID])
    np.testing.assert_array_equal(
        retrieved[result.features].to_numpy(float), original[result.features].to_numpy(float)
    )
    np.testing.assert_array_equal(
        result.model.predict_proba(retrieved)[:, 1], result.model.predict_proba(original)[:, 1]
    )


@pytest.mark.parametrize("kind", FAMILIES)
def test_card_testing_burst_scores_above_the_cards_normal_purchase(
    kind: str, projects: dict[str, Project], evaluation: Evaluation, card: Card
) -> None:
    project, result = projects["full"], _result(evaluation, kind)
    start = card.after + pd.Timedelta(hours=15)
    lat, long = card.home
    # Eight tiny amounts within two minutes at one merchant (two in the same second), then
    # the ninth is scored: the card-testing pattern of data/generate.py, on an ordinary card.
    seconds = [0, 0, 11, 25, 40, 58, 77, 96]
    burst = pd.DataFrame(
        {
            TRANSACTION_ID: [f"burst-{i}" for i in range(len(seconds))],
            CUSTOMER_ID: card.customer_id,
            "merchant_id": card.usual_merchant,
            "timestamp": [start + pd.Timedelta(seconds=s) for s in seconds],
            "amount": np.linspace(1.0, 3.0, len(seconds)).round(2),
            "lat": lat,
            "long": long,
        }
    )
    at = _us(start + pd.Timedelta(seconds=120))
    tested = Request(card.customer_id, card.usual_merchant, at, 1.5, lat, long)
    normal = Request(card.customer_id, card.usual_merchant, at, card.usual_amount, lat, long)
    burst_score = _score(result, _reference(project, burst), tested)
    normal_score = _score(result, _reference(project), normal)
    assert burst_score > normal_score
    assert burst_score > float(np.median(result.model.predict_proba(card.rows)[:, 1]))


@pytest.mark.parametrize("kind", FAMILIES)
def test_ten_times_the_amount_at_night_far_from_home_scores_above_usual_purchases(
    kind: str, projects: dict[str, Project], evaluation: Evaluation, card: Card
) -> None:
    project, result = projects["full"], _result(evaluation, kind)
    merchants = project.tables["merchants"]
    lat, long = card.home
    # A merchant 1,000 km or more from home, which this card never used.
    distance = distances_km(lat, long, merchants["lat"].to_numpy(), merchants["long"].to_numpy())
    transactions = project.tables["transactions"]
    used = set(transactions.loc[transactions[CUSTOMER_ID] == card.customer_id, "merchant_id"])
    far = merchants[(distance > 1_000) & ~merchants["merchant_id"].isin(used)].iloc[0]
    at = _us(card.after + pd.Timedelta(hours=2, minutes=30))  # 02:30 UTC: night
    request = Request(
        card.customer_id, far["merchant_id"], at, 10 * card.usual_amount, far["lat"], far["long"]
    )
    reference = _reference(project)
    assert reference.features(request)["is_night"] == 1
    anomalous = _score(result, reference, request)
    usual = result.model.predict_proba(card.rows)[:, 1]
    assert len(usual) > 10
    assert anomalous > usual.max()
