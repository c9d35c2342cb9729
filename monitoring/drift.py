"""Drift statistics: pure functions over two frames, no I/O.

The reference is the training sample (``models/reference_sample.parquet``); the current window
is a slice of the prediction log. Every model feature gets one two-sample test:

- numerical features: the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``);
- categorical features (:data:`CATEGORICAL_FEATURES`: hour of day and the binary flags): a
  chi-square test of homogeneity on the reference/current contingency table of value counts
  (``scipy.stats.chi2_contingency``). KS assumes a continuous distribution, and on a 0/1 flag it
  answers a different question than "did the mix of values change".

A feature drifts when its p-value is below ``ks_p_value`` (``params.yaml: monitor``); the
dataset drifts when the share of drifted features is at least ``drift_share``. The model's
output (``probability``) is tested the same way but reported separately, never counted in the
share: prediction drift is a consequence of feature drift, not one more feature.

Which features are categorical is a fixed list, not a guess from the data: a window of 50 rows
has few distinct values of every count feature, and a test that changes with the window size
would make two reports incomparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform.contracts import (
    LABEL,
    LABEL_TIMESTAMP,
    PREDICTION_LOG_NON_FEATURES,
    PROBABILITY,
    THRESHOLD,
    TIMESTAMP,
    TRANSACTION_ID,
)

FeatureKind = Literal["numerical", "categorical"]

# The model's int features whose values are labels, not magnitudes: tested with chi-square.
CATEGORICAL_FEATURES: frozenset[str] = frozenset(
    {"hour_of_day", "is_night", "is_new_customer", "is_new_merchant"}
)

# Columns the reference sample and the prediction log carry besides the model features; any
# other column is reported as unexpected (a sign that the two come from different models).
REFERENCE_EXTRA_COLUMNS: frozenset[str] = frozenset({LABEL, PROBABILITY})
CURRENT_EXTRA_COLUMNS: frozenset[str] = PREDICTION_LOG_NON_FEATURES | {LABEL, LABEL_TIMESTAMP}


class DriftInputError(ValueError):
    """The reference or current frame cannot be compared; the message names the columns."""


@dataclass(frozen=True)
class ColumnDrift:
    """The two-sample test of one column.

    Attributes:
        column: Column name.
        kind: ``numerical`` (KS test) or ``categorical`` (chi-square test).
        test: ``ks`` or ``chi2``.
        statistic: KS distance, or the chi-square statistic.
        p_value: The test's p-value.
        drifted: Whether ``p_value`` is below the threshold.
        reference_rows: Non-null reference values tested.
        current_rows: Non-null current values tested.
    """

    column: str
    kind: FeatureKind
    test: str
    statistic: float
    p_value: float
    drifted: bool
    reference_rows: int
    current_rows: int


@dataclass(frozen=True)
class WindowPerformance:
    """Model quality on the labelled part of the current window.

    Attributes:
        labelled_rows: Rows of the window whose label was known.
        positives: Of which fraud.
        threshold: Decision threshold on ``probability``.
        pr_auc: Average precision (area under the PR curve); ``None`` without both classes.
        precision: Precision at the threshold; ``None`` when nothing was flagged.
        recall: Recall at the threshold; ``None`` without any fraud.
    """

    labelled_rows: int
    positives: int
    threshold: float
    pr_auc: float | None
    precision: float | None
    recall: float | None


@dataclass(frozen=True)
class DriftResult:
    """Everything one drift check found.

    Attributes:
        features: Per-feature tests, in the model's feature order.
        share_drifted: Share of features that drifted.
        dataset_drift: Whether ``share_drifted >= drift_share``.
        ks_p_value: Per-feature p-value threshold used.
        drift_share: Dataset-level threshold used.
        reference_rows: Rows in the reference.
        current_rows: Rows in the current window.
        min_rows: Window size below which the result comes with a warning.
        prediction: Test of the model's output, when both frames carry ``probability``.
        performance: Quality on the window's labelled rows, when there are any.
        warnings: Human-readable caveats (small window, missing labels, ...).
    """

    features: list[ColumnDrift]
    share_drifted: float
    dataset_drift: bool
    ks_p_value: float
    drift_share: float
    reference_rows: int
    current_rows: int
    min_rows: int
    prediction: ColumnDrift | None = None
    performance: WindowPerformance | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [f.column for f in self.features if f.drifted]

    def feature(self, name: str) -> ColumnDrift:
        """The test of one feature, by name.

        Raises:
            KeyError: If the feature was not tested.
        """
        for item in self.features:
            if item.column == name:
                return item
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``summary.json``)."""
        return {
            "dataset_drift": self.dataset_drift,
            "share_drifted": self.share_drifted,
            "n_features": len(self.features),
            "n_drifted": len(self.drifted_features),
            "drifted_features": self.drifted_features,
            "thresholds": {
                "ks_p_value": self.ks_p_value,
                "drift_share": self.drift_share,
                "min_rows": self.min_rows,
            },
            "rows": {"reference": self.reference_rows, "current": self.current_rows},
            "features": {f.column: _column_dict(f) for f in self.features},
            "prediction_drift": None if self.prediction is None else _column_dict(self.prediction),
            "performance": None if self.performance is None else asdict(self.performance),
            "warnings": list(self.warnings),
        }


