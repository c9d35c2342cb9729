"""A small but real serving stack in a temporary project root (tests and benchmarks share it).

Run as a script in a subprocess so that the settings (read once per process) see the
temporary root: ``python stack.py setup ROOT`` with ``PROJECT_ROOT``, ``REDIS_URL`` and
``MLFLOW_TRACKING_URI`` in the environment. It generates synthetic data, builds the offline
tables from *all* of it (``build_features``, as the CLI does), registers the root's Feast
definitions (``fraud_definitions``, what ``feast apply`` registers), materializes state only up
to the start of a held-out slice (within one UTC day), computes the slice's historical
features, and registers a small model as ``fraud-detector@production``. Also
``register ROOT`` (one more model version, re-pointing the alias) and ``compare-readers ROOT``
(direct vs. Feast reads).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES, STATE_VELOCITY

MAIN = Path(__file__).resolve().parents[2]
SLICE_HOURS = 6  # held-out slice: the last hours of the last generated UTC day
STACK_THRESHOLD, STACK_REVIEW_THRESHOLD = 0.5, 0.2  # the stack model's FRAUD and REVIEW bands


def stack_env(root: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for any process of the stack (the setup script, uvicorn)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVING_", "FEAST_"))}
    env.update(
        PROJECT_ROOT=str(root),
        REDIS_URL=redis_url,
        REDIS_MODE="single",  # a cluster stack passes REDIS_MODE="cluster" in ``extra``
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PYTHONPATH=str(MAIN),
        GIT_PYTHON_REFRESH="quiet",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    env.update(extra)
    return env


def prepare_root(root: Path) -> None:
    """A project root: params.yaml copied from the checkout."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(MAIN / "params.yaml", root / "params.yaml")


