"""The main job under FEATURE_PROFILE=spark, against the DuckDB profile on the same data.

One small synthetic data set (``tests/support/training_projects.small_params``: 150 cards, 14
days) goes through the same `fraud` commands in two project roots, one per profile:
features build (DuckDB, or PySpark ``local[2]``), feast apply, materialize, train run, serve.
Real redis-server (one database per root), real MLflow stores, the real Feast CLI, real
uvicorn processes. The two runs must agree end to end: the same Redis contents after
materialize, the same training metrics (the training frames are equal, so are the models),
and the same served answer (probability, decision, every feature) to the same requests. The
Spark root keeps its tables under ``SPARK_TABLES_URI`` (a ``file://`` folder outside
``data/features``), so every step finds them by the profile's rule; after serving, `fraud
monitor consistency` recomputes the Spark API's logged requests on Spark: 0 mismatches.

The two profiles run side by side (threads driving `fraud` subprocesses). Each step's wall
time is printed per profile (``pytest -s``); side by side, each is slowed by the other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis

from fraud_platform import redis_server
from tests.e2e.test_end_to_end import FRAUD, REFERENCE_EXAMPLE, fraud, third_party_warnings
from tests.support.training_projects import small_params, write_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROFILES = ("duckdb", "spark")
STEPS = (
    ("features", "build"),
    ("features", "apply"),
    ("features", "materialize"),
    ("train", "run"),
)


def _tables(root: Path, profile: str) -> Path:
    """Where a root's offline tables live: the Spark root's under its tables URI."""
    return root / "lake" / "features" if profile == "spark" else root / "data" / "features"


def _profile_line(profile: str, root: Path) -> str:
    """The first line every `fraud` command prints on the root's profile."""
    if profile == "duckdb":
        return "profile: duckdb"
    return f"profile: spark (local[2], tables file://{_tables(root, profile)})"


def _env(root: Path, redis_url: str, profile: str) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SERVING_", "FEAST_", "SPARK_", "FEATURE_PROFILE"))
    }
    if profile == "spark":
        inherited["SPARK_TABLES_URI"] = f"file://{_tables(root, profile)}"
    return {
        **inherited,
        "PROJECT_ROOT": str(root),
        "REDIS_URL": redis_url,
        "REDIS_MODE": "single",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "API_KEYS": "",
        "FEATURE_PROFILE": profile,
        "GIT_PYTHON_REFRESH": "quiet",
    }


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict]]]:
    """Two roots with the same raw data and parameters; one Redis database each."""
    base = tmp_path_factory.mktemp("spark-e2e")
    server = redis_server.start(root=base)
    made = {}
    for db, profile in enumerate(PROFILES):
        root = base / profile
        write_params(root, small_params())
        address = "/".join(server.url.split("/")[:3])  # redis://host:port, then the database
        made[profile] = (root, _env(root, f"{address}/{db}", profile))
    duck_root, duck_env = made["duckdb"]
    done = fraud(duck_env, "data", "generate")
    assert done.returncode == 0, done.stderr
    shutil.copytree(duck_root / "data" / "raw", made["spark"][0] / "data" / "raw")
    yield made
    redis_server.stop(root=base)


def _redis_contents(url: str) -> dict[bytes, Any]:
    client = redis.Redis.from_url(url)
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1_000):
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        else:  # strings (the label once-marks...): their serialized value
            out[key] = client.dump(key)
    return out


