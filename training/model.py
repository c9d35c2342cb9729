"""The model seam: which estimators are fitted, how a fitted one is frozen and explained.

Two families (``train.models`` in ``params.yaml`` picks which are trained):

* ``logistic_regression``: standardised features into a class-balanced logistic regression,
  the interpretable baseline (its coefficient table, :func:`coefficient_table`, is logged);
* ``lightgbm``: gradient-boosted trees. LightGBM rather than scikit-learn's
  HistGradientBoosting because it gives exact TreeSHAP contributions natively
  (``pred_contrib=True``, no extra package, microseconds per row), takes NaN natively and
  trains a million rows in seconds on two cores.

:func:`build_estimator` gives an unfitted scikit-learn estimator (CV clones it per fold);
:func:`freeze` turns a fitted one into the registered
:class:`~fraud_platform.scoring_model.ScoringModel`, whose raw score, exact explanation and
calibrated probability training and serving share; :func:`fit_calibration` fits the
out-of-fold calibration. The request-only baseline is the logistic regression on
:data:`BASELINE_FEATURES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraud_platform.scoring_model import (
    LINEAR,
    TREES,
    Calibration,
    LinearModel,
    ScoringModel,
    TreeModel,
)

if TYPE_CHECKING:
    from fraud_platform.settings import TrainParams

# The baseline model sees only what the request itself carries (no stored state). Both are
# outputs of the same feature service, taken from the retrieved frame, never recomputed here.
BASELINE_FEATURES: tuple[str, ...] = ("log_amount", "hour_of_day")


def build_estimator(kind: str, params: TrainParams, seed: int, features: Sequence[str] = ()) -> Any:
    """An unfitted estimator of one family, configured from ``params.yaml``.

    Args:
        kind: ``logistic_regression`` or ``lightgbm`` (``train.models``).
        params: The family's section (``train.logistic_regression``, ``train.lightgbm``).
        seed: Seed of the estimator's randomness.
        features: The input columns in order: where ``train.lightgbm.monotone_increasing``
            puts its constraints (none when empty).

    Returns:
        A scikit-learn estimator (``fit``; :func:`freeze` reads the fitted one).

    Raises:
        ValueError: For an unknown family (``load_params`` rejects those first).
    """
    if kind == LINEAR:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        linear = params.logistic_regression
        return Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "classify",
                    LogisticRegression(
                        class_weight="balanced",  # fraud is rare: weigh classes equally
                        C=linear.C,
                        max_iter=linear.max_iter,
                        random_state=seed,
                    ),
                ),
            ]
        )
    if kind == TREES:
        from lightgbm import LGBMClassifier

        trees = params.lightgbm
        unknown = sorted(set(trees.monotone_increasing) - set(features)) if features else []
        if unknown:
            raise ValueError(f"train.lightgbm.monotone_increasing: not model features: {unknown}")
        increasing = set(trees.monotone_increasing)
        return LGBMClassifier(
            monotone_constraints=[1 if name in increasing else 0 for name in features] or None,
            objective="binary",
            n_estimators=trees.n_estimators,
            learning_rate=trees.learning_rate,
            num_leaves=trees.num_leaves,
            min_child_samples=trees.min_child_samples,
            subsample=trees.subsample,
            subsample_freq=1 if trees.subsample < 1 else 0,  # bagging needs a frequency
            colsample_bytree=trees.colsample_bytree,
            reg_lambda=trees.reg_lambda,
            random_state=seed,
            deterministic=True,  # same data, params and seed: the same trees
            force_row_wise=True,  # required by deterministic, and the faster layout here
            verbose=-1,
        )
    raise ValueError(f"train.models: unknown model {kind!r}")


def fit_estimator(
    kind: str, estimator: Any, x: pd.DataFrame, y: np.ndarray, fill: np.ndarray
) -> Any:
    """Fit ``estimator`` (of family ``kind``) on a float64 matrix; returns it fitted.

    Unknown values (NaN: no history, ``feature_repo/derived.py``) are treated as the frozen
    model treats them when it scores (``ScoringModel.fills_unknown``): the regression sees
    them at ``fill`` (the training mean), LightGBM sees NaN and learns a branch for it.

    Args:
        kind: The family.
        estimator: An unfitted estimator of :func:`build_estimator`.
        x: The model matrix (:func:`model_matrix`).
        y: 0/1 targets.
        fill: Training mean of each feature, in ``x``'s column order.

    Returns:
        The fitted estimator.
    """
    if kind == TREES:
        return estimator.fit(x.to_numpy(dtype=float), y)  # no column names: the booster's order
    return estimator.fit(x.fillna(dict(zip(x.columns, fill, strict=True))), y)


def freeze(
    kind: str,
    fitted: Any,
    features: Sequence[str],
    fill: np.ndarray,
    calibration: Calibration | None = None,
) -> ScoringModel:
    """The registered form of a fitted estimator of :func:`build_estimator`.

    Args:
        kind: Its family.
        fitted: The fitted estimator.
        features: Its input columns, in order.
        fill: Training mean of each feature (the value of an unknown one).
        calibration: Fitted calibration; the plain sigmoid when ``None``.

    Returns:
        A :class:`~fraud_platform.scoring_model.ScoringModel`.
    """
    if kind == TREES:
        return TreeModel.from_booster(fitted.booster_, features, fill, calibration)
    return LinearModel.from_pipeline(fitted, features, calibration, fill)


def fit_calibration(y_true: np.ndarray, raw: np.ndarray, method: str) -> Calibration:
    """Fit the raw score -> probability map on out-of-fold raw scores.

    Args:
        y_true: 0/1 targets of the out-of-fold rows.
        raw: Their out-of-fold raw scores (log-odds; no row scored by a model that saw it).
        method: ``platt`` or ``isotonic``.

    Returns:
        The calibration.

    Raises:
        ValueError: For an unknown method (``load_params`` rejects those first).
    """
    raw = np.asarray(raw, dtype=float)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # Unregularised (huge C), unweighted: the probabilities of the real class balance.
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y_true)
        return Calibration("platt", float(platt.coef_[0, 0]), float(platt.intercept_[0]))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        isotonic.fit(raw, y_true)
        return Calibration(
            "isotonic",
            x=tuple(float(v) for v in isotonic.X_thresholds_),
            y=tuple(float(v) for v in isotonic.y_thresholds_),
        )
    raise ValueError(f"train.calibration: unknown method {method!r}")


def model_matrix(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The model's input: ``features`` in order, as float64 (the logged signature's type)."""
    return frame.loc[:, list(features)].astype("float64")


