"""Model training: labeled transactions -> Feast features -> stratified CV + time-ordered holdout.

Pure functions over data frames; MLflow, plots and the registry live in
:mod:`training.registry` and :mod:`training.reports`.

What the model sees
-------------------
The training set is the labeled transactions (raw ``transactions`` inner-joined with
``labels`` on ``transaction_id``) used as the entity dataframe of
``get_historical_features`` on the feature service
(:data:`~feature_repo.store.FEATURE_SERVICE_NAME`). Every feature value is therefore what
Feast's point-in-time join gives as of the transaction's own timestamp, computed by the same
on-demand function the API runs online; the model's columns are the service's feature names in
the service's order. There is no feature list in this package, only :data:`BASELINE_FEATURES`,
the request-only subset the baseline uses, which must be outputs of the same service.

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

Evaluation protocol
-------------------
1. Time-ordered holdout: transactions in the latest ``holdout_fraction`` of the period
   (by timestamp, not by row count) are set aside and never seen by CV, threshold choice or
   fitting.
2. ``StratifiedKFold(k_folds, shuffle=True, random_state=seed)`` on the earlier part gives
   out-of-fold (OOF) probabilities for every training row.
3. The decision threshold is chosen on the OOF probabilities by the params rule
   (``best_f1``, or the lowest threshold whose precision reaches ``min_precision``).
4. Per-fold metrics (PR-AUC, ROC-AUC, precision and recall at that threshold, recall at 1 %
   FPR) and their mean and standard deviation are reported.
5. The final model is refit on the whole training part; holdout metrics use the threshold of
   step 3, so the holdout stays untouched by any choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraud_platform.contracts import EVENT_TIMESTAMP, LABEL, PROBABILITY

if TYPE_CHECKING:
    from feast import FeatureStore
    from sklearn.pipeline import Pipeline

    from fraud_platform.settings import TrainParams

Progress = Callable[[str], None]

LABEL_COLUMN = LABEL
TIMESTAMP_COLUMN = EVENT_TIMESTAMP  # historical_features renames the raw ``timestamp``
PREDICTION_COLUMN = PROBABILITY  # in the reference sample; the drift check reads this name
# The baseline model sees only what the request itself carries (no stored state). Both are
# outputs of the same feature service, taken from the retrieved frame, never recomputed here.
BASELINE_FEATURES: tuple[str, ...] = ("log_amount", "hour_of_day")
MAX_FPR_FOR_RECALL = 0.01  # "recall at 1 % FPR": the share of fraud caught at 1 % false alarms
METRIC_NAMES = ("pr_auc", "roc_auc", "precision", "recall", "recall_at_1pct_fpr")


class TrainingError(ValueError):
    """The data cannot train a model (no labeled rows, one class, a class too small)."""


def _quiet(message: str) -> None:
    """A progress sink that drops messages."""


# ------------------------------------------------------------------ data


def labeled_transactions(raw_dir: Path, ingested_dir: Path | None = None) -> pd.DataFrame:
    """Transactions that have a label, with their ``is_fraud`` target.

    Args:
        raw_dir: Folder with the raw tables (raw schema).
        ingested_dir: Journals of transactions scored and labels posted online since; they
            train the next model too. Raw data only when ``None``.

    Returns:
        Raw-schema transaction columns plus ``is_fraud`` (int8), sorted by
        (timestamp, transaction_id).

    Raises:
        FileNotFoundError: If a table is missing.
        TrainingError: If no transaction has a label, or all labels are one class.
    """
    from feature_repo.events import read_event_tables

    labeled = read_event_tables(raw_dir, ingested_dir).labeled_transactions()
    labeled[LABEL_COLUMN] = labeled[LABEL_COLUMN].astype("int8")
    labeled = labeled.reset_index(drop=True)
    check_labels(labeled[LABEL_COLUMN], where="labeled transactions")
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
    progress: Progress = _quiet,
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
    """
    from feature_repo.store import HISTORICAL_BATCH_ROWS, feature_names, historical_features

    features = feature_names(store)
    missing = [name for name in BASELINE_FEATURES if name not in features]
    if missing:
        raise TrainingError(f"baseline features {missing} are not outputs of the feature service")
    frame = historical_features(store, labeled, progress, batch_rows or HISTORICAL_BATCH_ROWS)
    return TrainingSet(frame=frame, features=features)