def _serve(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = redis_server.free_port()
    api = subprocess.Popen(
        [FRAUD, "serve", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(root / "api.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert api.poll() is None, (root / "api.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return api, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    api.kill()
    raise AssertionError("API not ready:\n" + (root / "api.log").read_text()[-3000:])


def _timed_serve(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    started = time.perf_counter()
    api, url = _serve(root, env)
    return api, url, time.perf_counter() - started


def _run_steps(profile: str, root: Path, env: dict[str, str]) -> dict[str, float]:
    """The main job's steps on one profile through `fraud`, checked and timed."""
    timings = {}
    for step in STEPS:
        started = time.perf_counter()
        done = fraud(env, *step)
        timings[" ".join(step)] = time.perf_counter() - started
        assert done.returncode == 0, f"{profile} {step}:\n{done.stdout}\n{done.stderr}"
        assert done.stdout.splitlines()[0] == _profile_line(profile, root), done.stdout
        assert third_party_warnings(done.stderr) == [], done.stderr
        if profile == "spark" and step[1] == "materialize":
            # The build's latest-rows sidecars were read: Feast's Spark scan never ran.
            assert "Pulling latest features from spark" not in done.stdout + done.stderr
    tables = _tables(root, profile)
    if profile == "spark":  # built, applied and materialized from the tables URI only
        assert not (root / "data" / "features").exists()
    for name in ("customer_activity", "merchant_activity"):
        table = tables / f"{name}.parquet"
        assert table.is_dir() == (profile == "spark")  # Spark's part files, DuckDB's one file
        assert (tables / f"{name}.latest.parquet").is_file()
    return timings


def test_spark_profile_serves_what_the_duckdb_profile_serves(
    roots: dict[str, tuple[Path, dict]],
) -> None:
    # The two profiles side by side (the Spark side mostly waits on its JVM and workers).
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {p: pool.submit(_run_steps, p, *roots[p]) for p in PROFILES}
        timings = {p: run.result() for p, run in runs.items()}

    # Same online state, byte for byte, after each profile's materialize.
    duck_env, spark_env = roots["duckdb"][1], roots["spark"][1]
    duck_redis = _redis_contents(duck_env["REDIS_URL"])
    assert len(duck_redis) > 200
    assert _redis_contents(spark_env["REDIS_URL"]) == duck_redis

    # Same training frames, hence the same models and metrics.
    duck_metrics, spark_metrics = (
        json.loads((roots[profile][0] / "models" / "metrics.json").read_text())
        for profile in PROFILES
    )
    assert 0.0 < duck_metrics["holdout_pr_auc"] <= 1.0
    assert spark_metrics == duck_metrics

    # Same answers to the same requests: an established card just after the data ends, and
    # the product's reference example (an unknown card), posted to each profile's API.
    transactions = pd.read_parquet(roots["duckdb"][0] / "data" / "raw" / "transactions.parquet")
    last = transactions.iloc[-1]
    requests = [
        {
            "transaction_id": "spark-e2e-1",
            "timestamp": (last["timestamp"] + pd.Timedelta(minutes=5)).isoformat(),
            "customer_id": last["customer_id"],
            "merchant_id": last["merchant_id"],
            "amount": 25.0,
            "lat": float(last["lat"]),
            "long": float(last["long"]),
        },
        {**json.loads(REFERENCE_EXAMPLE), "transaction_id": "spark-e2e-2"},
    ]
    answers: dict[str, list[dict[str, Any]]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        served = {p: pool.submit(_timed_serve, *roots[p]) for p in PROFILES}
    apis = {p: started.result() for p, started in served.items() if not started.exception()}
    try:
        for started in served.values():
            started.result()  # an API that did not start fails here; the others are stopped
        for profile, (_, url, seconds) in apis.items():
            timings[profile]["serve (to /ready)"] = seconds
            replies = [httpx.post(f"{url}/predict", json=body, timeout=30) for body in requests]
            assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
            answers[profile] = [reply.json() for reply in replies]
    finally:
        for api, _, _ in apis.values():
            api.terminate()
            api.wait(timeout=60)

    # The Spark API's logged requests recomputed offline on Spark (shadow build, Spark as-of
    # retrieval): what it served is what training would have seen.
    spark_root = roots["spark"][0]
    check_started = time.perf_counter()
    checked = fraud(spark_env, "monitor", "consistency", "--no-mlflow", "--no-workspace")
    timings["spark"]["monitor consistency"] = time.perf_counter() - check_started
    assert checked.returncode == 0, f"{checked.stdout}\n{checked.stderr}"
    assert checked.stdout.splitlines()[0] == _profile_line("spark", spark_root), checked.stdout
    summary = json.loads(
        max((spark_root / "reports" / "consistency").glob("*/summary.json")).read_text()
    )
    assert summary["rows"] == len(requests)
    assert summary["total_mismatches"] == 0, checked.stdout
    compared = {f["feature"]: f["compared"] for f in summary["features"]}
    assert compared["txn_count_24h"] == len(requests)
    assert len(compared) == len(answers["spark"][0]["features"])
    for duck, spark in zip(answers["duckdb"], answers["spark"], strict=True):
        assert spark["features"] == duck["features"]
        assert spark["probability"] == duck["probability"]
        assert spark["prediction"] == duck["prediction"]
        assert spark["threshold"] == duck["threshold"]
    established = answers["spark"][0]["features"]
    assert established["is_new_customer"] == 0  # the materialized state was read
    assert established["seconds_since_last_txn"] == pytest.approx(300.0, abs=1.0)
    assert answers["spark"][1]["features"]["is_new_customer"] == 1

    print("\nstep timings (s):")
    for name in timings["duckdb"]:
        duck_s, spark_s = timings["duckdb"][name], timings["spark"][name]
        print(f"  {name:<22} duckdb {duck_s:6.1f}  spark {spark_s:6.1f}  ({spark_s / duck_s:.1f}x)")
    print(f"  {'monitor consistency':<22} spark {timings['spark']['monitor consistency']:6.1f}")
