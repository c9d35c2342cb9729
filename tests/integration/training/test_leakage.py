"""The training set leaks nothing: no future transactions, no label signal without labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform.contracts import LABEL
from tests.support.training_projects import Project, isolated_environment
from training.dataset import TrainingSet
from training.evaluation import evaluate, holdout_mask
from training.model import BASELINE_FEATURES


def test_model_columns_are_the_feature_service_in_its_order(
    training_set: TrainingSet, projects: dict[str, Project]
) -> None:
    from feature_engine.store import feature_names, open_store

    with isolated_environment(projects["full"].root):
        service_names = feature_names(open_store(projects["full"].settings), FEATURE_SERVICE_NAME)
    assert training_set.features == service_names
    assert set(BASELINE_FEATURES) < set(service_names)
    frame = training_set.frame
    # Unknown only where the card has no such history, and said so by the other features.
    unknown = SERVICE_TABLES[FEATURE_SERVICE_NAME].unknown_without_history
    known = [name for name in service_names if name not in unknown]
    assert not frame[known].isna().any().any()
    new_card = frame["is_new_customer"] == 1
    assert new_card.any()
    assert (frame["seconds_since_last_txn"].isna() == new_card).all()
    assert (frame["km_per_hour_from_last_txn"].isna() == new_card).all()
    assert (frame["amount_to_avg_30d"].isna() == (frame["amount_no_baseline"] > 0)).all()
    assert not frame["distance_from_home_km"].isna().any()  # every generated card has a home
    # One row per labeled transaction with a complete history, in raw order, labels unchanged.
    tables = projects["full"].tables
    assert training_set.truncated_history_rows > 0
    assert len(frame) + training_set.truncated_history_rows == len(tables["labels"])
    labels = tables["labels"].set_index("transaction_id")[LABEL]
    assert (frame[LABEL].to_numpy() == labels.loc[frame["transaction_id"]].to_numpy()).all()


def test_features_do_not_change_when_later_transactions_are_added(
    retrieve: Callable[[str], TrainingSet],
) -> None:
    full, early = retrieve("full"), retrieve("early")
    assert 0 < len(early.frame) < len(full.frame)
    merged = early.frame.merge(
        full.frame, on="transaction_id", suffixes=("_early", "_full"), validate="one_to_one"
    )
    assert len(merged) == len(early.frame)
    for name in full.features:
        pd.testing.assert_series_equal(
            merged[f"{name}_early"], merged[f"{name}_full"], check_names=False, check_exact=True
        )
    # The comparison is not vacuous: history features vary over the early rows.
    assert merged["txn_count_24h_early"].nunique() > 3
    assert merged["merchant_fraud_rate_30d_early"].max() > 0


def test_shuffled_labels_collapse_pr_auc_to_the_fraud_rate(
    training_set: TrainingSet, projects: dict[str, Project]
) -> None:
    params = projects["full"].params
    real = evaluate(training_set, params.train, params.seed)

    frame = training_set.frame.copy()
    rng = np.random.default_rng(0)
    frame[LABEL] = rng.permutation(frame[LABEL].to_numpy())
    # Noise may reach no precision target: its threshold may fall back to the best F1.
    fallback = params.train.model_copy(update={"threshold_fallback": "best_f1"})
    noise = evaluate(TrainingSet(frame, training_set.features), fallback, params.seed)

    is_holdout = holdout_mask(frame["event_timestamp"], params.train.holdout_fraction)
    train_rate = frame.loc[~is_holdout, LABEL].mean()
    holdout_rate = frame.loc[is_holdout, LABEL].mean()
    # Folds grouped by card score cards no fold's model saw: lower than folds over rows, whose
    # validation cards were half-learnt, and still far above the base rate noise gets.
    assert real.model.cv_mean["pr_auc"] > max(0.4, 3 * train_rate)
    assert real.model.holdout["pr_auc"] > 0.3
    # Without a link between features and labels, average precision is about the base rate.
    assert noise.model.cv_mean["pr_auc"] == pytest.approx(train_rate, abs=0.05)
    assert noise.model.holdout["pr_auc"] < max(3 * holdout_rate, 0.15)
    assert noise.model.cv_mean["roc_auc"] == pytest.approx(0.5, abs=0.1)


def test_batched_retrieval_equals_one_call(
    retrieve: Callable[[str], TrainingSet], projects: dict[str, Project]
) -> None:
    from feature_engine.store import open_store
    from training.dataset import labeled_transactions, retrieve_training_set

    project = projects["early"]
    with isolated_environment(project.root):
        labeled, _ = labeled_transactions(project.settings.paths.raw_dir)
        batched = retrieve_training_set(open_store(project.settings), labeled, batch_rows=400)
    assert len(labeled) > 800  # at least three batches
    pd.testing.assert_frame_equal(batched.frame, retrieve("early").frame, check_exact=True)
