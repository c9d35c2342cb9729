"""MLflow run contents, the registry alias, champion/challenger and reproducibility.

One registry per module, filled by four runs in order; every run registers each model of
``train.models`` (the selected one first, the others tagged ``not_selected``):

1. ``first``: the first models; the better one -> ``production`` (no champion);
2. ``again``: the same data, params and seed through the CLI (features retrieved afresh)
   -> identical metrics; equal is not better, so the alias stays;
3. ``worse``: the training part's labels shuffled (holdout labels intact) -> a worse
   challenger, the alias stays;
4. ``forced``: the same worse model with ``--force-promote`` -> the alias moves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner, Result

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.contracts import LABEL, PROBABILITY, ModelTags
from fraud_platform.settings import Settings
from tests.support.training_projects import Project, isolated_environment
from training import lineage
from training.dataset import TrainingSet
from training.evaluation import holdout_mask
from training.registry import evaluate_registered
from training.run import RunSummary, train_and_register

pytestmark = pytest.mark.integration


@dataclass
class Registry:
    settings: Settings
    project: Project
    training_set: TrainingSet
    first: RunSummary
    first_metrics_json: str
    first_reference: pd.DataFrame
    again_output: str
    again_metrics_json: str
    unmet: Result
    review_unmet: Result
    worse: RunSummary
    forced: RunSummary
    forced_reference: pd.DataFrame
    alias_after: dict[str, str]  # run name -> version the alias pointed at after it


def _alias_version(settings: Settings, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    return str(client.get_model_version_by_alias(name, settings.model_alias).version)


def _shuffle_training_labels(training_set: TrainingSet, holdout_fraction: float) -> TrainingSet:
    frame = training_set.frame.copy()
    train = ~holdout_mask(frame["event_timestamp"], holdout_fraction)
    rng = np.random.default_rng(1)
    frame.loc[train, LABEL] = rng.permutation(frame.loc[train, LABEL].to_numpy())
    return TrainingSet(frame, training_set.features)


@pytest.fixture(scope="module")
def registry(
    projects: dict[str, Project],
    training_set: TrainingSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Registry]:
    from training.cli import app

    project = projects["full"]
    mlflow_dir = tmp_path_factory.mktemp("mlflow")
    settings = Settings(
        project_root=project.root,
        redis_url="redis://127.0.0.1:1/0",
        mlflow_tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}",
    )
    params, name = project.params, settings.model_name
    models_dir = settings.paths.models_dir
    alias_after: dict[str, str] = {}
    quiet = lambda _: None  # noqa: E731
    with isolated_environment(mlflow_dir) as patch:
        patch.setenv("PROJECT_ROOT", str(project.root))

        first = train_and_register(settings, params, training_set=training_set, progress=quiet)
        alias_after["first"] = _alias_version(settings, name)
        first_metrics_json = (models_dir / "metrics.json").read_text()
        first_reference = pd.read_parquet(models_dir / "reference_sample.parquet")

        result = CliRunner().invoke(app, ["run"])
        assert result.exit_code == 0, result.output
        alias_after["again"] = _alias_version(settings, name)
        again_metrics_json = (models_dir / "metrics.json").read_text()

        # An unmeetable rule through the command line: no alert budget this small is reachable.
        params_file = settings.paths.params_file
        shipped = params_file.read_text()
        unmeetable = yaml.safe_load(shipped)
        unmeetable["train"] |= {"threshold_rule": "alert_budget", "alert_budget_per_1000": 1e-6}
        params_file.write_text(yaml.safe_dump(unmeetable, sort_keys=False))
        try:
            unmet = CliRunner().invoke(app, ["run"])
            # The REVIEW rule is held to the same standard (one model: it fails after its CV).
            unmeetable = yaml.safe_load(shipped)
            unmeetable["train"] |= {
                "models": ["logistic_regression"],
                "review_rule": "alert_budget",
                "review_budget_per_1000": 1e-6,
            }
            params_file.write_text(yaml.safe_dump(unmeetable, sort_keys=False))
            review_unmet = CliRunner().invoke(app, ["run"])
        finally:
            params_file.write_text(shipped)
        alias_after["unmet"] = _alias_version(settings, name)

        # Shuffled training labels reach no precision target: the named fallback sets it.
        worse_set = _shuffle_training_labels(training_set, params.train.holdout_fraction)
        fallback = params.model_copy(
            update={"train": params.train.model_copy(update={"threshold_fallback": "best_f1"})}
        )
        worse = train_and_register(settings, fallback, training_set=worse_set, progress=quiet)
        alias_after["worse"] = _alias_version(settings, name)

        forced = train_and_register(
            settings, fallback, training_set=worse_set, force_promote=True, progress=quiet
        )
        alias_after["forced"] = _alias_version(settings, name)
        forced_reference = pd.read_parquet(models_dir / "reference_sample.parquet")

        yield Registry(
            settings=settings,
            project=project,
            training_set=training_set,
            first=first,
            first_metrics_json=first_metrics_json,
            first_reference=first_reference,
            again_output=result.output,
            again_metrics_json=again_metrics_json,
            unmet=unmet,
            review_unmet=review_unmet,
            worse=worse,
            forced=forced,
            forced_reference=forced_reference,
            alias_after=alias_after,
        )


def _client(registry: Registry) -> Any:
    from mlflow.tracking import MlflowClient

    uri = registry.settings.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _per_run(registry: Registry) -> int:
    """Versions each run registers: one per model family of ``train.models``."""
    return len(registry.project.params.train.models)


def test_first_model_becomes_production_with_its_threshold_and_features(
    registry: Registry,
) -> None:
    first = registry.first
    assert (first.decision, first.promoted, first.champion_version) == ("no_champion", True, None)
    assert registry.alias_after["first"] == first.model_version == "1"
    name = registry.settings.model_name
    version = _client(registry).get_model_version(name, "1")
    assert float(version.tags["threshold"]) == first.threshold
    assert 0 < first.threshold < 1
    assert version.tags["features"] == ",".join(registry.training_set.features)
    assert version.tags["feature_service"] == FEATURE_SERVICE_NAME
    assert version.tags["model_kind"] == first.model_kind


def test_every_family_is_registered_and_the_better_holdout_is_selected(
    registry: Registry,
) -> None:
    first, client = registry.first, _client(registry)
    name, families = registry.settings.model_name, registry.project.params.train.models
    assert {first.model_kind, *first.other_versions} == set(families) and len(families) == 2
    metrics = client.get_run(first.run_id).data.metrics
    scores: dict[str, float] = {kind: metrics[f"{kind}_holdout_pr_auc"] for kind in families}
    assert first.model_kind == max(scores, key=lambda kind: scores[kind])
    assert metrics["holdout_pr_auc"] == scores[first.model_kind]
    for kind, number in first.other_versions.items():
        other = client.get_model_version(name, number)
        assert other.run_id == first.run_id
        assert other.tags["promotion_decision"] == "not_selected"
        assert other.tags["model_kind"] == kind
        assert float(other.tags["holdout_pr_auc"]) == scores[kind] < scores[first.model_kind]
        assert float(other.tags["threshold"]) == metrics[f"{kind}_threshold"]
    # Both families' CV, holdout and slices are logged side by side.
    holdout = registry.training_set.frame
    holdout = holdout[
        holdout_mask(holdout["event_timestamp"], registry.project.params.train.holdout_fraction)
    ]
    patterns = set(holdout.loc[holdout[LABEL] == 1, "fraud_pattern"]) - {"none", "unknown"}
    assert patterns  # the small project has generated fraud patterns in its holdout
    for kind in families:
        assert f"{kind}_cv_pr_auc_mean" in metrics and f"{kind}_holdout_roc_auc" in metrics
        for pattern in patterns:
            assert 0 <= metrics[f"{kind}_holdout_slice_{pattern}_recall"] <= 1
            frauds = int(((holdout[LABEL] == 1) & (holdout["fraud_pattern"] == pattern)).sum())
            assert metrics[f"{kind}_holdout_slice_{pattern}_frauds"] == frauds


def test_run_logs_params_lineage_metrics_and_artifacts(registry: Registry) -> None:
    client = _client(registry)
    run = client.get_run(registry.first.run_id)
    params = registry.project.params
    expected = lineage.flatten_params(params.model_dump(by_alias=True))
    # Every params.yaml leaf, plus what the truncated-history rule left out of the data.
    dropped = registry.training_set.truncated_history_rows
    expected["truncated_history_rows"] = dropped
    assert {key: str(value) for key, value in expected.items()} == run.data.params
    assert dropped > 0  # generated data: the warm-up never trains
    assert run.data.metrics["truncated_history_rows"] == dropped
    assert run.data.metrics["training_set_rows"] == len(registry.training_set.frame)
    assert "train.k_folds" in run.data.params and "import.chargeback_delay_days" in run.data.params

    tags = run.data.tags
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert tags["git_commit"] == (commit or "unknown")
    assert tags["raw_data_md5"] == lineage.raw_data_hash(registry.project.root)[0]
    assert tags["feature_service"] == FEATURE_SERVICE_NAME
    assert tags["features"].split(",") == registry.training_set.features
    assert tags["promotion_decision"] == "no_champion"

    metrics = run.data.metrics
    assert metrics["lift_pr_auc"] == pytest.approx(
        metrics["holdout_pr_auc"] - metrics["baseline_holdout_pr_auc"]
    )
    assert metrics["holdout_pr_auc"] > metrics["baseline_holdout_pr_auc"]
    for name in ("pr_auc", "roc_auc", "precision", "recall", "recall_at_1pct_fpr"):
        assert f"cv_{name}_mean" in metrics and f"cv_{name}_std" in metrics
        assert f"baseline_holdout_{name}" in metrics
    folds = client.get_metric_history(run.info.run_id, "cv_fold_pr_auc")
    assert sorted(m.step for m in folds) == list(range(1, params.train.k_folds + 1))
    assert np.mean([m.value for m in folds]) == pytest.approx(metrics["cv_pr_auc_mean"])

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/pr_curve.png",
        "plots/roc_curve.png",
        "plots/confusion_matrix.png",
        "plots/reliability.png",
        "coefficients.csv",
        "contributions_lightgbm.csv",
        "contributions_logistic_regression.csv",
        "reference_sample.parquet",
    } <= artifacts


def test_reference_sample_and_metrics_file(registry: Registry) -> None:
    reference = registry.first_reference
    params = registry.project.params
    features = registry.training_set.features
    assert list(reference.columns) == [*features, LABEL, PROBABILITY]
    assert len(reference) == params.train.reference_sample_size
    assert reference[PROBABILITY].between(0, 1).all()
    assert reference[LABEL].isin([0, 1]).all()
    metrics = json.loads(registry.first_metrics_json)
    assert metrics["holdout_pr_auc"] == registry.first.metrics["holdout_pr_auc"]
    assert metrics["threshold"] == registry.first.threshold


def test_same_data_params_and_seed_give_identical_metrics(registry: Registry) -> None:
    # The second run went through the CLI and retrieved its features from Feast again.
    assert registry.again_metrics_json == registry.first_metrics_json
    assert "fold 3 of 3" in registry.again_output
    assert "retrieved" in registry.again_output


def test_equal_challenger_does_not_move_the_alias(registry: Registry) -> None:
    client = _client(registry)
    name = registry.settings.model_name
    again = str(1 + _per_run(registry))  # the second run's selected model, registered first
    version = client.get_model_version(name, again)
    assert version.tags["promotion_decision"] == "champion_kept"
    assert registry.alias_after["again"] == "1"
    run = client.get_run(version.run_id)
    # The champion was re-scored on this run's holdout: same rows, same score as its own.
    assert run.data.metrics["champion_holdout_pr_auc"] == pytest.approx(
        registry.first.metrics["holdout_pr_auc"], abs=1e-12
    )


def test_worse_challenger_does_not_move_the_alias_unless_forced(registry: Registry) -> None:
    worse, forced = registry.worse, registry.forced
    assert worse.metrics["holdout_pr_auc"] < registry.first.metrics["holdout_pr_auc"]
    assert (worse.decision, worse.promoted) == ("champion_kept", False)
    assert worse.champion_version == "1"
    assert worse.champion_pr_auc == pytest.approx(registry.first.metrics["holdout_pr_auc"])
    assert registry.alias_after["worse"] == "1"

    assert (forced.decision, forced.promoted) == ("forced", True)
    assert registry.alias_after["forced"] == forced.model_version == str(1 + 3 * _per_run(registry))


def test_evaluate_scores_production_at_its_threshold(registry: Registry) -> None:
    with isolated_environment(Path(registry.settings.project_root)):
        result = evaluate_registered(
            registry.settings,
            registry.project.params,
            training_set=registry.training_set,
            progress=lambda _: None,
        )
    assert result["model_version"] == registry.forced.model_version
    assert result["threshold"] == registry.forced.threshold
    assert result["review_threshold"] == registry.forced.metrics["review_threshold"]
    assert result["holdout_flagged_recall"] == pytest.approx(
        registry.forced.metrics["holdout_flagged_recall"]
    )
    assert result["holdout_pr_auc"] == pytest.approx(registry.forced.metrics["holdout_pr_auc"])
    assert result["holdout_recall"] == pytest.approx(registry.forced.metrics["holdout_recall"])


# The features travel as a pickle, not Parquet: Arrow's reader leaves a thread pool that
# can abort the child at interpreter exit under load (apache/arrow#34314), which is not
# what this test is about.
LOAD_AND_PREDICT = """
import sys, numpy as np, pandas as pd, mlflow
model = mlflow.pyfunc.load_model("models:/{name}@production")
features = pd.read_pickle(sys.argv[1])
np.save(sys.argv[2], np.asarray(model.predict(features)))
"""


def test_production_model_predicts_identically_in_a_fresh_process(
    registry: Registry, tmp_path: Path
) -> None:
    reference = registry.forced_reference  # scored in-process by the model now in production
    features = reference[registry.training_set.features].astype("float64")
    features.to_pickle(tmp_path / "features.pkl")
    name = registry.settings.model_name
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.settings.tracking_uri}
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_PREDICT.format(name=name),
            str(tmp_path / "features.pkl"),
            str(tmp_path / "out.npy"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    predicted = np.load(tmp_path / "out.npy")
    assert predicted.shape == (len(reference), 2)  # pyfunc serves predict_proba
    np.testing.assert_array_equal(predicted[:, 1], reference[PROBABILITY].to_numpy())


def test_unmeetable_rule_exits_non_zero_naming_the_rule_and_the_best_value(
    registry: Registry,
) -> None:
    unmet = registry.unmet
    assert unmet.exit_code == 2, unmet.output
    assert "error: logistic_regression: train.threshold_rule alert_budget" in unmet.output
    assert "the fewest alerts any threshold gives is" in unmet.output
    assert "Traceback" not in unmet.output
    assert registry.alias_after["unmet"] == "1"  # nothing registered, nothing moved
    review = registry.review_unmet
    assert review.exit_code == 2, review.output
    assert "error: logistic_regression: train.review_rule alert_budget: no threshold" in (
        review.output
    )
    assert "set train.review_rule: null" in review.output and "Traceback" not in review.output


def _gate(registry: Registry, run_id: str) -> dict[str, Any]:
    import mlflow

    uri = registry.settings.tracking_uri
    mlflow.set_tracking_uri(uri)
    return dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/promotion_gate.json"))


def test_first_model_passes_the_behavioural_cases_as_registered(registry: Registry) -> None:
    checks = {check.name: check for check in registry.first.checks}
    # No champion: only the behavioural cases, run on the registered artifact.
    assert set(checks) == {
        "behaviour_example_request",
        "behaviour_card_testing_burst",
        "behaviour_night_10x_amount",
    }
    assert all(check.passed for check in checks.values()), checks
    example = checks["behaviour_example_request"]
    assert example.bar is not None
    assert 0 < example.bar < example.challenger  # above the median legitimate holdout row
    metrics = _client(registry).get_run(registry.first.run_id).data.metrics
    assert metrics["gate_behaviour_card_testing_burst_passed"] == 1.0
    assert (
        metrics["gate_behaviour_card_testing_burst_challenger"]
        > (metrics["gate_behaviour_card_testing_burst_bar"])
    )
    assert _gate(registry, registry.first.run_id)["gate_passed"] is True


def test_gate_refuses_the_worse_challenger_and_logs_each_check(registry: Registry) -> None:
    worse, client = registry.worse, _client(registry)
    checks = {check.name: check for check in worse.checks}
    assert not checks["holdout_pr_auc"].passed
    assert checks["holdout_pr_auc"].bar == pytest.approx(registry.first.metrics["holdout_pr_auc"])
    assert checks["holdout_pr_auc"].challenger == worse.metrics["holdout_pr_auc"]
    assert "holdout_precision" in checks and "behaviour_example_request" in checks
    run = client.get_run(worse.run_id)
    assert run.data.metrics["gate_holdout_pr_auc_passed"] == 0.0
    assert run.data.metrics["gate_passed"] == 0.0 and run.data.metrics["promoted"] == 0.0
    assert run.data.tags["promotion_gate"] == "fail"
    assert run.data.tags["force_promote"] == "false"
    verdict = _gate(registry, worse.run_id)
    assert verdict["decision"] == "champion_kept" and not verdict["promoted"]
    assert [c["name"] for c in verdict["checks"]] == [c.name for c in worse.checks]
    # The fallback is never silent: the metric and the reason are on the run together.
    fell_back = run.data.metrics["threshold_fallback"] == 1.0
    assert fell_back == ("threshold_fallback_reason" in run.data.tags)
    if fell_back:
        assert run.data.tags["threshold_rule"] == "best_f1"
        assert "min_precision" in run.data.tags["threshold_fallback_reason"]


def test_forced_promotion_still_logs_the_failed_gate(registry: Registry) -> None:
    run = _client(registry).get_run(registry.forced.run_id)
    assert run.data.tags["force_promote"] == "true"
    assert run.data.tags["promotion_gate"] == "fail"
    assert run.data.tags["promotion_decision"] == "forced"
    assert _gate(registry, registry.forced.run_id)["force_promote"] is True


def test_operating_point_and_net_savings_are_logged(registry: Registry) -> None:
    metrics = _client(registry).get_run(registry.first.run_id).data.metrics
    kind = registry.first.model_kind
    for prefix in ("", f"{kind}_"):
        assert metrics[f"{prefix}holdout_alerts_per_1000"] > 0  # never a never-alerting model
        assert f"{prefix}cv_alerts_per_1000_mean" in metrics
        assert metrics[f"{prefix}holdout_net_savings"] == pytest.approx(
            metrics[f"{prefix}holdout_fraud_amount_caught"]
            - metrics[f"{prefix}holdout_review_cost"]
        )
    cost = registry.project.params.train.review_cost_per_alert
    assert metrics["holdout_review_cost"] == pytest.approx(cost * metrics["holdout_alerts"])
    holdout_rows = metrics["holdout_rows"]
    assert metrics["holdout_alerts_per_1000"] == pytest.approx(
        1000 * metrics["holdout_alerts"] / holdout_rows
    )
    # The REVIEW band sits below the FRAUD threshold, is tagged on the version, and adds to
    # FRAUD's recall; its share of the holdout is what separates the two alert counts.
    review_at, threshold = metrics["review_threshold"], metrics["threshold"]
    assert 0 < review_at < threshold
    served = _client(registry).get_model_version(
        registry.settings.model_name, registry.first.model_version
    )
    assert ModelTags.from_tags(served.tags).review_threshold == review_at
    assert metrics["holdout_flagged_recall"] >= metrics["holdout_recall"]
    assert metrics["holdout_flagged_alerts_per_1000"] == pytest.approx(
        metrics["holdout_alerts_per_1000"] + metrics["holdout_review_alerts_per_1000"]
    )
    # Every reported rule's point: the alert budget's stays within its budget out of fold.
    assert metrics["holdout_at_alert_budget_alerts_per_1000"] >= 0
    assert 0 <= metrics["holdout_at_target_recall_recall"] <= 1