def _column_dict(item: ColumnDrift) -> dict[str, Any]:
    data = asdict(item)
    del data["column"]
    return data


# ------------------------------------------------------------------------- features and columns


def model_features() -> list[str]:
    """The default service's feature names, in order (the outputs of its on-demand view)."""
    return list(SERVICE_TABLES[FEATURE_SERVICE_NAME].feature_names)


def service_features() -> dict[str, list[str]]:
    """Every feature service's feature names, in order, by service name."""
    return {service: list(table.feature_names) for service, table in SERVICE_TABLES.items()}


def reference_features(reference: pd.DataFrame) -> list[str]:
    """The features a reference sample was trained on: those of the service it matches.

    The reference sample holds exactly the features of the service its model was trained on
    (plus :data:`REFERENCE_EXTRA_COLUMNS`). A sample that matches no service is checked against
    the default service's features, so the error names what is missing or unexpected.

    Args:
        reference: The training reference sample.

    Returns:
        The matching service's feature names, in order.
    """
    columns = {str(c) for c in reference.columns} - REFERENCE_EXTRA_COLUMNS
    for names in service_features().values():
        if set(names) == columns:
            return names
    return model_features()


def logged_features() -> frozenset[str]:
    """Every feature any service serves: the prediction log has a column for each."""
    return frozenset(name for names in service_features().values() for name in names)


def feature_kinds(features: Iterable[str] | None = None) -> dict[str, FeatureKind]:
    """Which test each feature gets.

    Args:
        features: Feature names; the model's features by default.

    Returns:
        ``categorical`` for the names in :data:`CATEGORICAL_FEATURES`, ``numerical`` otherwise.
    """
    names = model_features() if features is None else list(features)
    return {
        name: ("categorical" if name in CATEGORICAL_FEATURES else "numerical") for name in names
    }


def check_columns(
    frame: pd.DataFrame,
    features: Sequence[str],
    allowed_extra: Iterable[str],
    *,
    name: str,
) -> None:
    """Check that a frame has every feature, as numbers, and no unexpected column.

    Args:
        frame: The frame to check.
        features: Feature columns it must hold.
        allowed_extra: Other columns it may hold.
        name: What the frame is (``reference`` or ``current``), for the message.

    Raises:
        DriftInputError: Naming the missing, unexpected, non-numeric or empty columns.
    """
    present = set(frame.columns)
    missing = [c for c in features if c not in present]
    allowed = set(features) | set(allowed_extra)
    extra = sorted(str(c) for c in frame.columns if c not in allowed)
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected columns: {', '.join(extra)}")
    if not problems:
        non_numeric = [
            c
            for c in features
            if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
        ]
        if non_numeric:
            problems.append(f"non-numeric columns: {', '.join(non_numeric)}")
        elif len(frame):
            empty = [c for c in features if frame[c].isna().all()]
            if empty:
                problems.append(f"columns with no values: {', '.join(empty)}")
    if not len(frame):
        problems.append("no rows")
    if problems:
        raise DriftInputError(f"{name}: {'; '.join(problems)}")


# ------------------------------------------------------------------------------------ the tests


