"""``fraud monitor drift``: exit codes, reports on disk, MLflow, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import ks_2samp
from typer.testing import CliRunner

from monitoring.cli import app

from .frames import (
    AMOUNT_FEATURES,
    FEATURES,
    log_frame,
    make_features,
    set_param,
    write_log,
    write_reference,
)

runner = CliRunner()


def _only_report(root: Path) -> Path:
    folders = sorted((root / "reports" / "drift").iterdir())
    assert len(folders) == 1
    return folders[0]


@pytest.mark.usefixtures("fake_evidently")
def test_no_drift_exits_0(project: Path) -> None:
    write_reference(project)
    write_log(project, log_frame(make_features(800, seed=31)))

    result = runner.invoke(app, ["drift", "--no-mlflow"])

    assert result.exit_code == 0, result.output
    assert "no dataset drift" in result.output
    summary = json.loads((_only_report(project) / "summary.json").read_text())
    assert summary["dataset_drift"] is False


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


@pytest.mark.usefixtures("fake_evidently")
def test_window_options_select_rows(project: Path) -> None:
    write_reference(project)
    shifted = make_features(300, seed=33, amount_factor=5, night=True)
    clean = make_features(300, seed=34)
    # Clean traffic first (minutes 0-299), then shifted traffic (minutes 300-599).
    write_log(project, log_frame(pd.concat([clean, shifted], ignore_index=True)))

    early = runner.invoke(
        app, ["drift", "--no-mlflow", "--since", "2026-03-01T00:00:00Z", "--last", "600"]
    )
    assert early.exit_code == 1, early.output
    recent = runner.invoke(app, ["drift", "--no-mlflow", "--window", "250"])
    assert recent.exit_code == 1, recent.output
    old_only = runner.invoke(
        app,
        ["drift", "--no-mlflow", "--current", str(project / "old.parquet")],
    )
    assert old_only.exit_code == 2  # no such file
    log_frame(clean).to_parquet(project / "old.parquet")
    old_only = runner.invoke(
        app,
        ["drift", "--no-mlflow", "--current", str(project / "old.parquet")],
    )
    assert old_only.exit_code == 0, old_only.output
    summaries = [
        json.loads((f / "summary.json").read_text())
        for f in sorted((project / "reports" / "drift").iterdir())
    ]
    assert [s["rows"]["current"] for s in summaries] == [600, 250, 300]


@pytest.mark.usefixtures("fake_evidently")
def test_small_window_warns(project: Path) -> None:
    write_reference(project)
    write_log(project, log_frame(make_features(40, seed=35)))

    result = runner.invoke(app, ["drift", "--no-mlflow"])

    assert result.exit_code in (0, 1)
    assert "warning: small window: 40 current rows < min_rows=200" in result.output
    summary = json.loads((_only_report(project) / "summary.json").read_text())
    assert any("small window" in w for w in summary["warnings"])


@pytest.mark.usefixtures("fake_evidently")
def test_known_labels_give_window_performance(project: Path) -> None:
    write_reference(project)
    current = log_frame(make_features(400, seed=39))
    write_log(project, current)
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    known = current["transaction_id"].iloc[:300]
    pd.DataFrame(
        {
            "transaction_id": current["transaction_id"],
            "is_fraud": (current["probability"] > 0.05).astype("int8"),
            # The last 100 labels arrive in 2200: not known yet.
            "label_timestamp": [pd.Timestamp("2026-04-01", tz="UTC")] * len(known)
            + [pd.Timestamp("2199-01-01", tz="UTC")] * (len(current) - len(known)),
        }
    ).to_parquet(raw / "labels.parquet")

    result = runner.invoke(app, ["drift", "--no-mlflow", "--threshold", "0.04"])

    assert result.exit_code == 0, result.output
    assert "window performance on 300 labelled rows" in result.output
    summary = json.loads((_only_report(project) / "summary.json").read_text())
    perf = summary["performance"]
    assert perf["labelled_rows"] == 300
    assert perf["threshold"] == 0.04
    labelled = current.iloc[:300]
    flagged = labelled["probability"] >= 0.04
    fraud = labelled["probability"] > 0.05
    assert 0 < flagged.sum() < 300 and 0 < fraud.sum() < 300
    assert perf["precision"] == pytest.approx((flagged & fraud).sum() / flagged.sum())
    assert perf["recall"] == pytest.approx((flagged & fraud).sum() / fraud.sum())
    assert perf["pr_auc"] == pytest.approx(1.0)  # the labels are a threshold on the score
    assert summary["sources"]["labels"].endswith("labels.parquet")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["amount_sum_1h"]), "missing columns: amount_sum_1h"),
        (lambda f: f.assign(surprise=1), "unexpected columns: surprise"),
    ],
)
def test_bad_columns_exit_2(project: Path, change, message: str) -> None:
    write_reference(project)
    write_log(project, change(log_frame(make_features(300, seed=36))))

    result = runner.invoke(app, ["drift", "--no-mlflow"])

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (project / "reports").exists()


def test_missing_files_and_bad_params_exit_2(project: Path) -> None:
    no_reference = runner.invoke(app, ["drift", "--no-mlflow"])
    assert no_reference.exit_code == 2
    assert "reference sample not found" in no_reference.output

    write_reference(project)
    no_log = runner.invoke(app, ["drift", "--no-mlflow"])
    assert no_log.exit_code == 2
    assert "prediction_log" in no_log.output

    write_log(project, log_frame(make_features(300, seed=37)))
    bad_since = runner.invoke(app, ["drift", "--no-mlflow", "--since", "yesterday"])
    assert bad_since.exit_code == 2
    assert "--since" in bad_since.output

    set_param(project, "monitor", "drift_share", 1.5)
    bad_params = runner.invoke(app, ["drift", "--no-mlflow"])
    assert bad_params.exit_code == 2
    assert "monitor.drift_share" in bad_params.output


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
    assert experiment.artifact_location.startswith((project / "mlruns").as_uri())
    (run,) = client.search_runs([experiment.experiment_id])
    summary = json.loads((_only_report(project) / "summary.json").read_text())
    metrics = run.data.metrics
    assert metrics["p_value.log_amount"] == pytest.approx(
        summary["features"]["log_amount"]["p_value"]
    )
    assert metrics["share_drifted"] == pytest.approx(5 / 17)
    assert metrics["drifted.amount_sum_24h"] == 1.0
    assert metrics["dataset_drift"] == 0.0
    assert run.data.tags["dataset_drift"] == "false"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift_report")}
    assert artifacts == {
        "drift_report/report.html",
        "drift_report/evidently.json",
        "drift_report/summary.json",
    }
