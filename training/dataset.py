"""Training phase 1, the dataset: labeled transactions and their features from the feature service.

What the model sees
-------------------
The training set is the labeled transactions (raw ``transactions`` plus the ones the API
ingested, inner-joined with ``labels`` on ``transaction_id``) used as the entity dataframe of
``get_historical_features`` on the feature service ``train.feature_service`` (by default
:data:`~feature_engine.declarations.FEATURE_SERVICE_NAME`). Every feature value is therefore what
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
(see :mod:`feature_engine.state.fold`): the label delay matters to features, not to the target.
Transactions without a label yet are left out.

Rows with truncated history are left out
----------------------------------------
A row's features look back to :func:`feature_engine.state.request.lookback_start_us` (the longest
window the features declare: the 30 complete days before the row's day). When that reaches before
the data's start (the raw data's earliest transaction), a card that existed before the data may have
had history the data does not hold: its row would look like a new or quiet card, and the model would
learn that "no history" means whatever happened in the data's first weeks. So a labeled row is kept
only if its lookback starts at or after the data's start, or its card demonstrably opened after the
data's start (``customers.created_at`` later than it: the generator's account-open dates). Imported
data carries no open dates (the importer sets ``created_at`` to the data's start), so there the rule
is the data start alone: the first 30-31 days of a file train nothing. Generated data puts its
warm-up there, so no warm-up row is ever a training row. :func:`complete_history_mask` is the one
statement of the rule; the count dropped is printed and logged with the MLflow run
(``truncated_history_rows``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feature_engine.declarations import ServiceTable
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform.contracts import CUSTOMER_ID, LABEL, TIMESTAMP
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


def labeled_transactions(
    raw_dir: Path,
    ingested_dir: Path | None = None,
    progress: Progress = quiet,
    service: str = FEATURE_SERVICE_NAME,
) -> tuple[pd.DataFrame, int]:
    """Transactions that have a label and a complete history, with their ``is_fraud`` target.

    Args:
        raw_dir: Folder with the raw tables (raw schema).
        ingested_dir: Journals of transactions scored and labels posted online since; they
            train the next model too. Raw data only when ``None``.
        progress: Where to report how many rows the truncated-history rule dropped.
        service: The feature service trained on: its windows set how far back a row looks.

    Returns:
        Raw-schema transaction columns plus ``is_fraud`` (int8) and ``fraud_pattern`` (for
        slice metrics), sorted by (timestamp, transaction_id), without rows of truncated
        history (:func:`drop_truncated_history`); and how many such rows were dropped.

    Raises:
        FileNotFoundError: If a table is missing.
        TrainingError: If no transaction has a label, or all labels are one class.
    """
    from feature_engine.offline.events import read_event_tables

    events = read_event_tables(raw_dir, ingested_dir)
    labeled = events.labeled_transactions()
    labeled[LABEL] = labeled[LABEL].astype("int8")
    check_labels(labeled[LABEL], where="labeled transactions")
    if len(labeled):
        # The data's start is the raw data's: a transaction the API took in (the journals) may
        # be stamped years earlier, like the reference example, and says nothing of history.
        raw_times = pq.read_table(raw_dir / "transactions.parquet", columns=[TIMESTAMP])
        data_start = pd.Timestamp(pc.min(raw_times.column(TIMESTAMP)).as_py())
        labeled, dropped = drop_truncated_history(
            labeled, events.customers.to_pandas(), data_start, SERVICE_TABLES[service]
        )
        progress(
            f"truncated history: {dropped:,} labeled rows dropped (lookback before the data's "
            f"start {data_start}, card not opened after it)"
        )
    else:
        dropped = 0
    # The rule may leave too little (a file shorter than the longest window): say so.
    check_labels(labeled[LABEL], where="labeled transactions with a complete history")
    return labeled.reset_index(drop=True), dropped


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


def complete_history_mask(
    timestamps_us: np.ndarray,
    opened_us: np.ndarray,
    data_start_us: int,
    table: ServiceTable = SERVICE_TABLES[FEATURE_SERVICE_NAME],
) -> np.ndarray:
    """Which rows see their card's whole history: the truncated-history rule, stated once.

    Args:
        timestamps_us: Each row's transaction time (µs since epoch, UTC).
        opened_us: Each row's card open time (µs); any value <= ``data_start_us`` when unknown.
        data_start_us: The data's earliest transaction time (µs).
        table: The declarations of the service trained on.

    Returns:
        True where the row's lookback (:func:`feature_engine.state.request.lookback_start_us`)
        starts at or after the data's start, or the card opened after the data's start.
    """
    from feature_engine.state.request import lookback_start_us

    times = np.asarray(timestamps_us, dtype=np.int64)
    # The lookback depends on the row's time only: compute it once per distinct time.
    distinct, position = np.unique(times, return_inverse=True)
    lookback = np.fromiter(
        (lookback_start_us(t, table) for t in distinct.tolist()), np.int64, len(distinct)
    )
    return (lookback[position] >= data_start_us) | (np.asarray(opened_us) > data_start_us)


def drop_truncated_history(
    labeled: pd.DataFrame,
    customers: pd.DataFrame,
    data_start: pd.Timestamp,
    table: ServiceTable = SERVICE_TABLES[FEATURE_SERVICE_NAME],
) -> tuple[pd.DataFrame, int]:
    """The labeled rows whose features see the card's whole history (:func:`complete_history_mask`).

    Args:
        labeled: Labeled transactions (``customer_id``, ``timestamp``).
        customers: The customers table (``customer_id``, ``created_at``); a card missing from it
            (one the API met first) has no known open date.
        data_start: The data's earliest transaction time.
        table: The declarations of the service trained on.

    Returns:
        The kept rows (index reset) and how many were dropped.
    """
    start_us = _epoch_us(pd.Series([data_start]))[0]
    opened = labeled[CUSTOMER_ID].map(customers.set_index(CUSTOMER_ID)["created_at"])
    opened_us = _epoch_us(opened.fillna(data_start))  # unknown open date: the data's start
    keep = complete_history_mask(_epoch_us(labeled[TIMESTAMP]), opened_us, start_us, table)
    return labeled.loc[keep].reset_index(drop=True), int((~keep).sum())


def _epoch_us(times: pd.Series) -> np.ndarray:
    """UTC timestamps as µs since the epoch."""
    return pd.to_datetime(times, utc=True).dt.as_unit("us").astype("int64").to_numpy()


@dataclass(frozen=True)
class TrainingSet:
    """Retrieved training rows and the model's feature columns.

    Attributes:
        frame: Entity columns, ``event_timestamp``, ``is_fraud`` and every feature.
        features: The feature service's names in its order: the model's column order.
        truncated_history_rows: Labeled rows left out because their history may be truncated
            (:func:`drop_truncated_history`).
        feature_service: The Feast feature service the features came from.
    """

    frame: pd.DataFrame
    features: list[str]
    truncated_history_rows: int = 0
    feature_service: str = FEATURE_SERVICE_NAME


def retrieve_training_set(
    store: FeatureStore,
    labeled: pd.DataFrame,
    progress: Progress = quiet,
    batch_rows: int | None = None,
    service: str = FEATURE_SERVICE_NAME,
) -> TrainingSet:
    """Point-in-time features of the feature service for every labeled transaction.

    Args:
        store: An open feature store (after ``feast apply``).
        labeled: Output of :func:`labeled_transactions`.
        progress: Where to report progress.
        batch_rows: Entity rows per ``get_historical_features`` call; the store's default
            (``HISTORICAL_BATCH_ROWS``) when ``None``.
        service: The feature service to retrieve (``train.feature_service``).

    Returns:
        The training set; features come only from the service.

    Raises:
        TrainingError: If the baseline's features are not outputs of the service.
    """
    from feature_engine.store import HISTORICAL_BATCH_ROWS, feature_names, historical_features

    if service not in SERVICE_TABLES:
        raise TrainingError(
            f"train.feature_service: unknown feature service {service!r}; "
            f"known: {sorted(SERVICE_TABLES)}"
        )
    features = feature_names(store, service)
    missing = [name for name in BASELINE_FEATURES if name not in features]
    if missing:
        raise TrainingError(f"baseline features {missing} are not outputs of the feature service")
    frame = historical_features(
        store, labeled, service, progress, batch_rows or HISTORICAL_BATCH_ROWS
    )
    return TrainingSet(frame=frame, features=features, feature_service=service)


def load_training_set(
    settings: Settings,
    progress: Progress = quiet,
    batch_rows: int | None = None,
    service: str = FEATURE_SERVICE_NAME,
) -> TrainingSet:
    """The training set of a project: its labeled transactions, their features from Feast.

    Args:
        settings: Where the raw data, the ingestion journals and the feature repository are.
        progress: Where to report progress.
        batch_rows: Entity rows per ``get_historical_features`` call (store default if None).
        service: The feature service to retrieve (``train.feature_service``).

    Returns:
        The training set.

    Raises:
        FileNotFoundError: If a raw table is missing.
        TrainingError: If there are no labels, one class only, or the service is not applied.
    """
    from feast.errors import FeastObjectNotFoundException

    from feature_engine.store import open_store

    labeled, dropped = labeled_transactions(
        settings.paths.raw_dir, settings.paths.ingested_dir, progress, service
    )
    progress(f"{len(labeled):,} labeled transactions ({labeled[LABEL].mean():.2%} fraud)")
    store = open_store(settings)
    try:
        training_set = retrieve_training_set(store, labeled, progress, batch_rows, service)
    except FeastObjectNotFoundException as exc:
        raise TrainingError(f"{exc}; run `fraud features apply` first") from exc
    return dataclasses.replace(training_set, truncated_history_rows=dropped)