def ks_test(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test, nulls dropped.

    Args:
        reference: Reference values.
        current: Current values.

    Returns:
        ``(statistic, p_value)`` of ``scipy.stats.ks_2samp`` (two-sided).
    """
    from scipy.stats import ks_2samp

    result = ks_2samp(_values(reference), _values(current))
    return float(result.statistic), float(result.pvalue)


def chi2_test(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Chi-square test of homogeneity of two samples of a categorical value, nulls dropped.

    The contingency table has one row per sample and one column per value seen in either;
    a value new in the current window is a column with a zero reference count.

    Args:
        reference: Reference values.
        current: Current values.

    Returns:
        ``(statistic, p_value)`` of ``scipy.stats.chi2_contingency``; ``(0.0, 1.0)`` when both
        samples hold one and the same value (nothing can have changed).
    """
    from scipy.stats import chi2_contingency

    ref_counts = pd.Series(_values(reference)).value_counts()
    cur_counts = pd.Series(_values(current)).value_counts()
    categories = ref_counts.index.union(cur_counts.index)
    if len(categories) < 2:
        return 0.0, 1.0
    table = np.vstack(
        [
            ref_counts.reindex(categories, fill_value=0).to_numpy(),
            cur_counts.reindex(categories, fill_value=0).to_numpy(),
        ]
    )
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def _values(series: pd.Series) -> np.ndarray:
    return series.dropna().astype(float).to_numpy()


def column_drift(
    reference: pd.Series, current: pd.Series, *, kind: FeatureKind, ks_p_value: float
) -> ColumnDrift:
    """Test one column for drift.

    Args:
        reference: Reference values (named after the column).
        current: Current values.
        kind: ``numerical`` (KS) or ``categorical`` (chi-square).
        ks_p_value: The column drifts when the p-value is below this.

    Returns:
        The test result.
    """
    if kind == "categorical":
        test, (statistic, p_value) = "chi2", chi2_test(reference, current)
    else:
        test, (statistic, p_value) = "ks", ks_test(reference, current)
    return ColumnDrift(
        column=str(reference.name),
        kind=kind,
        test=test,
        statistic=statistic,
        p_value=p_value,
        drifted=bool(p_value < ks_p_value),
        reference_rows=int(reference.notna().sum()),
        current_rows=int(current.notna().sum()),
    )


def window_performance(
    labels: pd.Series, probability: pd.Series, threshold: float
) -> WindowPerformance | None:
    """PR-AUC, precision and recall on the rows whose label is known.

    Args:
        labels: 0/1 labels, null where unknown.
        probability: Model scores, aligned with ``labels``.
        threshold: A row is flagged when its probability is at least this.

    Returns:
        The performance, or ``None`` when no row is labelled.
    """
    known = labels.notna() & probability.notna()
    if not known.any():
        return None
    y = labels[known].astype(int).to_numpy()
    p = probability[known].astype(float).to_numpy()
    flagged = p >= threshold
    positives = int(y.sum())
    true_pos = int((flagged & (y == 1)).sum())
    pr_auc: float | None = None
    if 0 < positives < len(y):
        from sklearn.metrics import average_precision_score

        pr_auc = float(average_precision_score(y, p))
    return WindowPerformance(
        labelled_rows=len(y),
        positives=positives,
        threshold=float(threshold),
        pr_auc=pr_auc,
        precision=true_pos / int(flagged.sum()) if flagged.any() else None,
        recall=true_pos / positives if positives else None,
    )


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    ks_p_value: float,
    drift_share: float,
    min_rows: int,
    features: Sequence[str] | None = None,
    threshold: float | None = None,
) -> DriftResult:
    """Compare the current window with the reference, feature by feature.

    Args:
        reference: Training reference sample: the features, optionally ``probability`` and
            ``is_fraud``.
        current: The window: the features, optionally ``probability``, ``threshold`` and
            ``is_fraud`` (null where the label is not known yet).
        ks_p_value: A feature drifts when its p-value is below this.
        drift_share: The dataset drifts when at least this share of features drift.
        min_rows: Fewer current rows than this adds a warning (the result is still computed).
        features: Features to test; by default those of the service the reference matches
            (:func:`reference_features`). The current window may also carry the other
            services' columns (the prediction log has one for every served feature).
        threshold: Decision threshold for the window's precision and recall; the window's own
            ``threshold`` column (its latest value) by default.

    Returns:
        The per-feature tests, the dataset verdict, prediction drift and window performance.

    Raises:
        DriftInputError: If a frame misses a feature or carries an unexpected column.
    """
    names = reference_features(reference) if features is None else list(features)
    check_columns(reference, names, REFERENCE_EXTRA_COLUMNS, name="reference")
    check_columns(current, names, CURRENT_EXTRA_COLUMNS | logged_features(), name="current")
    warnings: list[str] = []
    if len(current) < min_rows:
        warnings.append(
            f"small window: {len(current)} current rows < min_rows={min_rows}; "
            "the tests have little power and the verdict is unreliable"
        )
    kinds = feature_kinds(names)
    results = [
        column_drift(reference[n], current[n], kind=kinds[n], ks_p_value=ks_p_value) for n in names
    ]
    share = sum(r.drifted for r in results) / len(results) if results else 0.0
    return DriftResult(
        features=results,
        share_drifted=share,
        dataset_drift=bool(results) and share >= drift_share,
        ks_p_value=ks_p_value,
        drift_share=drift_share,
        reference_rows=len(reference),
        current_rows=len(current),
        min_rows=min_rows,
        prediction=prediction_drift(reference, current, ks_p_value, warnings),
        performance=labelled_performance(current, threshold, warnings),
        warnings=warnings,
    )