def holdout_mask(timestamps: pd.Series, fraction: float) -> np.ndarray:
    """Rows in the latest ``fraction`` of the period spanned by ``timestamps``.

    The cut is on time, not on row count: with the period ``[first, last]`` the holdout is
    ``timestamp >= last - fraction * (last - first)``. Same-second transactions therefore
    always fall on the same side.

    Args:
        timestamps: Event times of the rows.
        fraction: Share of the period to hold out, in (0, 1).

    Returns:
        Boolean mask, True for holdout rows.
    """
    values = pd.to_datetime(timestamps, utc=True)
    first, last = values.min(), values.max()
    cutoff = last - (last - first) * fraction
    return np.asarray(values >= cutoff)


# ------------------------------------------------------------------ model and metrics


def build_model(params: TrainParams, seed: int) -> Pipeline:
    """The model: standardised features into a class-balanced logistic regression.

    Args:
        params: ``C`` and ``max_iter`` come from here.
        seed: ``random_state`` of the regression.

    Returns:
        An unfitted scikit-learn pipeline.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classify",
                LogisticRegression(
                    class_weight="balanced",  # fraud is rare: weigh classes equally
                    C=params.C,
                    max_iter=params.max_iter,
                    random_state=seed,
                ),
            ),
        ]
    )


def recall_at_fpr(
    y_true: np.ndarray, scores: np.ndarray, max_fpr: float = MAX_FPR_FOR_RECALL
) -> float:
    """Highest recall reachable while the false-positive rate stays at or below ``max_fpr``.

    Args:
        y_true: 0/1 targets.
        scores: Predicted fraud probabilities.
        max_fpr: Largest acceptable share of legitimate transactions flagged.

    Returns:
        The recall (true-positive rate) at that operating point.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(tpr[fpr <= max_fpr].max())


def choose_threshold(
    y_true: np.ndarray, scores: np.ndarray, rule: str, min_precision: float
) -> float:
    """Decision threshold on out-of-fold probabilities, by the params rule.

    Args:
        y_true: 0/1 targets of the out-of-fold rows.
        scores: Their out-of-fold probabilities.
        rule: ``best_f1`` (maximise F1) or ``min_precision`` (lowest threshold whose
            precision reaches ``min_precision``, i.e. the most recall at that precision).
        min_precision: Used by ``min_precision``.

    Returns:
        The threshold: a row is flagged when its probability is >= it.

    Raises:
        ValueError: For an unknown rule (``load_params`` rejects those first).
    """
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    # precision/recall have one more entry than thresholds (the (1, 0) end point): drop it.
    precision, recall = precision[:-1], recall[:-1]
    if rule == "best_f1":
        denominator = precision + recall
        f1 = np.divide(
            2 * precision * recall,
            denominator,
            out=np.zeros_like(denominator),
            where=denominator > 0,
        )
        return float(thresholds[int(np.argmax(f1))])
    if rule == "min_precision":
        reaching = np.flatnonzero(precision >= min_precision)
        if len(reaching) == 0:
            # Nothing reaches the target: the most precise threshold is the honest fallback.
            return float(thresholds[int(np.argmax(precision))])
        return float(thresholds[reaching[0]])  # thresholds ascend: the first is the lowest
    raise ValueError(f"train.threshold_rule: unknown rule {rule!r}")


def score_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking metrics and the metrics of the operating point ``scores >= threshold``.

    Args:
        y_true: 0/1 targets (both classes present).
        scores: Predicted fraud probabilities.
        threshold: Decision threshold.

    Returns:
        ``pr_auc`` (average precision), ``roc_auc``, ``precision``, ``recall``,
        ``recall_at_1pct_fpr``.
    """
    from sklearn.metrics import (
        average_precision_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    flagged = (scores >= threshold).astype(int)
    return {
        "pr_auc": float(average_precision_score(y_true, scores)),
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "precision": float(precision_score(y_true, flagged, zero_division=0)),
        "recall": float(recall_score(y_true, flagged, zero_division=0)),
        "recall_at_1pct_fpr": recall_at_fpr(y_true, scores),
    }


@dataclass
class ModelResult:
    """A model fitted and evaluated by :func:`cross_validate_and_fit`.

    Attributes:
        model: Final pipeline, refit on the whole training part.
        features: Its input columns, in order.
        threshold: Decision threshold chosen on the out-of-fold probabilities.
        fold_metrics: Metrics of each CV fold (at ``threshold``).
        cv_mean: Mean of each metric over the folds.
        cv_std: Standard deviation (population) of each metric over the folds.
        oof_scores: Out-of-fold probability of every training row.
        holdout: Metrics of the final model on the holdout (at ``threshold``).
        holdout_scores: Final model's probability of every holdout row.
        seconds: Wall time of CV plus refit.
    """

    model: Pipeline
    features: list[str]
    threshold: float
    fold_metrics: list[dict[str, float]]
    cv_mean: dict[str, float]
    cv_std: dict[str, float]
    oof_scores: np.ndarray
    holdout: dict[str, float]
    holdout_scores: np.ndarray
    seconds: float = field(default=0.0)


def model_matrix(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The model's input: ``features`` in order, as float64 (the logged signature's type)."""
    return frame.loc[:, list(features)].astype("float64")


