"""The training run end to end: retrieve, evaluate, log to MLflow, register, champion/challenger.

The tracking and registry store is ``Settings.tracking_uri`` (``MLFLOW_TRACKING_URI``, else a
SQLite file in the project root); a local store keeps its artifacts where
:func:`fraud_platform.tracking.artifact_location` says (``<root>/mlartifacts``). The model is
registered under ``Settings.model_name`` and promoted by moving ``Settings.model_alias``
(``MODEL_NAME``/``MODEL_ALIAS``: the same settings the API loads ``models:/<name>@<alias>``
with); models are addressed by alias, never by stage.

Champion/challenger: the new version (challenger) is registered on every run; the alias moves
to it only when its holdout PR-AUC is strictly higher than that of the current version under
the alias (champion) scored on the *same* holdout rows now, or when no champion exists, or
when promotion is forced. Both scores and the decision are logged on the run and tagged on the
new version (:class:`fraud_platform.contracts.ModelTags`).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraud_platform.contracts import ModelTags, ModelTagsError
from fraud_platform.settings import PROJECT_ROOT, Params, Settings
from fraud_platform.tracking import experiment_id, mlflow_client
from training import lineage
from training.train import (
    BASELINE_FEATURES,
    LABEL_COLUMN,
    METRIC_NAMES,
    TIMESTAMP_COLUMN,
    Evaluation,
    ModelResult,
    Progress,
    TrainingError,
    TrainingSet,
    coefficient_table,
    evaluate,
    holdout_mask,
    labeled_transactions,
    model_matrix,
    reference_sample,
    retrieve_training_set,
    score_metrics,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

REFERENCE_SAMPLE_FILE = "reference_sample.parquet"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class RunSummary:
    """Outcome of :func:`train_and_register`.

    Attributes:
        run_id: The MLflow run.
        model_version: Version registered by this run (the challenger).
        promoted: Whether the alias (``Settings.model_alias``) now points at it.
        decision: ``no_champion``, ``forced``, ``challenger_better``, ``champion_kept`` or
            ``champion_unscorable``.
        champion_version: The version under the alias before this run, if any.
        champion_pr_auc: Its holdout PR-AUC on this run's holdout, if it could be scored.
        threshold: Decision threshold of the new model.
        metrics: Evaluation metrics (deterministic for the same data, params and seed).
    """

    run_id: str
    model_version: str
    promoted: bool
    decision: str
    champion_version: str | None
    champion_pr_auc: float | None
    threshold: float
    metrics: dict[str, float]


def _print(message: str) -> None:
    print(message, flush=True)


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
    metrics["train_fraud_rate"] = float(evaluation.train[LABEL_COLUMN].mean())
    metrics["holdout_fraud_rate"] = float(evaluation.holdout[LABEL_COLUMN].mean())
    return metrics


def _log_folds(result: ModelResult, prefix: str) -> None:
    """Per-fold metrics as MLflow metric history: step k is fold k."""
    import mlflow

    for k, fold in enumerate(result.fold_metrics, start=1):
        mlflow.log_metrics(
            {f"{prefix}cv_fold_{name}": value for name, value in fold.items()}, step=k
        )


def _champion_pr_auc(
    client: MlflowClient, settings: Settings, holdout: pd.DataFrame, progress: Progress
) -> tuple[str | None, float | None]:
    """(version, holdout PR-AUC) of the current model under the alias, on this holdout.

    Returns ``(None, None)`` when the alias points nowhere, ``(version, None)`` when the
    champion cannot be scored (bad tags, its features not in the frame, or it does not load).
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    try:
        champion = client.get_model_version_by_alias(settings.model_name, settings.model_alias)
    except MlflowException:
        return None, None
    try:
        features = list(ModelTags.from_tags(champion.tags).features)
    except ModelTagsError as exc:
        progress(f"champion v{champion.version} cannot be scored: {exc}")
        return str(champion.version), None
    missing = [name for name in features if name not in holdout.columns]
    if missing:
        progress(f"champion v{champion.version} cannot be scored: missing features {missing}")
        return str(champion.version), None
    try:
        model = mlflow.sklearn.load_model(settings.model_uri)
    except (MlflowException, OSError) as exc:
        progress(f"champion v{champion.version} does not load: {exc}")
        return str(champion.version), None
    from sklearn.metrics import average_precision_score

    scores = model.predict_proba(model_matrix(holdout, features))[:, 1]
    y_true = holdout[LABEL_COLUMN].to_numpy(dtype=int)
    # PR-AUC ranks, so the champion's own threshold does not enter the comparison.
    return str(champion.version), float(average_precision_score(y_true, scores))


