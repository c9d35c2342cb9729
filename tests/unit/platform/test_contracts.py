"""The contracts between steps: model tags, the prediction-log record, the artifact location."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fraud_platform import contracts as c
from fraud_platform.journal import Journal
from fraud_platform.settings import Settings
from fraud_platform.tracking import artifact_location, is_local_store

# ---------------------------------------------------------------------------- model tags


def test_model_tags_round_trip_exactly() -> None:
    tags = c.ModelTags(
        threshold=0.9891330276542334,
        features=("log_amount", "txn_count_1h"),
        feature_service="fraud_scoring_v1",
        holdout_pr_auc=0.71,
        raw_data_md5="abc",
        promotion_decision="no_champion",
    )
    written = tags.to_tags()
    assert written["threshold"] == "0.9891330276542334"  # repr: the float comes back exactly
    assert written["features"] == "log_amount,txn_count_1h"
    assert c.ModelTags.from_tags(written) == tags


def test_only_threshold_and_features_are_required() -> None:
    parsed = c.ModelTags.from_tags({"threshold": "0.5", "features": " a, b ,"})
    assert parsed == c.ModelTags(threshold=0.5, features=("a", "b"))
    assert parsed.to_tags() == {"threshold": "0.5", "features": "a,b"}


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"features": "a"}, "bad or missing tag: 'threshold'"),
        ({"threshold": "0.5"}, "bad or missing tag: 'features'"),
        ({"threshold": "high", "features": "a"}, "bad or missing tag"),
        ({"threshold": "1.5", "features": "a"}, "threshold 1.5 or features invalid"),
        ({"threshold": "0.5", "features": " , "}, "features invalid"),
        ({"threshold": "0.5", "features": "a", "holdout_pr_auc": "n/a"}, "bad or missing tag"),
    ],
)
def test_bad_tags_are_refused_naming_the_problem(tags: dict[str, str], message: str) -> None:
    with pytest.raises(c.ModelTagsError, match=message):
        c.ModelTags.from_tags(tags)


# ---------------------------------------------------------------------------- prediction log


def test_log_columns_are_request_then_features_then_outcome() -> None:
    columns = c.prediction_log_columns({"f1": "int64", "f2": "float64"})
    names = list(columns)
    assert names[: len(c.REQUEST_FIELDS)] == list(c.REQUEST_FIELDS)
    assert names[len(c.PREDICTION_LOG_REQUEST) : len(c.PREDICTION_LOG_REQUEST) + 2] == ["f1", "f2"]
    assert names[-len(c.PREDICTION_LOG_OUTCOME) :] == list(c.PREDICTION_LOG_OUTCOME)
    assert c.prediction_log_schema({"f1": "int64"}).field("timestamp").type.tz == "UTC"
    with pytest.raises(ValueError, match="clash"):
        c.prediction_log_columns({c.PROBABILITY: "float64"})


def test_the_one_reader_reads_what_a_journal_of_the_record_holds(tmp_path: Path) -> None:
    assert c.read_prediction_log(tmp_path).empty  # no log yet: no rows, no error
    journal = Journal(tmp_path, c.PREDICTION_LOG, c.prediction_log_columns({"f": "float64"}))
    journal.open()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {
        **dict.fromkeys((c.TRANSACTION_ID, c.CUSTOMER_ID, c.MERCHANT_ID), "x"),
        c.TIMESTAMP: at,
        c.AMOUNT: 1.0,
        c.LAT: 2.0,
        c.LONG: 3.0,
        c.SCORED_AT: at,
        "f": 0.5,
        c.PROBABILITY: 0.25,
        c.PREDICTION: c.LEGIT,
        c.THRESHOLD: 0.5,
        "model_name": "m",
        "model_version": "1",
        "model_run_id": "r",
        "cold_start": False,
    }
    journal.append_many([row])
    log = c.read_prediction_log(tmp_path, columns=[c.TIMESTAMP, c.PROBABILITY])
    assert list(log.columns) == [c.TIMESTAMP, c.PROBABILITY]
    assert log[c.PROBABILITY].tolist() == [0.25]
    journal.close()
    assert c.read_prediction_log(tmp_path)[c.PREDICTION].tolist() == [c.LEGIT]


# ---------------------------------------------------------------------------- MLflow


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("sqlite:////tmp/mlflow.db", True),
        ("file:///tmp/mlruns", True),
        ("/tmp/mlruns", True),
        ("http://mlflow:5000", False),
    ],
)
def test_artifact_location_is_one_folder_for_a_local_store(
    tmp_path: Path, uri: str, local: bool
) -> None:
    settings = Settings(project_root=tmp_path, mlflow_tracking_uri=uri)
    assert is_local_store(uri) is local
    expected = (tmp_path / "mlartifacts").resolve().as_uri() if local else None
    assert artifact_location(settings) == expected


def test_model_name_and_alias_are_settings_with_env_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().model_uri == "models:/fraud-detector@production"
    monkeypatch.setenv("MODEL_NAME", "fraud-gbt")
    monkeypatch.setenv("MODEL_ALIAS", "staging")
    assert Settings().model_uri == "models:/fraud-gbt@staging"
