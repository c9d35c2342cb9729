"""The served model: loaded from the MLflow registry by alias, swapped atomically.

A :class:`ModelBundle` is immutable; :class:`ModelHolder` keeps the current one in a single
attribute, so a request reads one consistent bundle and a swap is one reference assignment
(atomic under the GIL): in-flight requests finish on the bundle they started with.

Registry faults. Loading happens on a background thread, never in the API's start-up: the API
answers ``/health`` at once whatever state MLflow is in, and ``/ready`` and ``/predict`` answer
503 with the reason until a model is loaded. Failed loads are retried after 1, 2, 4, ... seconds
(capped at ``SERVING_MODEL_POLL_SECONDS``), and each attempt is bounded:
:func:`bound_registry_requests` caps MLflow's own HTTP retries and timeout, which by default
retry for minutes. A served model whose registry entry disappears (the version deleted, the
alias removed) keeps scoring from memory; :attr:`ModelHolder.registry_missing` says so, and
``/ready`` reports it as a warning (see ``serving/routes/health.py`` for why not a 503).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.contracts import ModelTags, ModelTagsError, prediction_for, review_lower_end
from fraud_platform.scoring_model import PLAIN_FILE, LinearModel, ScoringModel, from_plain
from fraud_platform.tracking import configure_mlflow_mappers

logger = logging.getLogger(__name__)

EXPLANATION_SIZE = 5


class ModelLoadError(RuntimeError):
    """The registry has no usable model under the alias; the message says why."""


@dataclass(frozen=True)
class ModelBundle:
    """One registered version: its model, threshold and identity.

    Scoring and explanation are the registered model's own
    (:class:`fraud_platform.scoring_model.ScoringModel`): one call gives the calibrated
    probability and the exact contribution of every feature to the raw score (coefficient x
    standardised value for the regression, TreeSHAP for LightGBM), whichever family serves.
    """

    name: str
    version: str
    run_id: str
    threshold: float
    model: ScoringModel
    # The REVIEW band's lower end (``ModelTags.review_threshold``); ``None``: no band.
    review_threshold: float | None = None
    # The Feast feature service the model was trained on: the one the API serves it with.
    feature_service: str = FEATURE_SERVICE_NAME

    @property
    def features(self) -> tuple[str, ...]:
        """The model's input columns, in order."""
        return self.model.features

    @property
    def kind(self) -> str:
        """The model's family (``logistic_regression``, ``lightgbm``)."""
        return self.model.kind

    @property
    def review_at(self) -> float:
        """The REVIEW band's lower end: ``threshold`` for a version without a band."""
        return review_lower_end(self.threshold, self.review_threshold)

    def prediction(self, probability: float) -> str:
        """``FRAUD``, ``REVIEW`` or ``LEGIT`` at this version's thresholds."""
        return prediction_for(probability, self.threshold, self.review_at)

    def score(self, values: Mapping[str, Any]) -> tuple[float, np.ndarray, np.ndarray]:
        """Probability of fraud, the raw feature vector and each feature's contribution.

        Args:
            values: Feature name -> value; must hold every feature of the model.

        Returns:
            ``(probability, x, contributions)``: the calibrated probability (the scale of the
            threshold), the values (NaN where unknown) and each feature's contribution to the
            raw log-odds. An unknown feature (no history, or a stale merchant label state)
            is taken at its training mean by the regression (it contributes nothing) and kept
            NaN for LightGBM (its learnt missing branch), as in training.
        """
        x = self.model.vector(values)
        probability, contributions, _ = self.model.score_row(x)
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