def _decide(
    force: bool, champion_version: str | None, champion_pr_auc: float | None, challenger: float
) -> tuple[bool, str]:
    """Whether to move the production alias, and why."""
    if force:
        return True, "forced"
    if champion_version is None:
        return True, "no_champion"
    if champion_pr_auc is None:
        return False, "champion_unscorable"
    if challenger > champion_pr_auc:
        return True, "challenger_better"
    return False, "champion_kept"


def load_training_set(
    settings: Settings, progress: Progress = _print, batch_rows: int | None = None
) -> TrainingSet:
    """Labeled transactions of the raw data with their features from the feature service.

    Args:
        settings: Where the raw data and the feature repository are.
        progress: Where to report progress.
        batch_rows: Entity rows per ``get_historical_features`` call (store default if None).

    Returns:
        The training set.

    Raises:
        FileNotFoundError: If a raw table is missing.
        TrainingError: If there are no labels, one class only, or the service is not applied.
    """
    from feast.errors import FeastObjectNotFoundException

    from feature_repo.store import open_store

    labeled = labeled_transactions(settings.paths.raw_dir, settings.paths.ingested_dir)
    progress(f"{len(labeled):,} labeled transactions ({labeled[LABEL_COLUMN].mean():.2%} fraud)")
    store = open_store(settings)
    try:
        return retrieve_training_set(store, labeled, progress, batch_rows)
    except FeastObjectNotFoundException as exc:
        raise TrainingError(f"{exc}; run `fraud features apply` first") from exc


def train_and_register(
    settings: Settings,
    params: Params,
    *,
    force_promote: bool = False,
    training_set: TrainingSet | None = None,
    progress: Progress = _print,
) -> RunSummary:
    """Train, evaluate, log and register the model; move the alias if it wins.

    Args:
        settings: Project root and MLflow tracking URI.
        params: The whole of ``params.yaml`` (every key is logged).
        force_promote: Move the alias to the new version whatever the comparison says.
        training_set: Pre-retrieved training set (tests and benchmarks); retrieved from the
            raw data and Feast when ``None``.
        progress: Where to report progress.

    Returns:
        What was registered and decided.
    """
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    import sklearn
    from mlflow.models import infer_signature

    from feature_repo.store import FEATURE_SERVICE_NAME
    from training.reports import write_plots

    timings: dict[str, float] = {}
    train_params = params.train
    started = time.perf_counter()
    if training_set is None:
        training_set = load_training_set(settings, progress)
    timings["retrieval"] = time.perf_counter() - started

    started = time.perf_counter()
    evaluation = evaluate(training_set, train_params, params.seed, progress)
    timings["evaluation"] = time.perf_counter() - started
    metrics = run_metrics(evaluation)
    model = evaluation.model
    paths = settings.paths

    client = mlflow_client(settings)
    experiment = experiment_id(settings, train_params.experiment)
    commit, dirty = lineage.git_commit(PROJECT_ROOT)
    data_hash, data_hash_source = lineage.raw_data_hash(paths.root)
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment, run_name="train") as run:
        mlflow.log_params(lineage.flatten_params(params.model_dump(by_alias=True)))
        mlflow.set_tags(
            {
                "git_commit": commit or "unknown",
                "git_dirty": str(dirty).lower(),
                "raw_data_md5": data_hash,
                "raw_data_md5_source": data_hash_source,
                "feature_service": FEATURE_SERVICE_NAME,
                "features": ",".join(model.features),
                "baseline_features": ",".join(BASELINE_FEATURES),
                "holdout_start": str(evaluation.holdout[TIMESTAMP_COLUMN].min()),
            }
        )
        mlflow.log_metrics(metrics)
        _log_folds(model, "")
        _log_folds(evaluation.baseline, "baseline_")

        sample = reference_sample(
            evaluation,
            train_params.reference_sample_size,
            params.seed,
            train_params.reference_warmup_days,
        )
        paths.models_dir.mkdir(parents=True, exist_ok=True)
        sample.to_parquet(paths.models_dir / REFERENCE_SAMPLE_FILE, index=False)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            for plot in write_plots(evaluation, folder):
                mlflow.log_artifact(str(plot), artifact_path="plots")
            coefficient_table(model).to_csv(folder / "coefficients.csv", index=False)
            mlflow.log_artifact(str(folder / "coefficients.csv"))
            mlflow.log_artifact(str(paths.models_dir / REFERENCE_SAMPLE_FILE))

        champion_version, champion_pr_auc = _champion_pr_auc(
            client, settings, evaluation.holdout, progress
        )

        x_example = model_matrix(evaluation.train.head(5), model.features)
        info = mlflow.sklearn.log_model(
            model.model,
            name="model",
            registered_model_name=settings.model_name,
            signature=infer_signature(x_example, model.model.predict_proba(x_example)),
            input_example=x_example,
            # pyfunc returns probabilities (column 1 = fraud), compared with the threshold tag.
            pyfunc_predict_fn="predict_proba",
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
        )
        version = str(info.registered_model_version)
        promoted, decision = _decide(
            force_promote, champion_version, champion_pr_auc, model.holdout["pr_auc"]
        )
        version_tags = ModelTags(
            threshold=model.threshold,
            features=tuple(model.features),
            feature_service=FEATURE_SERVICE_NAME,
            holdout_pr_auc=model.holdout["pr_auc"],
            raw_data_md5=data_hash,
            promotion_decision=decision,
        )
        for key, value in version_tags.to_tags().items():
            client.set_model_version_tag(settings.model_name, version, key, value)
        if promoted:
            client.set_registered_model_alias(settings.model_name, settings.model_alias, version)
        decision_metrics = {"challenger_holdout_pr_auc": model.holdout["pr_auc"]}
        if champion_pr_auc is not None:
            decision_metrics["champion_holdout_pr_auc"] = champion_pr_auc
        decision_metrics["promoted"] = float(promoted)
        mlflow.log_metrics(decision_metrics)
        mlflow.set_tags(
            {
                "promotion_decision": decision,
                "champion_version": champion_version or "none",
                "model_version": version,
            }
        )
        timings["logging"] = time.perf_counter() - started
        mlflow.set_tag("timings_seconds", json.dumps({k: round(v, 2) for k, v in timings.items()}))

    # DVC-tracked and deterministic: evaluation metrics only, no version numbers or timings.
    (paths.models_dir / METRICS_FILE).write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    champion_text = (
        "none"
        if champion_version is None
        else f"v{champion_version} holdout PR-AUC "
        + ("unscorable" if champion_pr_auc is None else f"{champion_pr_auc:.4f}")
    )
    progress(
        f"registered {settings.model_name} v{version}: holdout PR-AUC "
        f"{model.holdout['pr_auc']:.4f} (baseline {evaluation.baseline.holdout['pr_auc']:.4f}, "
        f"lift {evaluation.lift_pr_auc:+.4f}); champion {champion_text}; {decision}: "
        f"{settings.model_alias} -> v{version if promoted else champion_version}"
    )
    progress(
        "timings: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items())
    )
    return RunSummary(
        run_id=run.info.run_id,
        model_version=version,
        promoted=promoted,
        decision=decision,
        champion_version=champion_version,
        champion_pr_auc=champion_pr_auc,
        threshold=model.threshold,
        metrics=metrics,
    )


