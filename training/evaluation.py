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
   The OOF scores are raw log-odds; the calibration (``platt`` or ``isotonic``) is fitted on
   them, so every probability downstream is calibrated and no row calibrates itself.
3. The decision threshold is chosen on the calibrated OOF probabilities by the operations
   rule of ``params.yaml``: the lowest threshold whose precision reaches ``min_precision``,
   at most ``alert_budget_per_1000`` alerts per 1,000 transactions, or ``best_f1``.
4. Per-fold metrics (PR-AUC, ROC-AUC, precision and recall at that threshold, recall at 1 %
   FPR) and their mean and standard deviation are reported.
5. The final model is refit on the whole training part and carries the calibration of step 2;
   holdout metrics use the threshold of step 3, so the holdout stays untouched by any choice.
6. Slices of the holdout (:func:`slice_metrics`): PR-AUC and recall per fraud pattern (when
   the labels carry one) and for cold-start rows (the customer's first transaction).

Every model of ``train.models`` and the request-only baseline go through the same protocol
(:func:`evaluate`); the best holdout PR-AUC is the run's selected model
(:attr:`Evaluation.model`). The run's flat metrics (:func:`run_metrics`) and the drift
reference sample (:func:`reference_sample`) are read off the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data.generate import PATTERN_NAMES
from fraud_platform.contracts import EVENT_TIMESTAMP, FRAUD_PATTERN, LABEL, PROBABILITY
from fraud_platform.scoring_model import LINEAR
from training.dataset import Progress, TrainingError, TrainingSet, check_labels, quiet
from training.model import (
    BASELINE_FEATURES,
    build_estimator,
    fit_calibration,
    fit_estimator,
    freeze,
    model_matrix,
)

if TYPE_CHECKING:
    from fraud_platform.scoring_model import Calibration, ScoringModel
    from fraud_platform.settings import TrainParams

MAX_FPR_FOR_RECALL = 0.01  # "recall at 1 % FPR": the share of fraud caught at 1 % false alarms
METRIC_NAMES = ("pr_auc", "roc_auc", "precision", "recall", "recall_at_1pct_fpr")
# The fraud patterns the generator names; imported data says ``unknown`` (no pattern slices).
FRAUD_PATTERNS = tuple(name for name in PATTERN_NAMES if name != "none")
COLD_START_FEATURE = "is_new_customer"  # 1 on a customer's first transaction: no history


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
    y_true: np.ndarray,
    scores: np.ndarray,
    rule: str,
    min_precision: float,
    alert_budget_per_1000: float | None = None,
) -> float:
    """Decision threshold on out-of-fold probabilities, by the operations rule.

    Args:
        y_true: 0/1 targets of the out-of-fold rows.
        scores: Their out-of-fold (calibrated) probabilities.
        rule: ``min_precision`` (lowest threshold whose precision reaches ``min_precision``,
            i.e. the most recall at that precision), ``alert_budget`` (lowest threshold that
            flags at most ``alert_budget_per_1000`` rows per 1,000) or ``best_f1``.
        min_precision: Used by ``min_precision``.
        alert_budget_per_1000: Used by ``alert_budget``.

    Returns:
        The threshold: a row is flagged when its probability is >= it.

    Raises:
        ValueError: For an unknown rule (``load_params`` rejects those first), or
            ``alert_budget`` without a budget.
    """
    from sklearn.metrics import precision_recall_curve

    if rule == "alert_budget":
        if alert_budget_per_1000 is None:
            raise ValueError("train.threshold_rule alert_budget needs alert_budget_per_1000")
        return _budget_threshold(np.asarray(scores, float), alert_budget_per_1000 / 1000)
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


def _budget_threshold(scores: np.ndarray, share: float) -> float:
    """Lowest threshold flagging at most ``share`` of ``scores`` (ties flag together)."""
    allowed = int(np.floor(share * len(scores)))
    values = np.unique(scores)  # ascending
    # flagged[i]: rows with score >= values[i]
    flagged = len(scores) - np.searchsorted(np.sort(scores), values, side="left")
    within = np.flatnonzero(flagged <= allowed)
    if len(within) == 0:  # even the top score's ties exceed the budget: flag nothing
        return float(np.nextafter(values[-1], np.inf))
    return float(values[within[0]])


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