def bundle_from_model(
    loaded: Any, name: str, version: str, run_id: str, tags: Mapping[str, str]
) -> ModelBundle:
    """Check a loaded model and its version tags, and freeze it into a bundle.

    Args:
        loaded: What the registry holds: a :class:`~fraud_platform.scoring_model.ScoringModel`,
            or a bare ``Pipeline(StandardScaler, LogisticRegression)`` (versions registered
            before calibration: served with the plain sigmoid, as they were trained).
        name: Registered model name.
        version: Its version.
        run_id: The run that logged it.
        tags: The version's tags (:class:`fraud_platform.contracts.ModelTags`).

    Returns:
        The bundle.

    Raises:
        ModelLoadError: If the model is of neither kind, its features do not match the tags,
            a tag is missing or malformed, or the one-row path does not reproduce the batch
            ``predict_proba``.
    """
    try:
        parsed = ModelTags.from_tags(tags)
    except ModelTagsError as exc:
        raise ModelLoadError(f"{name} v{version}: {exc}") from exc
    threshold, features = parsed.threshold, parsed.features
    try:
        if isinstance(loaded, ScoringModel):
            model = loaded
            if model.features != features:
                raise ValueError("tag features do not match the fitted shape")
        else:
            model = LinearModel.from_pipeline(loaded, features)
    except ValueError as exc:
        raise ModelLoadError(f"{name} v{version}: {exc}") from exc
    bundle = ModelBundle(
        name=name,
        version=str(version),
        run_id=run_id or "",
        threshold=threshold,
        review_threshold=parsed.review_threshold,
        model=model,
        feature_service=parsed.feature_service or FEATURE_SERVICE_NAME,
    )
    # Guard the one-row path against the model's own batch path on a probe row.
    import pandas as pd

    probe: dict[str, float | None] = {f: float(i + 1) for i, f in enumerate(features)}
    probes = [probe]
    if isinstance(loaded, ScoringModel):  # a bare pipeline cannot take NaN: nothing to compare
        probes.append({f: None if i % 2 else v for i, (f, v) in enumerate(probe.items())})
    for row in probes:
        frame = pd.DataFrame([row], columns=list(features), dtype=float)  # None -> NaN
        expected = float(loaded.predict_proba(frame)[0, 1])
        if not math.isclose(bundle.score(row)[0], expected, rel_tol=1e-9, abs_tol=1e-12):
            raise ModelLoadError(f"{name} v{version}: scoring does not reproduce predict_proba")
    return bundle


def load_by_alias(tracking_uri: str, name: str, alias: str) -> ModelBundle:
    """Load ``models:/<name>@<alias>`` (by the version the alias points at now).

    Raises:
        ModelLoadError: If the alias is missing or the model unusable.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow_mappers()  # before MLflow's first store use: no SQLAlchemy warning
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        # The model's files (a copy, for a local store: nothing is unpickled yet).
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}"))
        model = load_model_files(local)
    except MlflowException as exc:
        raise ModelLoadError(f"models:/{name}@{alias}: {exc.message}") from exc
    return bundle_from_model(model, name, str(version.version), version.run_id or "", version.tags)


def load_model_files(local: Path) -> Any:
    """The model in a downloaded MLflow model folder: its plain form, else the skops artifact.

    The plain form (``extra_files/scorer.json``, :func:`fraud_platform.scoring_model.to_plain`)
    needs numpy alone; versions logged without it load through MLflow's sklearn flavour, whose
    skops loader imports scikit-learn and SciPy (~100 MiB more in the process).

    Raises:
        ModelLoadError: The plain form is unreadable.
    """
    plain = local / "extra_files" / PLAIN_FILE
    if plain.exists():
        try:
            return from_plain(json.loads(plain.read_text()))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise ModelLoadError(f"{plain}: {exc}") from exc
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(local))


# MLflow's answers for "no such model" and "no such alias" (a deleted version takes its
# aliases with it); anything else (connection refused, timeout, HTTP 5xx) means "cannot tell".
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def bound_registry_requests(timeout_seconds: int, max_retries: int) -> None:
    """Bound MLflow's HTTP calls in this process, unless the environment already does.

    MLflow retries a failed request 7 times with exponential backoff and waits 120 s for an
    answer by default: minutes against an unreachable server. MLflow reads these variables at
    each call.

    Args:
        timeout_seconds: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (connect and read, per request).
        max_retries: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_seconds))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def current_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version number the alias points at right now (cheap registry call).

    Returns:
        ``None`` when the registry answers that the model or the alias does not exist.

    Raises:
        Exception: Whatever MLflow raised when the registry could not answer.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow_mappers()  # before MLflow's first store use: no SQLAlchemy warning
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND_CODES:
            return None
        raise


