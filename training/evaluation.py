"""Training phase 2, evaluation: K-fold CV grouped by card, two thresholds, a time-ordered holdout.

Pure functions over data frames; the model itself is :mod:`training.model`, the data
:mod:`training.dataset`, MLflow and the registry :mod:`training.run_log` and
:mod:`training.registry`.

Evaluation protocol
-------------------
1. Time-ordered holdout: transactions in the latest ``holdout_fraction`` of the period
   (by timestamp, not by row count) are set aside and never seen by CV, threshold choice or
   fitting.
2. ``StratifiedGroupKFold(k_folds, shuffle=True, random_state=seed)`` on the earlier part,
   grouped by ``customer_id`` (``train.folds: by_card``), gives out-of-fold (OOF)
   probabilities for every training row: a card's rows are never in two folds, so every OOF
   score is that of a card the fold's model never saw. The model is per card (its features are
   the card's own history), and with folds over transactions (``by_transaction``, plain
   ``StratifiedKFold``) a defrauded card's other frauds sit in the fitting folds: OOF scores are
   optimistic for known cards and a threshold chosen on them does not transfer to the holdout
   (default data, LightGBM at ``target_recall`` 0.8: holdout recall 0.670 with folds over
   transactions, 0.813 grouped by card).
   The OOF scores are raw log-odds; the calibration (``platt`` or ``isotonic``) is fitted on
   them, so every probability downstream is calibrated and no row calibrates itself.
3. The decision threshold (the operating point) is chosen on the calibrated OOF
   probabilities by the operations rule of ``params.yaml`` (:func:`operating_point`): the
   whole alert budget of ``alert_budget_per_1000`` per 1,000 transactions, the fewest alerts
   catching ``target_recall`` of the fraud, the most recall at ``min_precision``, or
   ``best_f1``. A rule no threshold meets raises :class:`ThresholdRuleError` (naming the
   best value reachable) unless ``threshold_fallback`` names another rule: a model never
   silently alerts on nothing. A second, lower threshold (``train.review_rule``,
   :func:`review_threshold`) opens the REVIEW band: at or above the FRAUD threshold a
   transaction is blocked, between the two it is queued for an analyst
   (:func:`fraud_platform.contracts.prediction_for`).
4. Per-fold metrics (PR-AUC, ROC-AUC, precision, recall, alerts per 1,000 and the net savings
   of the review queue at that threshold, recall at 1 % FPR; the REVIEW band's precision and
   alerts, and precision, recall and alerts of FRAUD and REVIEW together) and their mean and
   standard deviation are reported.
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
from fraud_platform.contracts import (
    AMOUNT,
    CUSTOMER_ID,
    EVENT_TIMESTAMP,
    FRAUD_PATTERN,
    LABEL,
    PROBABILITY,
)
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
METRIC_NAMES = (
    "pr_auc",
    "roc_auc",
    "precision",
    "recall",
    "recall_at_1pct_fpr",
    "alerts_per_1000",
    "net_savings_per_1000",
    # The REVIEW band alone (below the FRAUD threshold), then FRAUD and REVIEW together.
    "review_precision",
    "review_alerts_per_1000",
    "flagged_precision",
    "flagged_recall",
    "flagged_alerts_per_1000",
)
# The rules every model's holdout is also reported at (beside the one that set its threshold),
# with the precision, recall and alerts per 1,000 of each: the operating points a team weighs.
REPORTED_RULES = ("alert_budget", "target_recall", "min_precision")
POINT_METRICS = ("precision", "recall", "alerts_per_1000")
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


class ThresholdRuleError(TrainingError):
    """No threshold meets the operations rule: the rule, and the best value any threshold gives.

    Attributes:
        rule: The rule that cannot be met (``train.threshold_rule``).
        best: The closest value any threshold reaches (precision for ``min_precision``, the
            fewest alerts per 1,000 for ``alert_budget``).
    """

    def __init__(self, rule: str, message: str, best: float) -> None:
        super().__init__(message)
        self.rule = rule
        self.best = best


def choose_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    rule: str,
    min_precision: float,
    alert_budget_per_1000: float | None = None,
    target_recall: float | None = None,
    setting: str = "train.threshold_rule",
) -> float:
    """Decision threshold on out-of-fold probabilities, by the operations rule.

    A row is flagged when its probability is >= the threshold. Every rule's answer flags at
    least one row: a rule no threshold meets raises, it never returns a threshold that flags
    nothing.

    Args:
        y_true: 0/1 targets of the out-of-fold rows.
        scores: Their out-of-fold (calibrated) probabilities.
        rule: ``alert_budget`` (the lowest threshold flagging at most
            ``alert_budget_per_1000`` rows per 1,000, i.e. the whole budget used),
            ``target_recall`` (the highest threshold whose recall reaches ``target_recall``,
            i.e. the fewest alerts catching that share), ``min_precision`` (the lowest
            threshold whose precision reaches ``min_precision``, i.e. the most recall at that
            precision) or ``best_f1``.
        min_precision: Used by ``min_precision``.
        alert_budget_per_1000: Used by ``alert_budget``.
        target_recall: Used by ``target_recall``.
        setting: The setting the rule comes from, named in errors (``train.review_rule``
            for the REVIEW threshold).

    Returns:
        The threshold.

    Raises:
        ThresholdRuleError: If no threshold meets the rule (the message names the best
            value reachable).
        ValueError: For an unknown rule (``load_params`` rejects those first), or a rule
            without its parameter.
    """
    from sklearn.metrics import precision_recall_curve

    scores = np.asarray(scores, float)
    if rule == "alert_budget":
        if alert_budget_per_1000 is None:
            raise ValueError(f"{setting} alert_budget needs alert_budget_per_1000")
        return _budget_threshold(scores, alert_budget_per_1000, setting)
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
    if rule == "target_recall":
        if target_recall is None:
            raise ValueError(f"{setting} target_recall needs target_recall")
        # Recall falls as the threshold rises; the lowest threshold has recall 1, so some
        # threshold always reaches the target: the last (highest) one that does.
        reaching = np.flatnonzero(recall >= target_recall)
        return float(thresholds[reaching[-1]])
    if rule == "min_precision":
        reaching = np.flatnonzero(precision >= min_precision)
        if len(reaching) == 0:
            best = int(np.argmax(precision))
            raise ThresholdRuleError(
                rule,
                f"{setting} min_precision: no threshold reaches precision "
                f"{min_precision:g} out of fold; the best achievable is {precision[best]:.4f} "
                f"(threshold {thresholds[best]:.4g}, recall {recall[best]:.4f})",
                float(precision[best]),
            )
        return float(thresholds[reaching[0]])  # thresholds ascend: the first is the lowest
    raise ValueError(f"{setting}: unknown rule {rule!r}")


def _budget_threshold(
    scores: np.ndarray,
    per_1000: float,
    setting: str = "train.threshold_rule",
    total: int | None = None,
) -> float:
    """Lowest threshold flagging at most ``per_1000`` of every 1,000 rows (ties together).

    ``total`` is the rows the budget is a share of (``len(scores)`` by default; more when
    ``scores`` are only the candidates, e.g. those below the FRAUD threshold).
    """
    rows = len(scores) if total is None else total
    allowed = int(np.floor(per_1000 / 1000 * rows))
    values = np.unique(scores)  # ascending
    # flagged[i]: rows with score >= values[i]
    flagged = len(scores) - np.searchsorted(np.sort(scores), values, side="left")
    within = np.flatnonzero(flagged <= allowed)
    if len(within) == 0:  # even the top score's ties exceed the budget: it would flag nothing
        fewest = 1000 * flagged[-1] / rows
        raise ThresholdRuleError(
            "alert_budget",
            f"{setting} alert_budget: no threshold flags at most {per_1000:g} per "
            f"1,000 out of fold ({rows:,} rows, {allowed} alerts allowed); the fewest "
            f"alerts any threshold gives is {fewest:.4g} per 1,000 (the top score's ties)",
            float(fewest),
        )
    return float(values[within[0]])


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold a model alerts at and the rule that set it.

    Attributes:
        threshold: Rows with a probability >= it are alerts.
        rule: The rule that set it: ``train.threshold_rule``, or the fallback when that
            could not be met.
        requested: ``train.threshold_rule``.
        fallback_reason: Why the requested rule was not used (its error), ``None`` when it was.
    """

    threshold: float
    rule: str
    requested: str
    fallback_reason: str | None = None

    @property
    def fell_back(self) -> bool:
        """Whether the requested rule could not be met and another set the threshold."""
        return self.fallback_reason is not None