def cross_validate_and_fit(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    features: Sequence[str],
    params: TrainParams,
    seed: int,
    progress: Progress = _quiet,
    label: str = "model",
) -> ModelResult:
    """Stratified K-fold CV on ``train``, threshold on OOF, refit, then score ``holdout``.

    Args:
        train: Earlier part of the training set (features and ``is_fraud``).
        holdout: Latest part, scored once by the final model.
        features: Columns the model uses, in order.
        params: ``k_folds``, ``C``, ``max_iter``, threshold rule.
        seed: Seed of the fold split and of the regression.
        progress: Where to report "fold k of n".
        label: Name in progress messages (``model`` or ``baseline``).

    Returns:
        The fitted model with CV and holdout metrics.

    Raises:
        TrainingError: If a part lacks a class, or a class has fewer rows than folds.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    y_train = train[LABEL_COLUMN].to_numpy(dtype=int)
    y_holdout = holdout[LABEL_COLUMN].to_numpy(dtype=int)
    check_labels(y_train, "training part (before the holdout)", min_per_class=params.k_folds)
    check_labels(y_holdout, "holdout (latest part of the period)")
    x_train = model_matrix(train, features)
    x_holdout = model_matrix(holdout, features)

    template = build_model(params, seed)
    folds = StratifiedKFold(n_splits=params.k_folds, shuffle=True, random_state=seed)
    oof = np.zeros(len(train), dtype=float)
    splits = list(folds.split(x_train, y_train))
    for k, (fit_idx, val_idx) in enumerate(splits, start=1):
        fold_started = time.perf_counter()
        fold_model = clone(template).fit(x_train.iloc[fit_idx], y_train[fit_idx])
        oof[val_idx] = fold_model.predict_proba(x_train.iloc[val_idx])[:, 1]
        progress(
            f"{label}: fold {k} of {len(splits)} ({len(fit_idx):,} fit / {len(val_idx):,} "
            f"validation rows) in {time.perf_counter() - fold_started:.2f} s"
        )

    # The threshold comes from OOF probabilities only: no row scores itself.
    threshold = choose_threshold(y_train, oof, params.threshold_rule, params.min_precision)
    fold_metrics = [
        score_metrics(y_train[val_idx], oof[val_idx], threshold) for _, val_idx in splits
    ]
    cv_mean = {m: float(np.mean([f[m] for f in fold_metrics])) for m in METRIC_NAMES}
    cv_std = {m: float(np.std([f[m] for f in fold_metrics])) for m in METRIC_NAMES}

    model = clone(template).fit(x_train, y_train)
    holdout_scores = model.predict_proba(x_holdout)[:, 1]
    holdout_metrics = score_metrics(y_holdout, holdout_scores, threshold)
    seconds = time.perf_counter() - started
    progress(
        f"{label}: CV PR-AUC {cv_mean['pr_auc']:.4f} ± {cv_std['pr_auc']:.4f}, holdout PR-AUC "
        f"{holdout_metrics['pr_auc']:.4f} at threshold {threshold:.4f} ({seconds:.1f} s)"
    )
    return ModelResult(
        model=model,
        features=list(features),
        threshold=threshold,
        fold_metrics=fold_metrics,
        cv_mean=cv_mean,
        cv_std=cv_std,
        oof_scores=oof,
        holdout=holdout_metrics,
        holdout_scores=holdout_scores,
        seconds=seconds,
    )


@dataclass
class Evaluation:
    """The model and its request-only baseline, trained and evaluated the same way.

    Attributes:
        model: The feature-service model.
        baseline: The baseline on :data:`BASELINE_FEATURES`.
        train: Training part of the training set (rows before the holdout cut).
        holdout: Holdout part.
    """

    model: ModelResult
    baseline: ModelResult
    train: pd.DataFrame
    holdout: pd.DataFrame

    @property
    def lift_pr_auc(self) -> float:
        """Holdout PR-AUC of the model minus that of the baseline."""
        return self.model.holdout["pr_auc"] - self.baseline.holdout["pr_auc"]


def evaluate(
    training_set: TrainingSet, params: TrainParams, seed: int, progress: Progress = _quiet
) -> Evaluation:
    """Split by time, then train and evaluate the model and the baseline.

    Args:
        training_set: Retrieved features of the labeled transactions.
        params: Training parameters.
        seed: The pipeline's seed.
        progress: Where to report progress.

    Returns:
        Both fitted models with their metrics, and the two parts of the data.
    """
    frame = training_set.frame
    is_holdout = holdout_mask(frame[TIMESTAMP_COLUMN], params.holdout_fraction)
    train, holdout = frame.loc[~is_holdout], frame.loc[is_holdout]
    progress(
        f"split: {len(train):,} training rows ({train[LABEL_COLUMN].mean():.2%} fraud), "
        f"{len(holdout):,} holdout rows from {holdout[TIMESTAMP_COLUMN].min()} "
        f"({holdout[LABEL_COLUMN].mean():.2%} fraud)"
    )
    model = cross_validate_and_fit(
        train, holdout, training_set.features, params, seed, progress, label="model"
    )
    baseline = cross_validate_and_fit(
        train, holdout, BASELINE_FEATURES, params, seed, progress, label="baseline"
    )
    return Evaluation(model=model, baseline=baseline, train=train, holdout=holdout)


def reference_sample(
    evaluation: Evaluation, size: int, seed: int, warmup_days: float = 0.0
) -> pd.DataFrame:
    """Rows of the training part for drift monitoring: features, target, model probability.

    Args:
        evaluation: The evaluated model.
        size: Rows to sample (all training rows when there are fewer).
        seed: Seed of the sample.
        warmup_days: Skip the first days of the period: there every customer is new and the
            30-day baselines are short, which live traffic never looks like (all rows are used
            when the warm-up would leave none).

    Returns:
        The model's features in order, ``is_fraud`` and ``probability`` (the final
        model's probability, i.e. what the API would have logged).
    """
    train = evaluation.train
    if warmup_days > 0:
        start = train[TIMESTAMP_COLUMN].min() + pd.Timedelta(days=warmup_days)
        warm = train[train[TIMESTAMP_COLUMN] >= start]
        train = warm if len(warm) else train
    sample = train.sample(n=min(size, len(train)), random_state=seed).sort_index()
    result = sample.loc[:, evaluation.model.features].copy()
    result[LABEL_COLUMN] = sample[LABEL_COLUMN].astype("int8")
    features = model_matrix(sample, evaluation.model.features)
    result[PREDICTION_COLUMN] = evaluation.model.model.predict_proba(features)[:, 1]
    return result.reset_index(drop=True)


def coefficient_table(result: ModelResult) -> pd.DataFrame:
    """Coefficients of the logistic regression per feature, largest magnitude first.

    Features are standardised before the regression, so a coefficient is the change in
    log-odds per standard deviation of the feature and magnitudes are comparable.

    Args:
        result: A fitted model.

    Returns:
        Columns ``feature``, ``coefficient``, ``abs_coefficient``, ``scaler_mean``,
        ``scaler_std``; the intercept is the last row.
    """
    scaler = result.model.named_steps["scale"]
    regression = result.model.named_steps["classify"]
    table = pd.DataFrame(
        {
            "feature": result.features,
            "coefficient": regression.coef_[0],
            "scaler_mean": scaler.mean_,
            "scaler_std": scaler.scale_,
        }
    )
    table["abs_coefficient"] = table["coefficient"].abs()
    table = table.sort_values("abs_coefficient", ascending=False, kind="stable")
    intercept = pd.DataFrame(
        [{"feature": "(intercept)", "coefficient": float(regression.intercept_[0])}]
    )
    intercept["abs_coefficient"] = intercept["coefficient"].abs()
    columns = ["feature", "coefficient", "abs_coefficient", "scaler_mean", "scaler_std"]
    return pd.concat([table, intercept], ignore_index=True)[columns]
