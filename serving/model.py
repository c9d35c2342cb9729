"""The served model: loaded from the MLflow registry by alias, swapped atomically.

A :class:`ModelBundle` is immutable; :class:`ModelHolder` keeps the current one in a single
attribute, so a request reads one consistent bundle and a swap is one reference assignment
(atomic under the GIL): in-flight requests finish on the bundle they started with.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

EXPLANATION_SIZE = 5


class ModelLoadError(RuntimeError):
    """The registry has no usable model under the alias; the message says why."""


@dataclass(frozen=True)
class ModelBundle:
    """One registered version of the (StandardScaler, LogisticRegression) pipeline.

    Scoring uses the fitted parameters directly (one dot product, no DataFrame): the same
    arithmetic as ``pipeline.predict_proba`` (checked at load), and the per-feature
    contributions of the explanation come out of it for free.
    """

    name: str
    version: str
    run_id: str
    threshold: float
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def score(self, values: Mapping[str, Any]) -> tuple[float, np.ndarray, np.ndarray]:
        """Probability of fraud, the raw feature vector and each feature's contribution.

        Args:
            values: Feature name -> value; must hold every feature of the model.

        Returns:
            ``(probability, x, contributions)``; contributions are coef × standardized value.
            An unknown feature (NaN, see ``merchant_fraud_rate_30d``) is taken at its training
            mean: standardized value 0, so it contributes nothing either way.
        """
        x = np.fromiter(
            (math.nan if (v := values[name]) is None else float(v) for name in self.features),
            float,
            len(self.features),
        )
        standardized = (x - self.mean) / self.scale
        contributions = self.coef * np.where(np.isnan(standardized), 0.0, standardized)
        logit = float(contributions.sum()) + self.intercept
        if logit >= 0:
            probability = 1.0 / (1.0 + math.exp(-logit))
        else:
            e = math.exp(logit)
            probability = e / (1.0 + e)
        return probability, x, contributions

    def explain(self, x: np.ndarray, contributions: np.ndarray) -> list[dict[str, Any]]:
        """The top features by absolute contribution."""
        top = np.argsort(-np.abs(contributions), kind="stable")[:EXPLANATION_SIZE]
        return [
            {
                "feature": self.features[i],
                "value": None if math.isnan(x[i]) else float(x[i]),
                "contribution": float(contributions[i]),
            }
            for i in top
        ]


def bundle_from_pipeline(
    pipeline: Any, name: str, version: str, run_id: str, tags: Mapping[str, str]
) -> ModelBundle:
    """Check a loaded pipeline and its version tags, and freeze it into a bundle.

    Raises:
        ModelLoadError: If the pipeline is not StandardScaler + LogisticRegression or a tag is
            missing or malformed.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in getattr(pipeline, "steps", [])]
    if (
        len(steps) != 2
        or not isinstance(steps[0], StandardScaler)
        or not isinstance(steps[1], LogisticRegression)
    ):
        raise ModelLoadError(f"{name} v{version}: expected Pipeline(StandardScaler, LogReg)")
    try:
        threshold = float(tags["threshold"])
        features = tuple(f.strip() for f in tags["features"].split(",") if f.strip())
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(f"{name} v{version}: bad or missing tag: {exc}") from exc
    if not 0.0 <= threshold <= 1.0 or not features:
        raise ModelLoadError(f"{name} v{version}: threshold {threshold} or features invalid")
    scaler, logreg = steps
    if len(features) != scaler.mean_.shape[0] or logreg.coef_.shape != (1, len(features)):
        raise ModelLoadError(f"{name} v{version}: tag features do not match the fitted shape")
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_) if scaler.with_std else None
    bundle = ModelBundle(
        name=name,
        version=str(version),
        run_id=run_id or "",
        threshold=threshold,
        features=features,
        mean=np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(len(features)), float),
        scale=np.asarray(scale if scale is not None else np.ones(len(features)), float),
        coef=np.asarray(logreg.coef_[0], float),
        intercept=float(logreg.intercept_[0]),
    )
    # Guard the hand-written arithmetic against the pipeline itself on a probe row.
    import pandas as pd

    probe = {f: float(i + 1) for i, f in enumerate(features)}
    expected = float(pipeline.predict_proba(pd.DataFrame([probe], columns=list(features)))[0, 1])
    if not math.isclose(bundle.score(probe)[0], expected, rel_tol=1e-9, abs_tol=1e-12):
        raise ModelLoadError(f"{name} v{version}: scoring does not reproduce predict_proba")
    return bundle


def load_by_alias(tracking_uri: str, name: str, alias: str) -> ModelBundle:
    """Load ``models:/<name>@<alias>`` (by the version the alias points at now).

    Raises:
        ModelLoadError: If the alias is missing or the model unusable.
    """
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        pipeline = mlflow.sklearn.load_model(f"models:/{name}/{version.version}")
    except MlflowException as exc:
        raise ModelLoadError(f"models:/{name}@{alias}: {exc.message}") from exc
    return bundle_from_pipeline(
        pipeline, name, str(version.version), version.run_id or "", version.tags
    )


def current_version(tracking_uri: str, name: str, alias: str) -> str:
    """The version number the alias points at right now (cheap registry call)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return str(client.get_model_version_by_alias(name, alias).version)


class ModelHolder:
    """Holds the current bundle; a daemon thread polls the alias and swaps on change."""

    def __init__(
        self,
        load: Callable[[], ModelBundle],
        version_now: Callable[[], str],
        service_features: Sequence[str],
        poll_seconds: float,
    ) -> None:
        """Set up; nothing is loaded until :meth:`start`.

        Args:
            load: Loads the bundle the alias points at.
            version_now: The version the alias points at (cheap).
            service_features: Features the feature service provides; a model asking for
                anything else is refused (the old model keeps serving).
            poll_seconds: Seconds between alias checks.
        """
        self._load = load
        self._version_now = version_now
        self._service_features = frozenset(service_features)
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bundle: ModelBundle | None = None
        self.last_error: str | None = None

    def refresh(self) -> bool:
        """Load the alias's version if it differs from the current one.

        Returns:
            Whether a new bundle was swapped in.
        """
        try:
            current = self.bundle
            if current is not None and self._version_now() == current.version:
                return False
            bundle = self._load()
            missing = [f for f in bundle.features if f not in self._service_features]
            if missing:
                raise ModelLoadError(f"model wants features the service lacks: {missing}")
        except Exception as exc:  # the registry may be down: keep serving the old model
            self.last_error = str(exc)
            logger.warning("model refresh failed: %s", exc)
            return False
        self.bundle = bundle  # the atomic swap
        self.last_error = None
        logger.info("serving %s version %s (run %s)", bundle.name, bundle.version, bundle.run_id)
        return True

    def start(self) -> None:
        """Load once now, then poll in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self.refresh()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
