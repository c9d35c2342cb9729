"""The main job's stages end to end, through the `fraud` CLI, on the data set `make demo` uses.

Real redis-server, real MLflow (SQLite) store and registry, the real Feast CLI, a real uvicorn
process: data -> features -> feast apply -> materialize -> train + register -> serve -> scored
requests -> drift report on the logged traffic. Each stage's output is asserted on, and the end
is what ``make demo`` promises: a model registered under the alias, a scored answer with its
five-item explanation, a drift report whose exit code is the one its own verdict implies.

The data is ``fraud data generate`` with the default parameters, as in ``make demo``, so the
behavioural tests judge the model the demo registers: the product's reference example (an
unknown card spending $5,000 at an unknown merchant) posted verbatim is flagged (FRAUD, blocked,
or REVIEW, queued for an analyst: never LEGIT), an ordinary purchase of an established card is
LEGIT, and for an unknown card the score does not fall as the amount grows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform import redis_server
from fraud_platform.contracts import ModelTags, prediction_for, read_prediction_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAUD = str(Path(sys.executable).with_name("fraud"))

# The product's reference example, verbatim (no transaction id, a naive timestamp: UTC). Its
# time is years before the demo's data: the API's guard accepts it (serve.min_timestamp is
# 1970), and for a card and a merchant never seen the time changes only the hour features.
REFERENCE_EXAMPLE = (
    '{"timestamp": "2023-10-27T10:00:00", "customer_id": "C123456", "merchant_id": "M_TEST", '
    '"amount": 5000.0, "lat": 50.0, "long": 50.0}'
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("e2e")
    server = redis_server.start(root=root)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SERVING_", "FEAST_"))},
        "PROJECT_ROOT": str(root),
        "REDIS_URL": server.url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "API_KEYS": "",
        "SERVING_LOG_ROTATE_SECONDS": "1",
    }
    yield root, env
    redis_server.stop(root=root)


def third_party_warnings(stderr: str) -> list[str]:
    """The lines of ``stderr`` where a library (site-packages) printed a Python warning.

    Our own warnings are ``warning: ...`` lines that ask for an action; a third-party one is
    Python's ``<file in site-packages>:<line>: SomethingWarning: ...`` format.
    """
    return [
        line
        for line in stderr.splitlines()
        if "site-packages" in line and "Warning" in line.split("site-packages", 1)[1]
    ]


def metrics_rows(root: Path) -> int:
    """Rows of the training reference sample the drift check compares with."""
    return len(pd.read_parquet(root / "models" / "reference_sample.parquet"))


def fraud(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRAUD, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_main_job_end_to_end(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project

    done = fraud(env, "data", "generate")  # what `make demo` runs: params.yaml's defaults
    assert done.returncode == 0, done.stderr
    transactions = pd.read_parquet(root / "data" / "raw" / "transactions.parquet")
    labels = pd.read_parquet(root / "data" / "raw" / "labels.parquet")
    customers = pd.read_parquet(root / "data" / "raw" / "customers.parquet")
    assert len(transactions) > 1_000 and set(labels["transaction_id"]) == set(
        transactions["transaction_id"]
    )

    done = fraud(env, "features", "build")
    assert done.returncode == 0, done.stderr
    activity = pd.read_parquet(root / "data" / "features" / "customer_activity.parquet")
    assert activity["customer_id"].nunique() == transactions["customer_id"].nunique()

    for step in (("features", "apply"), ("features", "materialize")):
        done = fraud(env, *step)
        assert done.returncode == 0, done.stdout + done.stderr
        # Quiet runs: `features apply` used to print Feast's "experimental" on-demand warning.
        assert third_party_warnings(done.stderr) == [], done.stderr
    assert (root / "data" / "registry.db").exists()

    done = fraud(env, "train", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    # Quiet runs: `train run` used to print SQLAlchemy's deprecation warning from MLflow.
    assert third_party_warnings(done.stderr) == [], done.stderr
    assert "truncated history:" in done.stdout  # the rows left out are reported
    metrics = json.loads((root / "models" / "metrics.json").read_text())
    assert 0.0 < metrics["holdout_pr_auc"] <= 1.0
    assert metrics["baseline_holdout_pr_auc"] > 0.0
    assert (root / "models" / "reference_sample.parquet").exists()
    # Registered under the settings' name, promoted to the alias, with the tags serving needs.
    registry = MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    served = registry.get_model_version_by_alias("fraud-detector", "production")
    assert str(served.version) == "1"
    tags = ModelTags.from_tags(served.tags)
    assert tags.feature_service == FEATURE_SERVICE_NAME and 0.0 < tags.threshold < 1.0
    # The default review rule opens a REVIEW band below the FRAUD threshold.
    assert tags.review_threshold is not None and 0.0 < tags.review_threshold < tags.threshold
    assert tags.promotion_decision == "no_champion"

    port = redis_server.free_port()
    api = subprocess.Popen(
        [FRAUD, "serve", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        last = transactions.iloc[-1]
        body = {
            "transaction_id": "e2e-1",
            "timestamp": (last["timestamp"] + pd.Timedelta(minutes=5)).isoformat(),
            "customer_id": last["customer_id"],
            "merchant_id": last["merchant_id"],
            "amount": 25.0,
            "lat": float(last["lat"]),
            "long": float(last["long"]),
        }
        answer = httpx.post(f"{url}/predict", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        scored = answer.json()
        assert scored["prediction"] == prediction_for(
            scored["probability"], tags.threshold, tags.review_at
        )
        assert (scored["threshold"], scored["review_threshold"]) == (tags.threshold, tags.review_at)
        assert scored["model_version"] == {
            "name": "fraud-detector", "version": "1", "run_id": served.run_id
        }  # fmt: skip
        explanation = scored["explanation"]
        assert len(explanation) == 5
        sizes = [abs(item["contribution"]) for item in explanation]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
        assert {item["feature"] for item in explanation} <= set(tags.features)
        assert list(scored["features"]) == list(tags.features)
        assert scored["features"]["is_new_customer"] == 0  # materialized state was read
        assert scored["features"]["seconds_since_last_txn"] == pytest.approx(300.0, abs=1.0)
        posted = [body]

        # Behaviour of the registered model (issue 18). The reference example, verbatim:
        example = httpx.post(
            f"{url}/predict",
            content=REFERENCE_EXAMPLE,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert example.status_code == 200, example.text
        reply = example.json()
        print("reference example:", json.dumps(reply, indent=1))  # quoted in the docs
        assert reply["prediction"] in {"FRAUD", "REVIEW"}, reply  # flagged, never LEGIT
        assert reply["prediction"] == prediction_for(
            reply["probability"], tags.threshold, tags.review_at
        )
        assert reply["features"]["is_new_customer"] == 1  # scored as unknown, not as safe
        posted.append(json.loads(REFERENCE_EXAMPLE))

        # An ordinary purchase of an established card: the busiest card that never saw fraud,
        # its usual amount at its usual merchant, there, in the afternoon after the data ends.
        history = transactions.merge(labels[["transaction_id", "is_fraud"]], on="transaction_id")
        clean = history.groupby("customer_id")["is_fraud"].transform("max") == 0
        card = history[clean]["customer_id"].value_counts().index[0]
        own = history[history["customer_id"] == card]
        usual = own[own["merchant_id"] == own["merchant_id"].mode().iloc[0]].iloc[-1]
        ordinary = {
            "transaction_id": "e2e-ordinary",
            "timestamp": (
                transactions["timestamp"].max().floor("D") + pd.Timedelta(days=1, hours=15)
            ).isoformat(),
            "customer_id": card,
            "merchant_id": usual["merchant_id"],
            "amount": float(own["amount"].median()),
            "lat": float(usual["lat"]),
            "long": float(usual["long"]),
        }
        assert card in set(customers["customer_id"])
        reply = httpx.post(f"{url}/predict", json=ordinary, timeout=30).json()
        assert reply["features"]["is_new_customer"] == 0
        assert reply["prediction"] == "LEGIT", reply
        posted.append(ordinary)

        # An unknown card: the score does not fall as the amount grows. One unknown card and
        # merchant per amount (a scored transaction joins its card's and merchant's state).
        scores = []
        for amount in (500.0, 1_000.0, 2_000.0, 5_000.0):
            request = {
                **json.loads(REFERENCE_EXAMPLE),
                "transaction_id": f"e2e-unknown-{amount:.0f}",
                "customer_id": f"C_unknown_{amount:.0f}",
                "merchant_id": f"M_unknown_{amount:.0f}",
                "amount": amount,
            }
            reply = httpx.post(f"{url}/predict", json=request, timeout=30).json()
            assert reply["features"]["is_new_customer"] == 1, reply
            scores.append(reply["probability"])
            posted.append(request)
        assert scores == sorted(scores), scores
    finally:
        api.terminate()
        api.wait(timeout=60)

    logged = read_prediction_log(root / "data" / "prediction_log").sort_values("scored_at")
    assert len(logged) == len(posted) and logged["transaction_id"].iloc[0] == "e2e-1"
    # The request's own fields are logged.
    assert logged["amount"].tolist() == [request["amount"] for request in posted]

    done = fraud(env, "monitor", "drift", "--current", str(root / "data" / "prediction_log"))
    reports = list((root / "reports" / "drift").glob("*/summary.json"))
    assert len(reports) == 1, done.stdout + done.stderr
    assert third_party_warnings(done.stderr) == [], done.stderr  # Evidently's import notices
    summary = json.loads(reports[0].read_text())
    # The exit code is the report's own verdict: 1 for dataset drift, 0 for none (2: an error).
    assert done.returncode == (1 if summary["dataset_drift"] else 0), done.stdout + done.stderr
    assert summary["rows"] == {"current": len(posted), "reference": metrics_rows(root)}
    assert set(summary["features"]) == set(tags.features)  # every model feature was tested
    assert summary["prediction_drift"] is not None  # and the model's output
    assert any("small window" in w for w in summary["warnings"])  # few rows: warned, computed
