"""Training phase 4, logging: what a training run records in its MLflow run.

One function per kind of record, each called once by :func:`training.run.train_and_register`
inside the active run:

* :func:`log_inputs`: every ``params.yaml`` leaf as a parameter, and the lineage tags (code
  commit, raw-data hash, the feature service, the model's and the baseline's features, the
  families trained and the one selected);
* :func:`log_training_rows`: how many rows trained and how many the truncated-history rule
  left out;
* :func:`log_evaluation`: the flat metrics (each family's, slices and operating points
  included), the rule that set each threshold (and a fallback's reason), and the per-fold
  metrics as metric history;
* :func:`log_artifacts`: the plots (PR, ROC, confusion, reliability), the regression's
  coefficient table, each model's mean absolute contributions and the drift reference sample;
* :func:`log_decision`: the champion/challenger scores, the promotion gate's verdict check by
  check, the decision and the new versions.

The tracking store and its artifact location are :mod:`fraud_platform.tracking`'s.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.scoring_model import LinearModel
from fraud_platform.settings import PROJECT_ROOT
from training import lineage
from training.model import BASELINE_FEATURES, coefficient_table, contribution_table

if TYPE_CHECKING:
    from fraud_platform.settings import Params, Settings
    from training.dataset import TrainingSet
    from training.evaluation import Evaluation, ModelResult
    from training.registry import Decision


def log_inputs(
    settings: Settings, params: Params, evaluation: Evaluation, feature_service: str
) -> str:
    """Log the run's parameters and lineage tags (the feature service trained on among them).

    Returns:
        The raw data's hash (DVC's md5 when DVC tracks it), also tagged on the new version.
    """
    import mlflow

    commit, dirty = lineage.git_commit(PROJECT_ROOT)
    data_hash, data_hash_source = lineage.raw_data_hash(settings.paths.root)
    mlflow.log_params(lineage.flatten_params(params.model_dump(by_alias=True)))
    mlflow.set_tags(
        {
            "git_commit": commit or "unknown",
            "git_dirty": str(dirty).lower(),
            "raw_data_md5": data_hash,
            "raw_data_md5_source": data_hash_source,
            "feature_service": feature_service,
            "features": ",".join(evaluation.model.features),
            "baseline_features": ",".join(BASELINE_FEATURES),
            "models": ",".join(result.kind for result in evaluation.candidates),
            "selected_model": evaluation.model.kind,
            "holdout_start": str(evaluation.holdout[EVENT_TIMESTAMP].min()),
        }
    )
    return data_hash


def log_training_rows(training_set: TrainingSet) -> None:
    """Log the rows retrieved and the labeled rows dropped for truncated history.

    ``truncated_history_rows`` is both a parameter (what the run's data was) and a metric (to
    compare runs); see :func:`training.dataset.drop_truncated_history`.
    """
    import mlflow

    dropped = training_set.truncated_history_rows
    mlflow.log_param("truncated_history_rows", dropped)
    mlflow.log_metrics(
        {"truncated_history_rows": dropped, "training_set_rows": len(training_set.frame)}
    )


def _log_folds(result: ModelResult, prefix: str) -> None:
    """Per-fold metrics as MLflow metric history: step k is fold k."""
    import mlflow

    for k, fold in enumerate(result.fold_metrics, start=1):
        mlflow.log_metrics(
            {f"{prefix}cv_fold_{name}": value for name, value in fold.items()}, step=k
        )


def log_evaluation(evaluation: Evaluation, metrics: dict[str, float]) -> None:
    """Log the run's flat metrics, then each fold's: selected model, each family, baseline."""
    import mlflow

    mlflow.log_metrics(metrics)
    # The rule that set each threshold, and why the requested one was not used when it was not
    # (a fallback is never silent: it is on the run, and the metric <family>_threshold_fallback).
    tags = {"threshold_rule": evaluation.model.point.rule}
    for prefix, result in [("", evaluation.model), ("baseline_", evaluation.baseline)] + [
        (f"{result.kind}_", result) for result in evaluation.candidates
    ]:
        tags[f"{prefix}threshold_rule"] = result.point.rule
        if result.point.fallback_reason is not None:
            tags[f"{prefix}threshold_fallback_reason"] = result.point.fallback_reason
    mlflow.set_tags(tags)
    _log_folds(evaluation.model, "")
    _log_folds(evaluation.baseline, "baseline_")
    for result in evaluation.candidates:
        _log_folds(result, f"{result.kind}_")


def log_artifacts(evaluation: Evaluation, reference_sample: Path) -> None:
    """Log the plots, the coefficient table, the contribution tables and the reference sample.

    ``coefficients.csv`` is the logistic regression's (when it was trained);
    ``contributions_<family>.csv`` is each model's mean absolute contribution per feature on
    the holdout (TreeSHAP for trees): the same explanation the API gives, averaged.
    """
    import mlflow

    from training.reports import write_plots

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for plot in write_plots(evaluation, folder):
            mlflow.log_artifact(str(plot), artifact_path="plots")
        for result in evaluation.candidates:
            if isinstance(result.model, LinearModel):
                coefficient_table(result.model).to_csv(folder / "coefficients.csv", index=False)
                mlflow.log_artifact(str(folder / "coefficients.csv"))
            table = folder / f"contributions_{result.kind}.csv"
            contribution_table(result.model, evaluation.holdout).to_csv(table, index=False)
            mlflow.log_artifact(str(table))
        mlflow.log_artifact(str(reference_sample))


def log_decision(decision: Decision, challenger_pr_auc: float, force_promote: bool) -> None:
    """Log both holdout scores, the gate's verdict check by check, whether the alias moved, why.

    Each check of the gate is three metrics, ``gate_<check>_passed`` (1/0),
    ``gate_<check>_challenger`` and ``gate_<check>_bar`` (what it had to beat), and the whole
    verdict is the ``promotion_gate.json`` artifact; ``force_promote`` is a tag.
    """
    import dataclasses
    import math

    import mlflow

    metrics = {"challenger_holdout_pr_auc": challenger_pr_auc}
    if decision.champion_pr_auc is not None:
        metrics["champion_holdout_pr_auc"] = decision.champion_pr_auc
    if decision.champion_precision is not None:
        metrics["champion_holdout_precision"] = decision.champion_precision
    metrics["promoted"] = float(decision.promoted)
    metrics["gate_passed"] = float(decision.gate_passed)
    for check in decision.checks:
        metrics[f"gate_{check.name}_passed"] = float(check.passed)
        if not math.isnan(check.challenger):
            metrics[f"gate_{check.name}_challenger"] = check.challenger
        if check.bar is not None:
            metrics[f"gate_{check.name}_bar"] = check.bar
    mlflow.log_metrics(metrics)
    mlflow.log_dict(
        {
            "decision": decision.decision,
            "promoted": decision.promoted,
            "force_promote": force_promote,
            "gate_passed": decision.gate_passed,
            "checks": [dataclasses.asdict(check) for check in decision.checks],
        },
        "promotion_gate.json",
    )
    mlflow.set_tags(
        {
            "promotion_decision": decision.decision,
            "promotion_gate": "pass" if decision.gate_passed else "fail",
            "force_promote": str(force_promote).lower(),
            "champion_version": decision.champion_version or "none",
            "model_version": decision.version,
            "other_model_versions": ",".join(f"{k}:v{v}" for k, v in decision.others.items()),
        }
    )


def log_timings(timings: dict[str, float]) -> None:
    """Tag the wall time of each phase (seconds)."""
    import mlflow

    mlflow.set_tag("timings_seconds", json.dumps({k: round(v, 2) for k, v in timings.items()}))