def slice_metrics(
    holdout: pd.DataFrame, scores: np.ndarray, threshold: float
) -> dict[str, dict[str, float]]:
    """PR-AUC and recall at the threshold per fraud pattern and for cold-start rows.

    A pattern's slice is its frauds against every legitimate row (how well the model tells
    that pattern from normal traffic); the cold-start slice is the rows whose customer had no
    earlier transaction (``is_new_customer == 1``), frauds and legitimate alike. A slice
    without any fraud is left out (nothing to recall); PR-AUC is NaN-free: it is left out
    when the slice has one class only. Data without ``fraud_pattern`` (or with ``unknown``
    only, as imported data) has no pattern slices.

    Args:
        holdout: Holdout rows: ``is_fraud``, features, and ``fraud_pattern`` if known.
        scores: The model's probability of each row.
        threshold: Its decision threshold.

    Returns:
        Slice name (a pattern, or ``cold_start``) -> ``pr_auc`` (when both classes),
        ``recall``, ``rows``, ``frauds``.
    """
    from sklearn.metrics import average_precision_score

    y = holdout[LABEL].to_numpy(dtype=int)
    flagged = np.asarray(scores) >= threshold
    masks: dict[str, np.ndarray] = {}
    if FRAUD_PATTERN in holdout.columns:
        pattern = holdout[FRAUD_PATTERN].astype(str).to_numpy()
        for name in FRAUD_PATTERNS:
            masks[name] = (y == 0) | (pattern == name)
    if COLD_START_FEATURE in holdout.columns:
        masks["cold_start"] = holdout[COLD_START_FEATURE].to_numpy() == 1
    result: dict[str, dict[str, float]] = {}
    for name, mask in masks.items():
        frauds = int(y[mask].sum())
        if frauds == 0:
            continue
        metrics = {
            "recall": float(flagged[mask & (y == 1)].mean()),
            "rows": float(mask.sum()),
            "frauds": float(frauds),
        }
        if frauds < mask.sum():
            metrics["pr_auc"] = float(average_precision_score(y[mask], np.asarray(scores)[mask]))
        result[name] = metrics
    return result


@dataclass
class ModelResult:
    """A model fitted and evaluated by :func:`cross_validate_and_fit`.

    Attributes:
        kind: Its family (``logistic_regression``, ``lightgbm``).
        model: Final model, refit on the whole training part, with its calibration.
        features: Its input columns, in order.
        threshold: Decision threshold chosen on the calibrated out-of-fold probabilities.
        fold_metrics: Metrics of each CV fold (at ``threshold``).
        cv_mean: Mean of each metric over the folds.
        cv_std: Standard deviation (population) of each metric over the folds.
        oof_scores: Calibrated out-of-fold probability of every training row.
        holdout: Metrics of the final model on the holdout (at ``threshold``).
        holdout_scores: Final model's (calibrated) probability of every holdout row.
        slices: Holdout metrics per slice (:func:`slice_metrics`).
        seconds: Wall time of CV, calibration and refit.
    """

    kind: str
    model: ScoringModel
    features: list[str]
    threshold: float
    fold_metrics: list[dict[str, float]]
    cv_mean: dict[str, float]
    cv_std: dict[str, float]
    oof_scores: np.ndarray
    holdout: dict[str, float]
    holdout_scores: np.ndarray
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = field(default=0.0)

    @property
    def calibration(self) -> Calibration:
        """The raw score -> probability map fitted out of fold."""
        return self.model.calibration