def _threshold_by(y_true: np.ndarray, scores: np.ndarray, rule: str, params: TrainParams) -> float:
    return choose_threshold(
        y_true,
        scores,
        rule,
        params.min_precision,
        params.alert_budget_per_1000,
        params.target_recall,
    )


def operating_point(
    y_true: np.ndarray,
    scores: np.ndarray,
    params: TrainParams,
    label: str,
    fallback: str | None = None,
) -> OperatingPoint:
    """The operating point of ``train.threshold_rule``, or of its fallback when it is unmet.

    Args:
        y_true: 0/1 targets of the out-of-fold rows.
        scores: Their calibrated out-of-fold probabilities.
        params: The rule and its parameters; ``threshold_fallback`` is the rule used when the
            requested one cannot be met.
        label: The model, named in the error.
        fallback: A fallback used when ``params`` names none (the request-only baseline's,
            whose threshold is only reported).

    Returns:
        The threshold and the rule that set it.

    Raises:
        ThresholdRuleError: If the rule cannot be met and there is no fallback (or the
            fallback cannot be met either).
    """
    requested = params.threshold_rule
    try:
        threshold = _threshold_by(y_true, scores, requested, params)
        return OperatingPoint(threshold, requested, requested)
    except ThresholdRuleError as exc:
        rule = params.threshold_fallback or fallback
        if rule is None:
            raise ThresholdRuleError(
                exc.rule,
                f"{label}: {exc} (set train.threshold_fallback to fall back to another rule)",
                exc.best,
            ) from exc
        try:
            threshold = _threshold_by(y_true, scores, rule, params)
        except ThresholdRuleError as second:
            raise ThresholdRuleError(
                second.rule, f"{label}: {exc}; the fallback fails too: {second}", second.best
            ) from second
        return OperatingPoint(threshold, rule, requested, str(exc))


