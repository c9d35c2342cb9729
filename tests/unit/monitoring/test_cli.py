"""``fraud monitor drift``: exit codes, reports on disk, MLflow, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from monitoring.cli import app
from tests.support.frames import (
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
