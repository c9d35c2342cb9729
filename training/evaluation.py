"""Training phase 2, evaluation: stratified K-fold CV, the threshold, a time-ordered holdout.

Pure functions over data frames; the model itself is :mod:`training.model`, the data
:mod:`training.dataset`, MLflow and the registry :mod:`training.run_log` and
:mod:`training.registry`.

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

The model and the request-only baseline go through the same protocol (:func:`evaluate`); the
run's flat metrics (:func:`run_metrics`) and the drift reference sample
(:func:`reference_sample`) are read off the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraud_platform.contracts import EVENT_TIMESTAMP, LABEL, PROBABILITY
from training.dataset import Progress, TrainingSet, check_labels, quiet
from training.model import BASELINE_FEATURES, build_model, model_matrix

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from fraud_platform.settings import TrainParams

MAX_FPR_FOR_RECALL = 0.01  # "recall at 1 % FPR": the share of fraud caught at 1 % false alarms
METRIC_NAMES = ("pr_auc", "roc_auc", "precision", "recall", "recall_at_1pct_fpr")


# ------------------------------------------------------------------ the split


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


# ------------------------------------------------------------------ metrics


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


def cross_validate_and_fit(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    features: Sequence[str],
    params: TrainParams,
    seed: int,
    progress: Progress = quiet,
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
    y_train = train[LABEL].to_numpy(dtype=int)
    y_holdout = holdout[LABEL].to_numpy(dtype=int)
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
    training_set: TrainingSet, params: TrainParams, seed: int, progress: Progress = quiet
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
    is_holdout = holdout_mask(frame[EVENT_TIMESTAMP], params.holdout_fraction)
    train, holdout = frame.loc[~is_holdout], frame.loc[is_holdout]
    progress(
        f"split: {len(train):,} training rows ({train[LABEL].mean():.2%} fraud), "
        f"{len(holdout):,} holdout rows from {holdout[EVENT_TIMESTAMP].min()} "
        f"({holdout[LABEL].mean():.2%} fraud)"
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
        start = train[EVENT_TIMESTAMP].min() + pd.Timedelta(days=warmup_days)
        warm = train[train[EVENT_TIMESTAMP] >= start]
        train = warm if len(warm) else train
    sample = train.sample(n=min(size, len(train)), random_state=seed).sort_index()
    result = sample.loc[:, evaluation.model.features].copy()
    result[LABEL] = sample[LABEL].astype("int8")
    features = model_matrix(sample, evaluation.model.features)
    result[PROBABILITY] = evaluation.model.model.predict_proba(features)[:, 1]
    return result.reset_index(drop=True)


def run_metrics(evaluation: Evaluation) -> dict[str, float]:
    """Flat metrics of a run: CV mean/std and holdout, model and ``baseline_``, lift, sizes.

    Args:
        evaluation: The evaluated model and baseline.

    Returns:
        Metric name -> value; per-fold values are logged separately as steps.
    """
    metrics: dict[str, float] = {}
    for prefix, result in (("", evaluation.model), ("baseline_", evaluation.baseline)):
        for name in METRIC_NAMES:
            metrics[f"{prefix}cv_{name}_mean"] = result.cv_mean[name]
            metrics[f"{prefix}cv_{name}_std"] = result.cv_std[name]
            metrics[f"{prefix}holdout_{name}"] = result.holdout[name]
        metrics[f"{prefix}threshold"] = result.threshold
    metrics["lift_pr_auc"] = evaluation.lift_pr_auc
    baseline_pr_auc = evaluation.baseline.holdout["pr_auc"]
    if baseline_pr_auc > 0:
        metrics["lift_pr_auc_ratio"] = evaluation.model.holdout["pr_auc"] / baseline_pr_auc
    metrics["train_rows"] = float(len(evaluation.train))
    metrics["holdout_rows"] = float(len(evaluation.holdout))
    metrics["train_fraud_rate"] = float(evaluation.train[LABEL].mean())
    metrics["holdout_fraud_rate"] = float(evaluation.holdout[LABEL].mean())
    return metrics
