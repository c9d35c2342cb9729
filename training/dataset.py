"""Training phase 1, the dataset: labeled transactions and their features from the feature service.

What the model sees
-------------------
The training set is the labeled transactions (raw ``transactions`` plus the ones the API
ingested, inner-joined with ``labels`` on ``transaction_id``) used as the entity dataframe of
``get_historical_features`` on the feature service
(:data:`~feature_repo.store.FEATURE_SERVICE_NAME`). Every feature value is therefore what
Feast's point-in-time join gives as of the transaction's own timestamp, computed by the same
on-demand function the API runs online; the model's columns are the service's feature names in
the service's order. There is no feature list in the training package, only
:data:`~training.model.BASELINE_FEATURES`, the request-only subset the baseline uses, which must
be outputs of the same service.

Which labels are used
---------------------
All labels in the ``labels`` table are used. The table is a snapshot taken when training
runs, so every label in it is known at training time, and the model is fit at training time:
that is not leakage. It does mean that the holdout is scored with labels (and the training
part is fit with labels) some of which arrived after the holdout period began, so holdout
figures describe "a model trained on everything known today, judged on the latest period",
not a strict as-of-cutoff backtest. Features never see a label before its ``label_timestamp``
(see :mod:`feature_repo.logic`): the label delay matters to features, not to the target.
Transactions without a label yet are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraud_platform.contracts import LABEL
from training.model import BASELINE_FEATURES

if TYPE_CHECKING:
    from feast import FeatureStore

    from fraud_platform.settings import Settings

Progress = Callable[[str], None]


class TrainingError(ValueError):
    """The data cannot train a model (no labeled rows, one class, a class too small)."""


def quiet(message: str) -> None:
    """A progress sink that drops messages."""


def to_stdout(message: str) -> None:
    """A progress sink that prints each message at once (the default of the long phases)."""
    print(message, flush=True)


def labeled_transactions(raw_dir: Path, ingested_dir: Path | None = None) -> pd.DataFrame:
    """Transactions that have a label, with their ``is_fraud`` target.

    Args:
        raw_dir: Folder with the raw tables (raw schema).
        ingested_dir: Journals of transactions scored and labels posted online since; they
            train the next model too. Raw data only when ``None``.

    Returns:
        Raw-schema transaction columns plus ``is_fraud`` (int8) and ``fraud_pattern`` (for
        slice metrics), sorted by (timestamp, transaction_id).

    Raises:
        FileNotFoundError: If a table is missing.
        TrainingError: If no transaction has a label, or all labels are one class.
    """
    from feature_repo.events import read_event_tables

    labeled = read_event_tables(raw_dir, ingested_dir).labeled_transactions()
    labeled[LABEL] = labeled[LABEL].astype("int8")
    labeled = labeled.reset_index(drop=True)
    check_labels(labeled[LABEL], where="labeled transactions")
    return labeled


def check_labels(labels: pd.Series | np.ndarray, where: str, min_per_class: int = 1) -> None:
    """Fail clearly unless both classes are present, each at least ``min_per_class`` times.

    Args:
        labels: 0/1 targets.
        where: Which part of the data, for the message.
        min_per_class: Smallest acceptable count of each class.

    Raises:
        TrainingError: Naming the part and the class counts.
    """
    values = np.asarray(labels)
    if len(values) == 0:
        raise TrainingError(f"{where}: no labeled rows; generate or import labels first")
    n_fraud = int((values == 1).sum())
    n_legit = int((values == 0).sum())
    if min(n_fraud, n_legit) < min_per_class:
        raise TrainingError(
            f"{where}: {n_fraud} fraud and {n_legit} legitimate rows; need at least "
            f"{min_per_class} of each class"
        )


@dataclass(frozen=True)
class TrainingSet:
    """Retrieved training rows and the model's feature columns.

    Attributes:
        frame: Entity columns, ``event_timestamp``, ``is_fraud`` and every feature.
        features: The feature service's names in its order: the model's column order.
    """

    frame: pd.DataFrame
    features: list[str]


def retrieve_training_set(
    store: FeatureStore,
    labeled: pd.DataFrame,
    progress: Progress = quiet,
    batch_rows: int | None = None,
) -> TrainingSet:
    """Point-in-time features of the feature service for every labeled transaction.

    Args:
        store: An open feature store (after ``feast apply``).
        labeled: Output of :func:`labeled_transactions`.
        progress: Where to report progress.
        batch_rows: Entity rows per ``get_historical_features`` call; the store's default
            (``HISTORICAL_BATCH_ROWS``) when ``None``.

    Returns:
        The training set; features come only from the service.

    Raises:
        TrainingError: If the baseline's features are not outputs of the service.
    """
    from feature_repo.store import HISTORICAL_BATCH_ROWS, feature_names, historical_features

    features = feature_names(store)
    missing = [name for name in BASELINE_FEATURES if name not in features]
    if missing:
        raise TrainingError(f"baseline features {missing} are not outputs of the feature service")
    frame = historical_features(store, labeled, progress, batch_rows or HISTORICAL_BATCH_ROWS)
    return TrainingSet(frame=frame, features=features)


def load_training_set(
    settings: Settings, progress: Progress = quiet, batch_rows: int | None = None
) -> TrainingSet:
    """The training set of a project: its labeled transactions, their features from Feast.

    Args:
        settings: Where the raw data, the ingestion journals and the feature repository are.
        progress: Where to report progress.
        batch_rows: Entity rows per ``get_historical_features`` call (store default if None).

    Returns:
        The training set.

    Raises:
        FileNotFoundError: If a raw table is missing.
        TrainingError: If there are no labels, one class only, or the service is not applied.
    """
    from feast.errors import FeastObjectNotFoundException

    from feature_repo.store import open_store

    labeled = labeled_transactions(settings.paths.raw_dir, settings.paths.ingested_dir)
    progress(f"{len(labeled):,} labeled transactions ({labeled[LABEL].mean():.2%} fraud)")
    store = open_store(settings)
    try:
        return retrieve_training_set(store, labeled, progress, batch_rows)
    except FeastObjectNotFoundException as exc:
        raise TrainingError(f"{exc}; run `fraud features apply` first") from exc
