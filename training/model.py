"""The model seam: which estimator is fitted, on which columns, how a fitted one explains itself.

Today's model is a class-balanced logistic regression on standardised features
(:func:`build_model`), unknown values (NaN: no history, see ``feature_repo/logic.py``) imputed
by the training mean, and its explanation is its coefficient table (:func:`coefficient_table`:
on standardised inputs a coefficient is the change in log-odds per standard deviation, so
magnitudes compare). The baseline is the same estimator on :data:`BASELINE_FEATURES` only.

Adding a model (a gradient-boosted one, say) happens here and in two known places:

* here: its builder beside :func:`build_model` (an unfitted scikit-learn estimator with
  ``predict_proba``; CV, threshold choice and holdout in :mod:`training.evaluation` take any
  such estimator) and its explanation beside :func:`coefficient_table` (a table logged with
  the run);
* ``serving/model.py``: :class:`~serving.model.ModelBundle` scores the registered pipeline with
  its fitted parameters and explains by coefficient times standardised value, so a new model
  family needs its own bundle there (it refuses anything but the LR pipeline today);
* a calibrated threshold is a change of ``choose_threshold`` in :mod:`training.evaluation`;
  the threshold travels to serving as a registry tag (:class:`fraud_platform.contracts.ModelTags`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from fraud_platform.settings import TrainParams

# The baseline model sees only what the request itself carries (no stored state). Both are
# outputs of the same feature service, taken from the retrieved frame, never recomputed here.
BASELINE_FEATURES: tuple[str, ...] = ("log_amount", "hour_of_day")
# Types the registered model's skops file holds beyond scikit-learn's own (the imputer keeps
# the dtype it was fit on); MLflow refuses to log, and to load, anything not trusted here.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = ("numpy.dtype",)


def build_model(params: TrainParams, seed: int) -> Pipeline:
    """The model: mean-imputed, standardised features into a class-balanced logistic regression.

    An unknown feature (NaN: a card without history has no gap, speed, baseline or home) is
    imputed with its training mean, so it contributes nothing either way; what "no history"
    means is learnt from ``is_new_customer``. The API's scorer does the same arithmetic
    (``serving/model.py``: NaN standardises to 0).

    Args:
        params: ``C`` and ``max_iter`` come from here.
        seed: ``random_state`` of the regression.

    Returns:
        An unfitted scikit-learn pipeline.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
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


def model_matrix(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The model's input: ``features`` in order, as float64 (the logged signature's type)."""
    return frame.loc[:, list(features)].astype("float64")


def coefficient_table(model: Pipeline, features: Sequence[str]) -> pd.DataFrame:
    """Coefficients of the logistic regression per feature, largest magnitude first.

    Features are standardised before the regression, so a coefficient is the change in
    log-odds per standard deviation of the feature and magnitudes are comparable.

    Args:
        model: A fitted pipeline of :func:`build_model`.
        features: Its input columns, in order.

    Returns:
        Columns ``feature``, ``coefficient``, ``abs_coefficient``, ``scaler_mean``,
        ``scaler_std``; the intercept is the last row.
    """
    scaler = model.named_steps["scale"]
    regression = model.named_steps["classify"]
    table = pd.DataFrame(
        {
            "feature": list(features),
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