def run_setup(root: Path, env: dict[str, str], *args: str, timeout: float = 240) -> dict[str, Any]:
    """Run this file as a script and return the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, __file__, *args, str(root)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"stack {args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(
    root: Path, env: dict[str, str], port: int, log_name: str = "api.log", wait_for: str = "/ready"
) -> Any:
    """Start ``uvicorn serving.main:app`` and wait until ``wait_for`` answers 200."""
    import httpx

    log = (root / log_name).open("ab")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "serving.main:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--loop", "uvloop", "--http", "httptools",
        ],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited with {proc.returncode}; see {root / log_name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{wait_for}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"API did not answer {wait_for}; see {root / log_name}")


def clone_root(source: Path, target: Path) -> Path:
    """A copy of a built project root for one more API process (Redis stays shared).

    Each copy has its own Feast registry, offline tables, MLflow store and prediction log, so
    one API's tests (an alias moved, a version deleted, a log read whole) do not see another's.
    The MLflow artifacts stay where the source's runs put them (read only).
    """
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(".run", "prediction_log", "*.log", ".names.json.tmp"),
    )
    return target


# ------------------------------------------------------------------ the script part


def _fit_model(names: list[str], seed: int, kind: str) -> Any:
    """A model on random data: the bare LR pipeline, or a calibrated ``ScoringModel``.

    ``kind`` ``lightgbm`` fits LightGBM with the repo's ``train.lightgbm`` hyperparameters on
    enough rows (20k) for full-size trees, so its TreeSHAP cost per request is the real one.
    """
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = 200 if kind == "logistic_regression" else 20_000
    X = pd.DataFrame(rng.normal(size=(n, len(names))) * 3 + 1, columns=names)
    y = (X[names[0]] + X[names[3]] + rng.normal(size=n) > 2).astype(int)
    if kind == "logistic_regression":  # registered bare, as before calibration
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    from fraud_platform.settings import PROJECT_ROOT, load_params
    from training.model import build_estimator, fit_calibration, fit_estimator, freeze

    params = load_params(PROJECT_ROOT / "params.yaml").train
    fill = X.mean().to_numpy()
    fitted = fit_estimator(kind, build_estimator(kind, params, seed), X, y.to_numpy(), fill)
    calibration = fit_calibration(y, freeze(kind, fitted, names, fill).raw_score(X), "platt")
    return freeze(kind, fitted, names, fill, calibration)


def _register_model(
    names: list[str], seed: int, alias: bool = True, service: str | None = None
) -> dict[str, str]:
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    from fraud_platform.contracts import ModelTags
    from fraud_platform.settings import get_settings
    from fraud_platform.tracking import experiment_id
    from training.registry import model_requirements

    settings = get_settings()
    mlflow.set_experiment(experiment_id=experiment_id(settings, "serving-tests"))
    # STACK_MODEL_KIND=lightgbm (bench_serving --model-kind) serves trees instead.
    model = _fit_model(names, seed, os.environ.get("STACK_MODEL_KIND", "logistic_regression"))
    trusted = model.trusted_types() if hasattr(model, "trusted_types") else None
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            skops_trusted_types=trusted,
            pip_requirements=model_requirements(os.environ.get("STACK_MODEL_KIND", "")),
        )
    client = MlflowClient()
    version = str(info.registered_model_version)
    tags = ModelTags(
        threshold=STACK_THRESHOLD,
        review_threshold=STACK_REVIEW_THRESHOLD,
        features=tuple(names),
        feature_service=service or FEATURE_SERVICE_NAME,
    )
    for key, value in tags.to_tags().items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    if alias:
        client.set_registered_model_alias(settings.model_name, settings.model_alias, version)
    return {"version": version, "run_id": run.info.run_id}


_T0 = [time.perf_counter()]


def _lap(what: str) -> None:
    now = time.perf_counter()
    print(f"{what}: {now - _T0[0]:.1f} s", file=sys.stderr)
    _T0[0] = now


def _apply(store: Any, features_dir: Path) -> None:
    """What ``feast apply`` does, for this root: register every object of the definitions."""
    from feature_repo.definitions import fraud_definitions

    store.apply(fraud_definitions(features_dir).objects())


def _setup(root: Path) -> dict[str, Any]:

    from data.generate import generate, write_tables
    from feature_engine.offline.pipeline import build_features
    from feature_engine.store import feature_names, historical_features, materialize, open_store
    from fraud_platform.settings import get_settings, load_params

    settings = get_settings()
    assert settings.project_root == root, (settings.project_root, root)
    params = load_params()
    tables = generate(params.generate, params.seed, n_customers=300, days=3)
    write_tables(tables, settings.paths.raw_dir)
    build_features(settings.paths, params.features, STATE_VELOCITY)
    _lap("offline tables")
    store = open_store(settings)
    _lap("open store")
    _apply(store, settings.paths.features_dir)
    tmp = root / ".names.json.tmp"
    # Feature service -> its features: the first is the default one.
    tmp.write_text(json.dumps({name: feature_names(store, name) for name in SERVICE_TABLES}))
    os.replace(tmp, root / "names.json")  # atomically: ``register`` polls for it
    _lap("apply")
    txns = tables["transactions"]
    last_day = txns["timestamp"].max().floor("D")
    # Half a second before a whole second: no transaction sits exactly on the boundary.
    # Just before a 5-minute boundary: the offline state has one row per 5-minute tile, holding
    # the whole tile, so materializing to a time inside a tile would load the tile's later
    # transactions (slice ones) too.
    slice_start = last_day + timedelta(hours=24 - SLICE_HOURS) - timedelta(microseconds=1)
    held_out = txns[txns["timestamp"] > slice_start].reset_index(drop=True)
    materialize(store, end=slice_start.to_pydatetime())
    _lap("materialize")
    expected = historical_features(store, held_out, FEATURE_SERVICE_NAME, progress=None)
    _lap("historical")
    names = feature_names(store, FEATURE_SERVICE_NAME)
    held_out.to_parquet(root / "slice.parquet")
    expected.to_parquet(root / "expected.parquet")
    # A card and a merchant known before the slice and absent from it: the tests that post to
    # them (later than all the data) must not move the slice's entities past the lateness
    # bound, or the replay of the slice would be late beyond it.
    known = txns[
        (txns["timestamp"] <= slice_start)
        & ~txns["customer_id"].isin(held_out["customer_id"])
        & ~txns["merchant_id"].isin(held_out["merchant_id"])
    ]
    return {
        "names": names,
        "slice_start": slice_start.isoformat(),
        "slice_rows": len(held_out),
        "known_customer": str(known["customer_id"].iloc[-1]),
        "known_merchant": str(known["merchant_id"].iloc[-1]),
        "last_timestamp": txns["timestamp"].max().isoformat(),
        "all_rows": len(txns),
        "all_customers": sorted(txns["customer_id"].unique().tolist()),
        "all_merchants": sorted(txns["merchant_id"].unique().tolist()),
    }


def _compare_readers(root: Path) -> dict[str, Any]:
    """Each fast reader against ``get_online_features``, value and type, on the held-out rows."""
    import pandas as pd

    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.store import open_store, request_row
    from serving.features import DirectReader, FeastReader, OnlineFeaturesReader

    store = open_store()
    layout = RedisLayout(store)
    held_out = pd.read_parquet(root / "slice.parquet")
    rows = [
        request_row(r.customer_id, r.merchant_id, r.timestamp.to_pydatetime(), r.amount, r.lat,
                    r.long)
        for r in held_out.itertuples()
    ]  # fmt: skip
    later = held_out["timestamp"].max() + timedelta(minutes=5)
    rows.append(request_row("nobody", "nowhere", later.to_pydatetime(), 5.0, 1.0, 2.0))

    def typed(read: list[dict[str, Any]]) -> list[list[tuple[str, str, Any]]]:
        return [[(k, type(v).__name__, v) for k, v in row.items()] for row in read]

    expected = typed(OnlineFeaturesReader(store).read(rows))
    readers: dict[str, DirectReader | FeastReader] = {
        "direct": DirectReader(store, layout),
        "feast": FeastReader(store, layout),
    }
    mismatches = {}
    for name, reader in readers.items():
        one_by_one = typed([reader.read([row])[0] for row in rows])
        together = typed(reader.read(rows))
        mismatches[name] = sum(
            a != e or b != e for a, b, e in zip(one_by_one, together, expected, strict=True)
        )
    return {"rows": len(rows), "mismatches": mismatches}


def _register(root: Path) -> dict[str, Any]:
    """Register a model version on the service's features (written by ``setup``) and alias it.

    Started beside ``setup`` to overlap MLflow's slow start with the feature work: it waits for
    ``names.json``, which ``setup`` writes right after applying the definitions.
    """
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.search_experiments()  # creates the tables: the slow part, while setup runs
    names_file = root / "names.json"
    deadline = time.monotonic() + 300
    while not names_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(names_file)
        time.sleep(0.2)
    services = json.loads(names_file.read_text())
    names = services[FEATURE_SERVICE_NAME]
    first = _register_model(names, seed=0)
    # A second version, not aliased yet: the hot-swap test points the alias at it.
    second = _register_model(names, seed=1, alias=False)
    # A third, trained on the v2 service, not aliased: the service-routing test uses it.
    v2 = _register_model(services["fraud_scoring_v2"], 2, False, "fraud_scoring_v2")
    return first | {
        "next_version": second["version"],
        "next_run_id": second["run_id"],
        "v2_version": v2["version"],
    }


def build_stack(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``setup`` and ``register`` side by side; the merged metadata."""
    register = subprocess.Popen(
        [sys.executable, __file__, "register", str(root)],
        env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        meta = run_setup(root, env, "setup")
        out, err = register.communicate(timeout=300)
    finally:
        if register.poll() is None:
            register.kill()
    if register.returncode != 0:
        raise RuntimeError(f"register failed:\n{err[-5000:]}")
    meta["model"] = json.loads(out.strip().splitlines()[-1])
    return meta


def load_or_build_stack(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """The stack's metadata from ``root/meta.json``, building the stack first if it is absent.

    Benchmarks pass ``--root`` to reuse a stack between runs; the build takes minutes.
    """
    meta_file = root / "meta.json"
    if meta_file.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        return meta
    print(f"building the stack in {root} ...", flush=True)
    meta = build_stack(root, env)
    meta_file.write_text(json.dumps(meta))
    return meta


if __name__ == "__main__":
    command, root_arg = sys.argv[1], Path(sys.argv[2])
    commands = {"setup": _setup, "compare-readers": _compare_readers, "register": _register}
    print(json.dumps(commands[command](root_arg)))