def cross_validate_and_fit(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    features: Sequence[str],
    params: TrainParams,
    seed: int,
    progress: Progress = quiet,
    label: str = "model",
    kind: str = LINEAR,
) -> ModelResult:
    """Stratified K-fold CV on ``train``, calibration and threshold on OOF, refit, holdout.

    Args:
        train: Earlier part of the training set (features and ``is_fraud``).
        holdout: Latest part, scored once by the final model.
        features: Columns the model uses, in order.
        params: ``k_folds``, the family's hyperparameters, calibration, threshold rule.
        seed: Seed of the fold split and of the estimator.
        progress: Where to report "fold k of n".
        label: Name in progress messages (the family, or ``baseline``).
        kind: The family (``train.models``).

    Returns:
        The fitted, calibrated model with CV and holdout metrics.

    Raises:
        TrainingError: If a part lacks a class, a class has fewer rows than folds, or a
            monotone constraint names no model feature.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    y_train = train[LABEL].to_numpy(dtype=int)
    y_holdout = holdout[LABEL].to_numpy(dtype=int)
    check_labels(y_train, "training part (before the holdout)", min_per_class=params.k_folds)
    check_labels(y_holdout, "holdout (latest part of the period)")
    x_train = model_matrix(train, features)
    fill = x_train.mean().to_numpy()  # an unknown value online is taken at the training mean

    try:
        template = build_estimator(kind, params, seed, features)
    except ValueError as exc:  # a params.yaml constraint naming no feature of the service
        raise TrainingError(str(exc)) from exc
    folds = StratifiedKFold(n_splits=params.k_folds, shuffle=True, random_state=seed)
    oof_raw = np.zeros(len(train), dtype=float)
    splits = list(folds.split(x_train, y_train))
    for k, (fit_idx, val_idx) in enumerate(splits, start=1):
        fold_started = time.perf_counter()
        fitted = fit_estimator(kind, clone(template), x_train.iloc[fit_idx], y_train[fit_idx], fill)
        fold_model = freeze(kind, fitted, features, fill)
        oof_raw[val_idx] = fold_model.raw_score(x_train.iloc[val_idx])
        progress(
            f"{label}: fold {k} of {len(splits)} ({len(fit_idx):,} fit / {len(val_idx):,} "
            f"validation rows) in {time.perf_counter() - fold_started:.2f} s"
        )

    # Calibration and threshold come from OOF scores only: no row scores itself.
    calibration = fit_calibration(y_train, oof_raw, params.calibration)
    oof = calibration.apply(oof_raw)
    threshold = choose_threshold(
        y_train, oof, params.threshold_rule, params.min_precision, params.alert_budget_per_1000
    )
    fold_metrics = [
        score_metrics(y_train[val_idx], oof[val_idx], threshold) for _, val_idx in splits
    ]
    cv_mean = {m: float(np.mean([f[m] for f in fold_metrics])) for m in METRIC_NAMES}
    cv_std = {m: float(np.std([f[m] for f in fold_metrics])) for m in METRIC_NAMES}

    fitted = fit_estimator(kind, clone(template), x_train, y_train, fill)
    model = freeze(kind, fitted, features, fill, calibration)
    holdout_scores = model.predict_proba(holdout)[:, 1]
    holdout_metrics = score_metrics(y_holdout, holdout_scores, threshold)
    seconds = time.perf_counter() - started
    progress(
        f"{label}: CV PR-AUC {cv_mean['pr_auc']:.4f} ± {cv_std['pr_auc']:.4f}, holdout PR-AUC "
        f"{holdout_metrics['pr_auc']:.4f}, precision {holdout_metrics['precision']:.3f} and "
        f"recall {holdout_metrics['recall']:.3f} at threshold {threshold:.4f} ({seconds:.1f} s)"
    )
    return ModelResult(
        kind=kind,
        model=model,
        features=list(features),
        threshold=threshold,
        fold_metrics=fold_metrics,
        cv_mean=cv_mean,
        cv_std=cv_std,
        oof_scores=oof,
        holdout=holdout_metrics,
        holdout_scores=holdout_scores,
        slices=slice_metrics(holdout, holdout_scores, threshold),
        seconds=seconds,
    )


@dataclass
class Evaluation:
    """The models of ``train.models`` and the request-only baseline, evaluated the same way.

    Attributes:
        candidates: One result per family of ``train.models``, in that order.
        baseline: The logistic regression on :data:`BASELINE_FEATURES`.
        train: Training part of the training set (rows before the holdout cut).
        holdout: Holdout part.
    """

    candidates: list[ModelResult]
    baseline: ModelResult
    train: pd.DataFrame
    holdout: pd.DataFrame

    @property
    def model(self) -> ModelResult:
        """The selected model: the best holdout PR-AUC (the first listed on a tie)."""
        return max(self.candidates, key=lambda result: result.holdout["pr_auc"])

    @property
    def lift_pr_auc(self) -> float:
        """Holdout PR-AUC of the selected model minus that of the baseline."""
        return self.model.holdout["pr_auc"] - self.baseline.holdout["pr_auc"]


def evaluate(
    training_set: TrainingSet, params: TrainParams, seed: int, progress: Progress = quiet
) -> Evaluation:
    """Split by time, then train and evaluate every model of ``train.models`` and the baseline.

    Args:
        training_set: Retrieved features of the labeled transactions.
        params: Training parameters.
        seed: The pipeline's seed.
        progress: Where to report progress.

    Returns:
        The fitted models with their metrics, and the two parts of the data.
    """
    frame = training_set.frame
    is_holdout = holdout_mask(frame[EVENT_TIMESTAMP], params.holdout_fraction)
    train, holdout = frame.loc[~is_holdout], frame.loc[is_holdout]
    progress(
        f"split: {len(train):,} training rows ({train[LABEL].mean():.2%} fraud), "
        f"{len(holdout):,} holdout rows from {holdout[EVENT_TIMESTAMP].min()} "
        f"({holdout[LABEL].mean():.2%} fraud)"
    )
    candidates = [
        cross_validate_and_fit(
            train, holdout, training_set.features, params, seed, progress, label=kind, kind=kind
        )
        for kind in params.models
    ]
    baseline = cross_validate_and_fit(
        train, holdout, BASELINE_FEATURES, params, seed, progress, label="baseline"
    )
    return Evaluation(candidates=candidates, baseline=baseline, train=train, holdout=holdout)


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
    result[PROBABILITY] = evaluation.model.model.predict_proba(sample)[:, 1]
    return result.reset_index(drop=True)


def run_metrics(evaluation: Evaluation) -> dict[str, float]:
    """Flat metrics of a run: the selected model, each family, the baseline, lift, slices, sizes.

    Unprefixed names (``holdout_pr_auc``, ``threshold``, ...) are the selected model's (the one
    the run proposes for the alias); ``<family>_`` names are each trained family's (both the
    gradient-boosted model and the regression, side by side), ``baseline_`` the request-only
    baseline's; ``<family>_holdout_slice_<slice>_<metric>`` the slices.

    Args:
        evaluation: The evaluated models and baseline.

    Returns:
        Metric name -> value; per-fold values are logged separately as steps.
    """
    metrics: dict[str, float] = {}
    prefixed = [("", evaluation.model), ("baseline_", evaluation.baseline)]
    prefixed += [(f"{result.kind}_", result) for result in evaluation.candidates]
    for prefix, result in prefixed:
        for name in METRIC_NAMES:
            metrics[f"{prefix}cv_{name}_mean"] = result.cv_mean[name]
            metrics[f"{prefix}cv_{name}_std"] = result.cv_std[name]
            metrics[f"{prefix}holdout_{name}"] = result.holdout[name]
        metrics[f"{prefix}threshold"] = result.threshold
    for result in evaluation.candidates:
        for slice_name, values in result.slices.items():
            for name, value in values.items():
                metrics[f"{result.kind}_holdout_slice_{slice_name}_{name}"] = value
    metrics["lift_pr_auc"] = evaluation.lift_pr_auc
    baseline_pr_auc = evaluation.baseline.holdout["pr_auc"]
    if baseline_pr_auc > 0:
        metrics["lift_pr_auc_ratio"] = evaluation.model.holdout["pr_auc"] / baseline_pr_auc
    metrics["train_rows"] = float(len(evaluation.train))
    metrics["holdout_rows"] = float(len(evaluation.holdout))
    metrics["train_fraud_rate"] = float(evaluation.train[LABEL].mean())
    metrics["holdout_fraud_rate"] = float(evaluation.holdout[LABEL].mean())
    return metrics
