"""``fraud monitor drift`` with its real report writers: Evidently's HTML and the MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import ks_2samp
from typer.testing import CliRunner

from fraud_platform.settings import get_settings
from fraud_platform.tracking import artifact_location
from monitoring.cli import app
from tests.support.frames import (
    AMOUNT_FEATURES,
    FEATURES,
    log_frame,
    make_features,
    write_log,
    write_reference,
)

pytestmark = pytest.mark.integration
runner = CliRunner()


def _only_report(root: Path) -> Path:
    folders = sorted((root / "reports" / "drift").iterdir())
    assert len(folders) == 1
    return folders[0]


@pytest.mark.slow  # Evidently/MLflow/HTTP round trip: seconds
def test_drift_exits_1_and_writes_reports(project: Path) -> None:
    reference = write_reference(project)
    current = log_frame(make_features(800, seed=32, amount_factor=5, night=True))
    write_log(project, current.iloc[:400], "predictions-000001")
    write_log(project, current.iloc[400:], "predictions-000002")  # the log is rotated

    result = runner.invoke(app, ["drift", "--no-mlflow"])

    assert result.exit_code == 1, result.output
    assert "DATASET DRIFT" in result.output
    assert "log_amount" in result.output and "DRIFT" in result.output
    folder = _only_report(project)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["dataset_drift"] is True
    assert summary["rows"]["current"] == 800
    assert set(summary["drifted_features"]) >= AMOUNT_FEATURES
    assert set(summary["features"]) == set(FEATURES)

    # Our p-value is scipy's KS on the same two columns.
    ref = pd.read_parquet(reference)
    expected = ks_2samp(ref["amount_max_24h"], current["amount_max_24h"]).pvalue
    assert summary["features"]["amount_max_24h"]["p_value"] == pytest.approx(expected)

    # Evidently's JSON holds one ValueDrift per feature, with the same KS p-value.
    evidently = json.loads((folder / "evidently.json").read_text())
    drift_values = {
        m["config"]["column"]: m["value"]
        for m in evidently["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    assert set(drift_values) == {*FEATURES, "probability"}
    assert drift_values["seconds_since_last_txn"] == pytest.approx(
        summary["features"]["seconds_since_last_txn"]["p_value"]
    )
    assert drift_values["hour_of_day"] == pytest.approx(
        summary["features"]["hour_of_day"]["p_value"]  # the same chi-square test in both
    )
    html = (folder / "report.html").read_text()
    assert len(html) > 10_000 and "amount_to_avg_30d" in html


@pytest.mark.slow  # Evidently/MLflow/HTTP round trip: seconds
@pytest.mark.usefixtures("fake_evidently")
def test_run_is_logged_to_mlflow(project: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    write_reference(project)
    write_log(project, log_frame(make_features(500, seed=38, amount_factor=5)))

    result = runner.invoke(app, ["drift"])

    assert result.exit_code == 0, result.output  # 5/17 amount features: below drift_share
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("fraud_monitoring")
    assert experiment is not None
    # The one artifact location of the platform: training's experiments use the same folder.
    assert experiment.artifact_location == artifact_location(get_settings())
    assert experiment.artifact_location == (project / "mlartifacts").resolve().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    summary = json.loads((_only_report(project) / "summary.json").read_text())
    metrics = run.data.metrics
    assert metrics["p_value.log_amount"] == pytest.approx(
        summary["features"]["log_amount"]["p_value"]
    )
    assert metrics["share_drifted"] == pytest.approx(5 / 18)
    assert metrics["drifted.amount_sum_24h"] == 1.0
    assert metrics["dataset_drift"] == 0.0
    assert run.data.tags["dataset_drift"] == "false"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift_report")}
    assert artifacts == {
        "drift_report/report.html",
        "drift_report/evidently.json",
        "drift_report/summary.json",
    }