class ModelHolder:
    """Holds the current bundle; a daemon thread loads it, then polls the alias and swaps."""

    def __init__(
        self,
        load: Callable[[], ModelBundle],
        version_now: Callable[[], str | None],
        service_features: Mapping[str, Sequence[str]],
        poll_seconds: float,
        first_retry_seconds: float = 1.0,
        target: str = "the model",
    ) -> None:
        """Set up; nothing is loaded until :meth:`start`.

        Args:
            load: Loads the bundle the alias points at.
            version_now: The version the alias points at (cheap); ``None`` when the registry
                says the alias or the model no longer exists.
            service_features: Feature service -> the features it provides, for every service
                the API can serve; a model trained on another service, or asking for anything
                its service lacks, is refused (the old model keeps serving).
            poll_seconds: Seconds between alias checks once a model is loaded (and the longest
                pause between load attempts before).
            first_retry_seconds: Pause after the first failed load; doubled after each failure.
            target: What is loaded, for messages (``models:/name@alias``).
        """
        self._load = load
        self._version_now = version_now
        self._service_features = {
            service: frozenset(names) for service, names in service_features.items()
        }
        self._poll_seconds = poll_seconds
        self._first_retry = first_retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.target = target
        self.bundle: ModelBundle | None = None
        self.last_error: str | None = None
        self.failed_loads = 0  # failed attempts before the first model was loaded
        self.registry_missing: str | None = None  # the served model's registry entry is gone

    @property
    def unavailable_reason(self) -> str:
        """Why no model is loaded (empty once one is)."""
        if self.bundle is not None:
            return ""
        if self.failed_loads == 0:
            return f"no model loaded yet: loading {self.target} from the registry"
        return (
            f"no model loaded: {self.failed_loads} attempt(s) to load {self.target} failed, "
            f"retrying; last error: {self.last_error}"
        )

    def refresh(self) -> bool:
        """Load the alias's version if it differs from the current one.

        Returns:
            Whether a new bundle was swapped in.
        """
        current = self.bundle
        try:
            if current is not None:
                version = self._version_now()
                if version is None:
                    self._entry_missing(current)
                    return False
                self.registry_missing = None
                if version == current.version:
                    self.last_error = None
                    return False
            bundle = self._load()
            provided = self._service_features.get(bundle.feature_service)
            if provided is None:
                raise ModelLoadError(
                    f"model trained on feature service {bundle.feature_service!r}, which this "
                    f"API does not serve (it serves {sorted(self._service_features)}; run "
                    "`fraud features apply`)"
                )
            missing = [f for f in bundle.features if f not in provided]
            if missing:
                raise ModelLoadError(
                    f"model wants features {bundle.feature_service} lacks: {missing}"
                )
        except Exception as exc:  # the registry may be down: keep serving the old model
            self.last_error = f"{type(exc).__name__}: {exc}"
            if current is None:
                self.failed_loads += 1
            logger.warning("model refresh failed: %s", self.last_error)
            return False
        self.bundle = bundle  # the atomic swap
        # Everything alive now (Feast, MLflow, the model: millions of objects) stays alive:
        # out of the cyclic collector's scans, whose full passes otherwise stall a request
        # for tens of milliseconds now and then.
        gc.freeze()
        self.last_error = None
        self.registry_missing = None
        logger.info("serving %s version %s (run %s)", bundle.name, bundle.version, bundle.run_id)
        return True

    def _entry_missing(self, current: ModelBundle) -> None:
        message = (
            f"{current.name} version {current.version} is served from memory but "
            f"{self.target} no longer exists in the registry"
        )
        if self.registry_missing is None:
            logger.error("%s", message)
        self.registry_missing = message

    def start(self) -> None:
        """Start the loader thread; it returns at once (the first load runs in the thread)."""
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pause = self._first_retry
        while not self._stop.is_set():
            self.refresh()
            if self.bundle is None:
                wait, pause = pause, min(pause * 2, self._poll_seconds)
            else:
                wait = self._poll_seconds
            if self._stop.wait(wait):
                return

    def stop(self) -> None:
        """Stop the thread (a load in progress finishes in the background)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