def review_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    point: OperatingPoint,
    params: TrainParams,
    label: str,
    lenient: bool = False,
) -> float:
    """The REVIEW band's lower end, by ``train.review_rule``, on the out-of-fold probabilities.

    ``alert_budget`` is the analysts' queue: the lowest threshold whose band (at or above it,
    below the FRAUD threshold) holds at most ``review_budget_per_1000`` of every 1,000
    transactions, the FRAUD ones not counted (they are blocked, not queued).
    ``min_precision`` is the lowest threshold at which everything flagged, FRAUD and REVIEW
    together, is still ``review_min_precision`` fraud.

    Args:
        y_true: 0/1 targets of the out-of-fold rows.
        scores: Their calibrated out-of-fold probabilities.
        point: The FRAUD operating point (the band sits below it).
        params: ``review_rule`` and its parameters.
        label: The model, named in the error.
        lenient: Give ``point.threshold`` (no band) instead of raising (the request-only
            baseline, whose thresholds are only reported).

    Returns:
        A threshold ``<= point.threshold``; ``point.threshold`` itself without a rule (no band).

    Raises:
        ThresholdRuleError: If the rule cannot be met (the budget is smaller than the ties of
            the band's top score; no threshold reaches the precision), or the precision rule's
            threshold is above the FRAUD threshold (the FRAUD alerts alone fall short of it),
            unless ``lenient``.
    """
    rule = params.review_rule
    if rule is None:
        return point.threshold
    scores = np.asarray(scores, float)
    fraud_at = point.threshold
    try:
        if rule == "alert_budget":
            below = scores[scores < fraud_at]
            if len(below) == 0:
                return fraud_at
            review = _budget_threshold(
                below,
                params.review_budget_per_1000,
                "train.review_rule",
                total=len(scores),
            )
        else:
            review = choose_threshold(
                y_true, scores, rule, params.review_min_precision, setting="train.review_rule"
            )
    except ThresholdRuleError as exc:
        if lenient:
            return fraud_at
        raise ThresholdRuleError(
            exc.rule, f"{label}: {exc} (or set train.review_rule: null)", exc.best
        ) from exc
    if review <= fraud_at:
        return review
    if lenient:
        return fraud_at
    fraud_precision = float(np.asarray(y_true)[scores >= fraud_at].mean())
    raise ThresholdRuleError(
        rule,
        f"{label}: train.review_rule min_precision: its threshold {review:.6g} is above the "
        f"FRAUD threshold {fraud_at:.6g} ({point.rule}): the FRAUD alerts alone are "
        f"{fraud_precision:.4f} fraud out of fold, short of review_min_precision "
        f"{params.review_min_precision:g}; lower it, or set train.review_rule: null",
        fraud_precision,
    )