def evaluate_registered(
    settings: Settings,
    params: Params,
    alias: str | None = None,
    training_set: TrainingSet | None = None,
    progress: Progress = _print,
) -> dict[str, Any]:
    """Score a registered model on the current data's holdout at its own threshold.

    Args:
        settings: Project root and MLflow tracking URI.
        params: ``train.holdout_fraction`` is used.
        alias: Registry alias of the model to evaluate; ``Settings.model_alias`` by default.
        training_set: Pre-retrieved training set; retrieved when ``None``.
        progress: Where to report progress.

    Returns:
        ``model_version``, ``threshold`` and the holdout metrics.

    Raises:
        TrainingError: If the alias does not exist or the holdout lacks a class.
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    name, alias = settings.model_name, alias or settings.model_alias
    client = mlflow_client(settings)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise TrainingError(f"no model {name}@{alias} in {settings.tracking_uri}") from exc
    try:
        tags = ModelTags.from_tags(version.tags)
    except ModelTagsError as exc:
        raise TrainingError(f"{name}@{alias} v{version.version}: {exc}") from exc
    features, threshold = list(tags.features), tags.threshold
    if training_set is None:
        training_set = load_training_set(settings, progress)
    frame = training_set.frame
    holdout = frame.loc[holdout_mask(frame[TIMESTAMP_COLUMN], params.train.holdout_fraction)]
    missing = [f for f in features if f not in holdout.columns]
    if missing:
        raise TrainingError(f"{name}@{alias} needs features {missing} the service does not give")
    y_true = holdout[LABEL_COLUMN].to_numpy(dtype=int)
    if len(np.unique(y_true)) < 2:
        raise TrainingError("holdout: one class only; cannot compute PR-AUC")
    model = mlflow.sklearn.load_model(f"models:/{name}@{alias}")
    scores = model.predict_proba(model_matrix(holdout, features))[:, 1]
    result: dict[str, Any] = {
        "model": f"{name}@{alias}",
        "model_version": str(version.version),
        "threshold": threshold,
        "holdout_rows": len(holdout),
    }
    result.update({f"holdout_{k}": v for k, v in score_metrics(y_true, scores, threshold).items()})
    return result


__all__ = [
    "RunSummary",
    "TrainingError",
    "evaluate_registered",
    "load_training_set",
    "run_metrics",
    "train_and_register",
]
