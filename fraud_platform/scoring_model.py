"""The registered model: what training fits and logs, and what the API loads and serves.

One object per registered version, pickled by MLflow's sklearn flavour (``predict_proba``
for pyfunc), holding everything a consumer needs to turn feature values into a decision and
its explanation, with the arithmetic written once:

1. **Unknown values.** A feature without the history it needs (a new card's gap, speed,
   baseline and home) or that the online state cannot answer exactly
   (``merchant_fraud_rate_30d``) is NaN, offline and online alike (``feature_repo/derived.py``).
   The regression takes it at its training mean (:attr:`ScoringModel.fill`), in training and
   in serving, so it moves a linear score by nothing; LightGBM keeps it NaN, in training and
   in serving, and routes it down the branch it learnt for "missing"
   (:attr:`ScoringModel.fills_unknown`).
2. **Raw score**: the model's log-odds, and its **exact additive explanation**:
   ``raw = base + sum(contributions)``.

   * :class:`LinearModel` (class-balanced logistic regression on standardised inputs):
     contribution = coefficient x standardised value; base = the intercept.
   * :class:`TreeModel` (LightGBM): TreeSHAP values from LightGBM's own
     ``pred_contrib=True`` (exact Shapley values of the tree ensemble); base = the expected
     raw score over the training data (LightGBM's last ``pred_contrib`` column).
3. **Probability**: the raw score through the :class:`Calibration` fitted out of fold, so a
   served probability of 0.2 means about one fraud in five such transactions, and the
   threshold (a registry tag) is on that same scale.

This module lives on the ground floor because it is a contract between two steps: training
(``training/model.py`` builds and fits these) and serving (``serving/model.py`` serves them)
never import each other.

**Plain form.** Besides MLflow's artifact (skops, whose loader imports scikit-learn and SciPy:
~100 MiB in every API process), a model is logged as its parameters in JSON
(:func:`to_plain`, :data:`PLAIN_FILE` among the model's extra files), which :func:`from_plain`
reads back with numpy alone (and LightGBM for trees): the same object, the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


LINEAR = "logistic_regression"
TREES = "lightgbm"


@dataclass(frozen=True)
class Calibration:
    """Raw log-odds -> calibrated probability, fitted on out-of-fold scores.

    Attributes:
        method: ``platt`` (``sigmoid(slope * raw + intercept)``: monotone, keeps the ranking),
            ``isotonic`` (linear interpolation through ``x``/``y``, clipped at the ends, as
            scikit-learn's ``IsotonicRegression.predict``) or ``none`` (the plain sigmoid).
        slope: Platt's slope.
        intercept: Platt's intercept.
        x: Isotonic knots (raw scores, ascending).
        y: Isotonic probabilities at the knots.
    """

    method: str = "none"
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw log-odds (any shape)."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            return np.interp(raw, self.x, self.y)
        z = self.slope * raw + self.intercept
        # exp of -|z| never overflows: the two branches of the logistic function.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def apply_one(self, raw: float) -> float:
        """:meth:`apply` for one score, without array overhead (the API's path)."""
        if self.method == "isotonic":
            return float(np.interp(raw, self.x, self.y))
        z = self.slope * raw + self.intercept
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


@dataclass(frozen=True, eq=False)
class ScoringModel:
    """Shared part of every model family: inputs, unknown values, calibration, probability.

    Attributes:
        kind: The family (``logistic_regression`` or ``lightgbm``).
        features: Input columns, in order (names of the feature service).
        fill: Value an unknown (NaN) feature is taken at: its training mean.
        calibration: Raw score -> probability.
    """

    kind: str
    features: tuple[str, ...]
    fill: np.ndarray
    calibration: Calibration
    # Whether NaN is replaced by ``fill`` before scoring; trees take NaN natively.
    fills_unknown: ClassVar[bool] = True

    # ---------------------------------------------------------------- batch (training, pyfunc)

    def matrix(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Rows as a float64 matrix in feature order, unknown values at their fill (linear)."""
        if hasattr(rows, "loc"):
            rows = rows.loc[:, list(self.features)]
        x = np.array(rows, dtype=float)  # a copy: filled below
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} feature columns, got {x.shape}")
        unknown = np.isnan(x)
        if self.fills_unknown and unknown.any():
            x[unknown] = np.broadcast_to(self.fill, x.shape)[unknown]
        return x

    def contributions(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw score, base value last: shape (n, k + 1)."""
        return self._contributions(self.matrix(rows))

    def raw_score(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The model's log-odds of fraud per row (before calibration)."""
        return self._raw(self.matrix(rows))

    def predict_proba(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probabilities, scikit-learn style: column 1 is fraud."""
        fraud = self.calibration.apply(self.raw_score(rows))
        return np.column_stack([1.0 - fraud, fraud])

    # ---------------------------------------------------------------- one row (the API)

    def vector(self, values: Mapping[str, Any]) -> np.ndarray:
        """One request's feature values in order; None (unknown) becomes NaN."""
        return np.fromiter(
            (math.nan if (v := values[name]) is None else float(v) for name in self.features),
            float,
            len(self.features),
        )

    def score_row(self, x: np.ndarray) -> tuple[float, np.ndarray, float]:
        """Probability, contributions and base value of one row (NaN: unknown).

        Returns:
            ``(probability, contributions, base)`` with ``base + contributions.sum()`` the
            raw score the probability was calibrated from.
        """
        both = self.contributions(x[np.newaxis, :])[0]
        contributions, base = both[:-1], float(both[-1])
        return self.calibration.apply_one(base + float(contributions.sum())), contributions, base

    def trusted_types(self) -> list[str]:
        """The types MLflow's skops format must trust to load this object (nothing else).

        Logged with the model (``skops_trusted_types``), so the registry's loader accepts
        exactly these classes and the library types their state holds.
        """
        return [_qualified(type(self)), _qualified(Calibration), *self._state_types()]

    # ---------------------------------------------------------------- per family

    def _state_types(self) -> list[str]:
        return []

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _raw(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._contributions(x).sum(axis=1), dtype=float)


@dataclass(frozen=True, eq=False)
class LinearModel(ScoringModel):
    """Logistic regression on standardised inputs, written out as its parameters.

    Attributes:
        mean: Standardisation mean per feature.
        scale: Standardisation scale per feature (1 where the training values were constant).
        coef: Regression coefficient per feature (log-odds per standard deviation).
        intercept: The regression's intercept (the base value).
    """

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0

    @classmethod
    def from_pipeline(
        cls,
        pipeline: Any,
        features: Sequence[str],
        calibration: Calibration | None = None,
        fill: np.ndarray | None = None,
    ) -> LinearModel:
        """Freeze a fitted ``Pipeline(StandardScaler, LogisticRegression)``.

        Args:
            pipeline: The fitted pipeline (two steps, in that order).
            features: Its input columns, in order.
            calibration: Fitted calibration; the plain sigmoid of the log-odds when ``None``.
            fill: Value of an unknown feature; the scaler's mean (the training mean) if None.

        Returns:
            The frozen model.

        Raises:
            ValueError: If the pipeline is not those two steps or its shapes do not match.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        steps = [step for _, step in getattr(pipeline, "steps", [])]
        if (
            len(steps) != 2
            or not isinstance(steps[0], StandardScaler)
            or not isinstance(steps[1], LogisticRegression)
        ):
            raise ValueError("expected Pipeline(StandardScaler, LogisticRegression)")
        scaler, regression = steps
        k = len(features)
        if scaler.n_features_in_ != k or regression.coef_.shape != (1, k):
            raise ValueError(f"{k} features do not match the fitted shape")
        mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(k), float)
        scale = (
            np.ones(k) if not scaler.with_std else np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
        )
        return cls(
            kind=LINEAR,
            features=tuple(features),
            fill=mean.copy() if fill is None else np.asarray(fill, float),
            calibration=calibration or Calibration(),
            mean=mean,
            scale=np.asarray(scale, float),
            coef=np.asarray(regression.coef_[0], float),
            intercept=float(regression.intercept_[0]),
        )

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        contributions = self.coef * (x - self.mean) / self.scale
        base = np.full((len(x), 1), self.intercept)
        return np.hstack([contributions, base])

    def score_row(self, x: np.ndarray) -> tuple[float, np.ndarray, float]:
        """:meth:`ScoringModel.score_row` as one dot product (no matrix, no array allocation)."""
        standardized = (x - self.mean) / self.scale
        # An unknown value is taken at the training mean: standardised 0, contribution 0.
        contributions = self.coef * np.where(np.isnan(standardized), 0.0, standardized)
        raw = float(contributions.sum()) + self.intercept
        return self.calibration.apply_one(raw), contributions, self.intercept


@dataclass(frozen=True, eq=False)
class TreeModel(ScoringModel):
    """Gradient-boosted trees (a LightGBM booster, binary objective).

    Attributes:
        booster: The fitted ``lightgbm.Booster``.
    """

    booster: Any = None
    fills_unknown: ClassVar[bool] = False  # trained on NaN: the booster's learnt missing branch

    @classmethod
    def from_booster(
        cls,
        booster: Any,
        features: Sequence[str],
        fill: np.ndarray,
        calibration: Calibration | None = None,
    ) -> TreeModel:
        """Freeze a fitted LightGBM booster.

        Raises:
            ValueError: If the booster's input width is not the number of features.
        """
        if booster.num_feature() != len(features):
            raise ValueError(
                f"{len(features)} features do not match the fitted shape "
                f"({booster.num_feature()} in the booster)"
            )
        return cls(
            kind=TREES,
            features=tuple(features),
            fill=np.asarray(fill, float),
            calibration=calibration or Calibration(),
            booster=booster,
        )

    def _state_types(self) -> list[str]:
        # The booster pickles as its model text plus an ordered dict of its parameters.
        return [_qualified(type(self.booster)), "collections.OrderedDict"]

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        # One row at a time comes from the API: one thread avoids OpenMP's start-up cost.
        threads = 1 if len(x) < 1_000 else 0
        return np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=threads))

    def _raw(self, x: np.ndarray) -> np.ndarray:
        threads = 1 if len(x) < 1_000 else 0
        return np.asarray(self.booster.predict(x, raw_score=True, num_threads=threads), float)


PLAIN_FILE = "scorer.json"  # the plain form's file name (an extra file of the logged model)
_PLAIN_FORMAT = 1


def to_plain(model: ScoringModel) -> dict[str, Any]:
    """The model as JSON-ready parameters (floats exact: JSON keeps Python's ``repr``).

    Raises:
        TypeError: A model of another family.
    """
    common: dict[str, Any] = {
        "format": _PLAIN_FORMAT,
        "kind": model.kind,
        "features": list(model.features),
        "fill": [float(v) for v in model.fill],
        "calibration": asdict(model.calibration),
    }
    if isinstance(model, LinearModel):
        return common | {
            "mean": model.mean.tolist(),
            "scale": model.scale.tolist(),
            "coef": model.coef.tolist(),
            "intercept": model.intercept,
        }
    if isinstance(model, TreeModel):
        return common | {"booster": model.booster.model_to_string()}
    raise TypeError(f"no plain form for {type(model).__name__}")


def from_plain(plain: Mapping[str, Any]) -> ScoringModel:
    """Rebuild a model from :func:`to_plain`'s parameters (no scikit-learn, no skops).

    Raises:
        ValueError: An unknown format or family, or a missing parameter.
    """
    try:
        if plain["format"] != _PLAIN_FORMAT:
            raise ValueError(f"plain model format {plain['format']!r} is not {_PLAIN_FORMAT}")
        calibration = plain["calibration"]
        common: dict[str, Any] = {
            "features": tuple(plain["features"]),
            "fill": np.asarray(plain["fill"], float),
            "calibration": Calibration(
                method=calibration["method"],
                slope=float(calibration["slope"]),
                intercept=float(calibration["intercept"]),
                x=tuple(calibration["x"]),
                y=tuple(calibration["y"]),
            ),
        }
        if plain["kind"] == LINEAR:
            return LinearModel(
                kind=LINEAR,
                mean=np.asarray(plain["mean"], float),
                scale=np.asarray(plain["scale"], float),
                coef=np.asarray(plain["coef"], float),
                intercept=float(plain["intercept"]),
                **common,
            )
        if plain["kind"] == TREES:
            import lightgbm

            booster = lightgbm.Booster(model_str=plain["booster"])
            return TreeModel.from_booster(
                booster, common["features"], common["fill"], common["calibration"]
            )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"plain model incomplete: {exc!r}") from exc
    raise ValueError(f"plain model of unknown family {plain['kind']!r}")