def _band_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, review_at: float
) -> dict[str, float]:
    """The REVIEW band ``[review_at, threshold)`` alone, and FRAUD and REVIEW together."""
    from sklearn.metrics import precision_score, recall_score

    scores = np.asarray(scores)
    flagged = scores >= review_at
    band = flagged & (scores < threshold)
    return {
        "review_precision": float(y_true[band].mean()) if band.any() else 0.0,
        "review_alerts_per_1000": 1000 * float(band.mean()),
        "flagged_precision": float(precision_score(y_true, flagged.astype(int), zero_division=0)),
        "flagged_recall": float(recall_score(y_true, flagged.astype(int), zero_division=0)),
        "flagged_alerts_per_1000": 1000 * float(flagged.mean()),
    }


def score_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    amounts: np.ndarray | None = None,
    review_cost_per_alert: float = 0.0,
    review_at: float | None = None,
) -> dict[str, float]:
    """Ranking metrics and the metrics of the operating point ``scores >= threshold``.

    The cost-weighted figure is what a review queue at this threshold is worth: the fraud
    amount its alerts catch (``amount`` of every flagged fraud, taken as saved) minus
    ``review_cost_per_alert`` for every alert, per 1,000 transactions so that folds and
    holdouts of different sizes compare.

    Args:
        y_true: 0/1 targets (both classes present).
        scores: Predicted fraud probabilities.
        threshold: Decision threshold.
        amounts: Each row's transaction amount; without it the amounts count as 0.
        review_cost_per_alert: What reviewing one alert costs (``train.review_cost_per_alert``).
        review_at: The REVIEW band's lower end; ``threshold`` (no band) when ``None``.

    Returns:
        ``pr_auc`` (average precision), ``roc_auc``, ``precision``, ``recall``,
        ``recall_at_1pct_fpr``, ``alerts_per_1000`` and ``net_savings_per_1000`` (fraud amount
        caught minus review cost, per 1,000 transactions) at the FRAUD threshold;
        ``review_precision`` and ``review_alerts_per_1000`` of the REVIEW band alone (0
        without a band), ``flagged_precision``, ``flagged_recall`` and
        ``flagged_alerts_per_1000`` of FRAUD and REVIEW together.
    """
    from sklearn.metrics import (
        average_precision_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = np.asarray(y_true, int)
    flagged = np.asarray(scores) >= threshold
    values = np.zeros(len(y_true)) if amounts is None else np.asarray(amounts, float)
    caught = float(values[flagged & (y_true == 1)].sum())
    net = caught - review_cost_per_alert * int(flagged.sum())
    return {
        "pr_auc": float(average_precision_score(y_true, scores)),
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "precision": float(precision_score(y_true, flagged.astype(int), zero_division=0)),
        "recall": float(recall_score(y_true, flagged.astype(int), zero_division=0)),
        "recall_at_1pct_fpr": recall_at_fpr(y_true, scores),
        "alerts_per_1000": 1000 * float(flagged.mean()),
        "net_savings_per_1000": 1000 * net / len(y_true),
    } | _band_metrics(y_true, scores, threshold, threshold if review_at is None else review_at)


def decision_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    amounts: np.ndarray,
    review_cost_per_alert: float,
) -> dict[str, float]:
    """The review queue at a threshold in absolute figures: alerts, fraud caught, money.

    Returns:
        ``alerts``, ``frauds_caught``, ``fraud_amount`` (all fraud), ``fraud_amount_caught``,
        ``review_cost`` and ``net_savings`` (caught minus review cost).
    """
    y_true = np.asarray(y_true, int)
    flagged = np.asarray(scores) >= threshold
    values = np.asarray(amounts, float)
    caught = float(values[flagged & (y_true == 1)].sum())
    cost = review_cost_per_alert * int(flagged.sum())
    return {
        "alerts": float(flagged.sum()),
        "frauds_caught": float((flagged & (y_true == 1)).sum()),
        "fraud_amount": float(values[y_true == 1].sum()),
        "fraud_amount_caught": caught,
        "review_cost": cost,
        "net_savings": caught - cost,
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
        point: The rule that set it (``train.threshold_rule``, or its fallback).
        review_threshold: The REVIEW band's lower end (``train.review_rule``), ``<=
            threshold``; ``threshold`` itself when there is no band.
        fold_metrics: Metrics of each CV fold (at ``threshold``).
        cv_mean: Mean of each metric over the folds.
        cv_std: Standard deviation (population) of each metric over the folds.
        oof_scores: Calibrated out-of-fold probability of every training row.
        holdout: Metrics of the final model on the holdout (at ``threshold``).
        holdout_scores: Final model's (calibrated) probability of every holdout row.
        slices: Holdout metrics per slice (:func:`slice_metrics`).
        decision: The holdout's review queue at ``threshold`` (:func:`decision_metrics`).
        rule_points: Rule of :data:`REPORTED_RULES` -> its out-of-fold threshold and the
            holdout's precision, recall and alerts per 1,000 there (a rule no threshold
            meets is left out).
        seconds: Wall time of CV, calibration and refit.
    """

    kind: str
    model: ScoringModel
    features: list[str]
    threshold: float
    point: OperatingPoint
    review_threshold: float
    fold_metrics: list[dict[str, float]]
    cv_mean: dict[str, float]
    cv_std: dict[str, float]
    oof_scores: np.ndarray
    holdout: dict[str, float]
    holdout_scores: np.ndarray
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    decision: dict[str, float] = field(default_factory=dict)
    rule_points: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = field(default=0.0)

    @property
    def calibration(self) -> Calibration:
        """The raw score -> probability map fitted out of fold."""
        return self.model.calibration


def alerting_point(
    point: OperatingPoint,
    y_train: np.ndarray,
    oof: np.ndarray,
    holdout_scores: np.ndarray,
    params: TrainParams,
    label: str,
    fallback: str | None = None,
) -> OperatingPoint:
    """The operating point, checked to alert on the holdout at all.

    A rule met out of fold by a handful of top scores can set a threshold (near 1) that no
    holdout row reaches: a model that would never alert. That is an unmet rule too: the
    fallback (``train.threshold_fallback``, else ``fallback``) sets the threshold instead, or
    training fails.

    Args:
        point: The operating point chosen out of fold (:func:`operating_point`).
        y_train: 0/1 targets of the out-of-fold rows.
        oof: Their calibrated out-of-fold probabilities.
        holdout_scores: The final model's probabilities of the holdout rows.
        params: The rules' parameters and the fallback.
        label: The model, named in the error.
        fallback: The fallback when ``params`` names none (the baseline's).

    Returns:
        ``point`` when it flags at least one holdout row, else the fallback's point.

    Raises:
        ThresholdRuleError: If it flags no holdout row and there is no other rule to use (or
            that one flags none either).
    """
    if (holdout_scores >= point.threshold).any():
        return point
    reason = (
        f"{label}: train.threshold_rule {point.rule}: its out-of-fold threshold "
        f"{point.threshold:.6g} flags none of the {len(holdout_scores):,} holdout rows (the "
        f"highest holdout probability is {float(np.max(holdout_scores)):.6g})"
    )
    rule = params.threshold_fallback or fallback
    if rule is None or rule == point.rule:
        raise ThresholdRuleError(
            point.rule, f"{reason} (set train.threshold_fallback to fall back to another rule)", 0.0
        )
    threshold = _threshold_by(y_train, oof, rule, params)
    if not (holdout_scores >= threshold).any():
        raise ThresholdRuleError(rule, f"{reason}; the fallback {rule} flags none either", 0.0)
    return OperatingPoint(threshold, rule, point.requested, reason)


def fold_splits(
    train: pd.DataFrame, y_train: np.ndarray, params: TrainParams, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The CV folds of ``train``: ``(fit rows, validation rows)`` positions per fold.

    ``train.folds: by_card`` (the default) is ``StratifiedGroupKFold`` grouped by
    ``customer_id``: no card is in two folds. ``by_transaction`` is ``StratifiedKFold`` over
    rows. Both shuffle with ``seed``.

    Raises:
        TrainingError: If ``by_card`` and the rows carry no ``customer_id``, or fewer cards
            with a fraud than folds (a fold would have no fraud to score).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    k = params.k_folds
    if params.folds == "by_transaction":
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(len(y_train)), y_train))
    if CUSTOMER_ID not in train.columns:
        raise TrainingError(f"train.folds by_card: the training rows carry no {CUSTOMER_ID}")
    cards = train[CUSTOMER_ID].astype(str).to_numpy()
    defrauded = len(np.unique(cards[y_train == 1]))
    if defrauded < k:
        raise TrainingError(
            f"training part (before the holdout): {defrauded} card(s) with a fraud, fewer than "
            f"train.k_folds {k} folds grouped by card (train.folds by_card)"
        )
    grouped = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(grouped.split(np.zeros(len(y_train)), y_train, groups=cards))


def cross_validate_and_fit(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    features: Sequence[str],
    params: TrainParams,
    seed: int,
    progress: Progress = quiet,
    label: str = "model",
    kind: str = LINEAR,
    fallback: str | None = None,
) -> ModelResult:
    """K-fold CV on ``train`` (:func:`fold_splits`), calibration and thresholds on OOF, refit.

    Args:
        train: Earlier part of the training set (features and ``is_fraud``).
        holdout: Latest part, scored once by the final model.
        features: Columns the model uses, in order.
        params: ``k_folds``, the family's hyperparameters, calibration, threshold rule.
        seed: Seed of the fold split and of the estimator.
        progress: Where to report "fold k of n".
        label: Name in progress messages (the family, or ``baseline``).
        kind: The family (``train.models``).
        fallback: The rule used when ``train.threshold_rule`` cannot be met and
            ``train.threshold_fallback`` names none (the baseline's; ``None``: an error).

    Returns:
        The fitted, calibrated model with CV and holdout metrics.

    Raises:
        TrainingError: If a part lacks a class, a class has fewer rows than folds, or a
            monotone constraint names no model feature.
        ThresholdRuleError: If the threshold rule cannot be met on the out-of-fold scores
            and there is no fallback, or the review rule cannot be met (not for a model with
            ``fallback``: it then has no REVIEW band).
    """
    from sklearn.base import clone

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
    oof_raw = np.zeros(len(train), dtype=float)
    splits = fold_splits(train, y_train, params, seed)
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
    fitted = fit_estimator(kind, clone(template), x_train, y_train, fill)
    model = freeze(kind, fitted, features, fill, calibration)
    holdout_scores = model.predict_proba(holdout)[:, 1]

    point = operating_point(y_train, oof, params, label, fallback)
    point = alerting_point(point, y_train, oof, holdout_scores, params, label, fallback)
    if point.fell_back:
        progress(
            f"WARNING {label}: train.threshold_rule {point.requested} cannot be met, "
            f"falling back to {point.rule}: {point.fallback_reason}"
        )
    threshold = point.threshold
    review_at = review_threshold(y_train, oof, point, params, label, lenient=fallback is not None)
    cost = params.review_cost_per_alert
    train_amounts = _amounts(train)
    fold_metrics = [
        score_metrics(
            y_train[val_idx], oof[val_idx], threshold, train_amounts[val_idx], cost, review_at
        )
        for _, val_idx in splits
    ]
    cv_mean = {m: float(np.mean([f[m] for f in fold_metrics])) for m in METRIC_NAMES}
    cv_std = {m: float(np.std([f[m] for f in fold_metrics])) for m in METRIC_NAMES}
    holdout_amounts = _amounts(holdout)
    holdout_metrics = score_metrics(
        y_holdout, holdout_scores, threshold, holdout_amounts, cost, review_at
    )
    rule_points: dict[str, dict[str, float]] = {}
    for rule in REPORTED_RULES:
        try:
            at = _threshold_by(y_train, oof, rule, params)
        except ThresholdRuleError:
            continue
        reached = score_metrics(y_holdout, holdout_scores, at)
        rule_points[rule] = {"threshold": at} | {m: reached[m] for m in POINT_METRICS}
    seconds = time.perf_counter() - started
    progress(
        f"{label}: CV PR-AUC {cv_mean['pr_auc']:.4f} ± {cv_std['pr_auc']:.4f}, holdout PR-AUC "
        f"{holdout_metrics['pr_auc']:.4f}, precision {holdout_metrics['precision']:.3f} and "
        f"recall {holdout_metrics['recall']:.3f}, {holdout_metrics['alerts_per_1000']:.2f} "
        f"alerts per 1,000 at threshold {threshold:.4f} ({point.rule}); with REVIEW from "
        f"{review_at:.4f}: precision {holdout_metrics['flagged_precision']:.3f}, recall "
        f"{holdout_metrics['flagged_recall']:.3f}, {holdout_metrics['flagged_alerts_per_1000']:.2f}"
        f" alerts per 1,000 ({seconds:.1f} s)"
    )
    return ModelResult(
        kind=kind,
        model=model,
        features=list(features),
        threshold=threshold,
        point=point,
        review_threshold=review_at,
        fold_metrics=fold_metrics,
        cv_mean=cv_mean,
        cv_std=cv_std,
        oof_scores=oof,
        holdout=holdout_metrics,
        holdout_scores=holdout_scores,
        slices=slice_metrics(holdout, holdout_scores, threshold),
        decision=decision_metrics(y_holdout, holdout_scores, threshold, holdout_amounts, cost),
        rule_points=rule_points,
        seconds=seconds,
    )


def _amounts(frame: pd.DataFrame) -> np.ndarray:
    """The rows' transaction amounts (0 where a frame carries none, e.g. hand-made tests)."""
    if AMOUNT not in frame.columns:
        return np.zeros(len(frame))
    return frame[AMOUNT].to_numpy(dtype=float)


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
    # The baseline's threshold is only reported (it is never registered): when the rule is out
    # of its reach it reports at the best F1 rather than failing the run.
    baseline = cross_validate_and_fit(
        train, holdout, BASELINE_FEATURES, params, seed, progress, "baseline", fallback="best_f1"
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
        metrics[f"{prefix}review_threshold"] = result.review_threshold
        metrics[f"{prefix}threshold_fallback"] = float(result.point.fell_back)
        for name, value in result.decision.items():
            metrics[f"{prefix}holdout_{name}"] = value
        for rule, values in result.rule_points.items():
            for name, value in values.items():
                metrics[f"{prefix}holdout_at_{rule}_{name}"] = value
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