def prediction_drift(
    reference: pd.DataFrame, current: pd.DataFrame, ks_p_value: float, warnings: list[str]
) -> ColumnDrift | None:
    """The KS test of the model's output, outside the features' share.

    Args:
        reference: The reference sample.
        current: The window.
        ks_p_value: The output drifts when its p-value is below this.
        warnings: A caveat is appended when a frame has no ``probability``.

    Returns:
        The test, or ``None`` when a frame has no (non-null) ``probability``.
    """
    if PROBABILITY not in reference or PROBABILITY not in current:
        warnings.append("no prediction drift: 'probability' is missing from a frame")
        return None
    if not (reference[PROBABILITY].notna().any() and current[PROBABILITY].notna().any()):
        return None
    return column_drift(
        reference[PROBABILITY], current[PROBABILITY], kind="numerical", ks_p_value=ks_p_value
    )


def labelled_performance(
    current: pd.DataFrame, threshold: float | None, warnings: list[str]
) -> WindowPerformance | None:
    """PR-AUC, precision and recall of the window's labelled rows, at the decision threshold.

    Args:
        current: The window, with ``is_fraud`` where labels are known.
        threshold: The decision threshold; the window's own latest ``threshold`` if ``None``.
        warnings: Caveats are appended (no threshold, no labels).

    Returns:
        The performance, or ``None`` without labels or a threshold.
    """
    if threshold is None and THRESHOLD in current and current[THRESHOLD].notna().any():
        threshold = float(current[THRESHOLD].dropna().iloc[-1])
    performance = None
    if LABEL in current and PROBABILITY in current:
        if threshold is None:
            warnings.append("no precision/recall: no decision threshold known for the window")
        else:
            performance = window_performance(current[LABEL], current[PROBABILITY], threshold)
    if performance is None:
        warnings.append("no window performance: no labels known yet for the window")
    return performance


# ------------------------------------------------------------------------------ window selection


def select_window(
    frame: pd.DataFrame,
    *,
    last: int | None = None,
    since: datetime | None = None,
    time_column: str = TIMESTAMP,
) -> pd.DataFrame:
    """The current window: rows at or after ``since``, then the ``last`` latest of them.

    Rows are ordered by event time when the frame has ``time_column``, else kept in file order.

    Args:
        frame: The prediction log (or any frame of the features).
        last: Keep only this many latest rows.
        since: Keep rows whose event time is at or after this (naive means UTC).
        time_column: Event-time column.

    Returns:
        The selected rows, ordered by event time.

    Raises:
        DriftInputError: If ``since`` is given and the frame has no ``time_column``, or ``last``
            is not positive.
    """
    if last is not None and last <= 0:
        raise DriftInputError(f"--last must be a positive number of rows, got {last}")
    if time_column in frame:
        times = pd.to_datetime(frame[time_column], utc=True)
        frame = frame.assign(**{time_column: times}).sort_values(time_column, kind="stable")
        if since is not None:
            cutoff = pd.Timestamp(since)
            cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
            frame = frame[frame[time_column] >= cutoff]
    elif since is not None:
        raise DriftInputError(f"current: --since needs a '{time_column}' column")
    if last is not None:
        frame = frame.tail(last)
    return frame.reset_index(drop=True)


def join_labels(
    current: pd.DataFrame, labels: pd.DataFrame, *, as_of: datetime | None = None
) -> pd.DataFrame:
    """Attach the labels known at ``as_of`` to the window (``is_fraud``, null when unknown).

    Labels arrive late: a label whose ``label_timestamp`` is after ``as_of`` is not known yet
    and is left out, so a check rerun later on the same window sees more labels, never fewer.

    Args:
        current: The window; needs ``transaction_id``.
        labels: ``transaction_id``, ``is_fraud`` and optionally ``label_timestamp``.
        as_of: Cut-off for ``label_timestamp``; all labels when ``None``.

    Returns:
        ``current`` with an ``is_fraud`` column (a nullable integer).
    """
    if TRANSACTION_ID not in current or not {TRANSACTION_ID, LABEL} <= set(labels):
        return current
    known = labels
    if as_of is not None and LABEL_TIMESTAMP in labels:
        cutoff = pd.Timestamp(as_of)
        cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
        known = labels[pd.to_datetime(labels[LABEL_TIMESTAMP], utc=True) <= cutoff]
    known = known.drop_duplicates(TRANSACTION_ID, keep="last").set_index(TRANSACTION_ID)
    base = current.drop(columns=[LABEL, LABEL_TIMESTAMP], errors="ignore")
    mapped = base[TRANSACTION_ID].map(known[LABEL])
    return base.assign(**{LABEL: mapped.astype("Int64")})


def finite_or_none(value: float | None) -> float | None:
    """``value``, or ``None`` when it is NaN or infinite (JSON and MLflow reject those)."""
    if value is None or not math.isfinite(value):
        return None
    return value
