"""The training run, phase by phase: dataset -> evaluation -> registry decision, all logged.

:func:`train_and_register` only orders the phases; each lives in its own module and none calls
back into another:

1. :mod:`training.dataset`: labeled transactions and their point-in-time features (Feast);
2. :mod:`training.evaluation`: K-fold CV grouped by card, out-of-fold calibration, the FRAUD
   and REVIEW thresholds of the operations rules, the time-ordered holdout and its slices, for
   every model of ``train.models`` (:mod:`training.model`) and the request-only baseline;
3. :mod:`training.registry`: every model is registered; the best holdout PR-AUC of the run is
   the challenger, compared with the champion on the same holdout, run through the behavioural
   cases as registered, tagged, and promoted when it passes the gate;
4. :mod:`training.run_log`: parameters, lineage, metrics, plots and the decision, in one
   MLflow run of ``train.experiment``.

Two DVC-tracked files come out too (``models/``): the drift reference sample, which monitoring
compares live traffic with, and ``metrics.json`` (evaluation metrics only, deterministic for the
same data, params and seed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fraud_platform.tracking import experiment_id, mlflow_client
from training import run_log
from training.dataset import Progress, TrainingSet, load_training_set, to_stdout
from training.evaluation import evaluate, reference_sample, run_metrics
from training.registry import Decision, GateCheck, register_challenger

if TYPE_CHECKING:
    from fraud_platform.settings import Params, Settings
    from training.evaluation import Evaluation

REFERENCE_SAMPLE_FILE = "reference_sample.parquet"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class RunSummary:
    """Outcome of :func:`train_and_register`.

    Attributes:
        run_id: The MLflow run.
        model_version: Version of the run's selected model (the challenger).
        model_kind: Its family.
        other_versions: Family -> version of the run's other registered models.
        promoted: Whether the alias (``Settings.model_alias``) now points at it.
        decision: ``no_champion``, ``forced``, ``challenger_better``, ``champion_kept``,
            ``behaviour_failed`` or ``champion_unscorable``.
        champion_version: The version under the alias before this run, if any.
        champion_pr_auc: Its holdout PR-AUC on this run's holdout, if it could be scored.
        threshold: Decision threshold of the new model.
        metrics: Evaluation metrics (deterministic for the same data, params and seed).
        checks: The promotion gate's checks, each with its verdict and figures.
    """

    run_id: str
    model_version: str
    model_kind: str
    other_versions: dict[str, str]
    promoted: bool
    decision: str
    champion_version: str | None
    champion_pr_auc: float | None
    threshold: float
    metrics: dict[str, float]
    checks: tuple[GateCheck, ...] = ()


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Record the wall time of the block under ``phase``."""
    started = time.perf_counter()
    yield
    timings[phase] = time.perf_counter() - started


def train_and_register(
    settings: Settings,
    params: Params,
    *,
    force_promote: bool = False,
    training_set: TrainingSet | None = None,
    progress: Progress = to_stdout,
) -> RunSummary:
    """Train, evaluate, log and register the model; move the alias if it wins.

    Args:
        settings: Project root, MLflow tracking URI, the model's name and alias.
        params: The whole of ``params.yaml`` (every key is logged).
        force_promote: Move the alias to the new version whatever the comparison says.
        training_set: Pre-retrieved training set (tests and benchmarks); retrieved from the
            raw data and Feast when ``None``.
        progress: Where to report progress.

    Returns:
        What was registered and decided.
    """
    import mlflow

    timings: dict[str, float] = {}
    with _timed(timings, "retrieval"):
        training_set = training_set or load_training_set(
            settings, progress, service=params.train.feature_service
        )
    with _timed(timings, "evaluation"):
        evaluation = evaluate(training_set, params.train, params.seed, progress)
    feature_service = training_set.feature_service
    metrics = run_metrics(evaluation)
    client = mlflow_client(settings)
    experiment = experiment_id(settings, params.train.experiment)
    paths = settings.paths
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment, run_name="train") as run:
        raw_data_md5 = run_log.log_inputs(settings, params, evaluation, feature_service)
        run_log.log_training_rows(training_set)
        run_log.log_evaluation(evaluation, metrics)
        sample = reference_sample(
            evaluation,
            params.train.reference_sample_size,
            params.seed,
            params.train.reference_warmup_days,
        )
        paths.models_dir.mkdir(parents=True, exist_ok=True)
        sample.to_parquet(paths.models_dir / REFERENCE_SAMPLE_FILE, index=False)
        run_log.log_artifacts(evaluation, paths.models_dir / REFERENCE_SAMPLE_FILE)
        decision = register_challenger(
            client,
            settings,
            params,
            evaluation,
            force=force_promote,
            raw_data_md5=raw_data_md5,
            feature_service=feature_service,
            progress=progress,
        )
        run_log.log_decision(decision, evaluation.model.holdout["pr_auc"], force_promote)
        timings["logging"] = time.perf_counter() - started
        run_log.log_timings(timings)
    # DVC-tracked and deterministic: evaluation metrics only, no version numbers or timings.
    (paths.models_dir / METRICS_FILE).write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    _report(progress, settings, evaluation, metrics, decision, timings)
    return RunSummary(
        run_id=run.info.run_id,
        model_version=decision.version,
        model_kind=evaluation.model.kind,
        other_versions=decision.others,
        promoted=decision.promoted,
        decision=decision.decision,
        champion_version=decision.champion_version,
        champion_pr_auc=decision.champion_pr_auc,
        threshold=evaluation.model.threshold,
        metrics=metrics,
        checks=decision.checks,
    )


def _report(
    progress: Progress,
    settings: Settings,
    evaluation: Evaluation,
    metrics: dict[str, float],
    decision: Decision,
    timings: dict[str, float],
) -> None:
    """The run's closing lines: each model side by side, the decision, where time went."""
    selected = evaluation.model
    for result in evaluation.candidates:
        version = decision.version if result is selected else decision.others[result.kind]
        holdout = result.holdout
        progress(
            f"{result.kind} v{version}: holdout PR-AUC {holdout['pr_auc']:.4f}, ROC-AUC "
            f"{holdout['roc_auc']:.4f}; at threshold {result.threshold:.4f} ({result.point.rule}) "
            f"precision {holdout['precision']:.3f}, recall {holdout['recall']:.3f}, "
            f"{holdout['alerts_per_1000']:.2f} alerts per 1,000, net savings "
            f"{result.decision['net_savings']:,.0f}; with REVIEW from "
            f"{result.review_threshold:.4f}: precision {holdout['flagged_precision']:.3f}, recall "
            f"{holdout['flagged_recall']:.3f}, {holdout['flagged_alerts_per_1000']:.2f} per 1,000 "
            f"({result.seconds:.1f} s)"
        )
    champion = (
        "none"
        if decision.champion_version is None
        else f"v{decision.champion_version} holdout PR-AUC "
        + ("unscorable" if decision.champion_pr_auc is None else f"{decision.champion_pr_auc:.4f}")
    )
    serving = decision.version if decision.promoted else decision.champion_version
    progress(
        f"registered {settings.model_name} v{decision.version} ({selected.kind}): holdout PR-AUC "
        f"{selected.holdout['pr_auc']:.4f} (baseline {metrics['baseline_holdout_pr_auc']:.4f}, "
        f"lift {metrics['lift_pr_auc']:+.4f}); champion {champion}; {decision.decision}: "
        f"{settings.model_alias} -> v{serving}"
    )
    progress(
        "timings: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items())
    )