def coefficient_table(model: LinearModel) -> pd.DataFrame:
    """Coefficients of the logistic regression per feature, largest magnitude first.

    Features are standardised before the regression, so a coefficient is the change in
    log-odds per standard deviation of the feature and magnitudes are comparable.

    Args:
        model: A frozen logistic regression (:func:`freeze`).

    Returns:
        Columns ``feature``, ``coefficient``, ``abs_coefficient``, ``scaler_mean``,
        ``scaler_std``; the intercept is the last row.
    """
    table = pd.DataFrame(
        {
            "feature": list(model.features),
            "coefficient": model.coef,
            "scaler_mean": model.mean,
            "scaler_std": model.scale,
        }
    )
    table["abs_coefficient"] = table["coefficient"].abs()
    table = table.sort_values("abs_coefficient", ascending=False, kind="stable")
    intercept = pd.DataFrame([{"feature": "(intercept)", "coefficient": model.intercept}])
    intercept["abs_coefficient"] = intercept["coefficient"].abs()
    columns = ["feature", "coefficient", "abs_coefficient", "scaler_mean", "scaler_std"]
    return pd.concat([table, intercept], ignore_index=True)[columns]


def contribution_table(model: ScoringModel, rows: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute contribution of each feature over ``rows``, largest first.

    The same exact contributions the API explains with (TreeSHAP for trees, coefficient x
    standardised value for the regression), averaged: a global importance in log-odds.

    Args:
        model: A frozen model.
        rows: Rows with the model's features (the holdout, say).

    Returns:
        Columns ``feature``, ``mean_abs_contribution``, ``mean_contribution``.
    """
    contributions = model.contributions(rows)[:, :-1]
    table = pd.DataFrame(
        {
            "feature": list(model.features),
            "mean_abs_contribution": np.abs(contributions).mean(axis=0),
            "mean_contribution": contributions.mean(axis=0),
        }
    )
    return table.sort_values("mean_abs_contribution", ascending=False, kind="stable")
