"""The API's model load: the registered model's plain form, without scikit-learn or skops.

Training logs each model twice in one MLflow model (``training.registry.register_model``): the
skops artifact (MLflow's sklearn flavour, for ``mlflow.pyfunc`` users) and its parameters in
JSON (``extra_files/scorer.json``). The API loads the JSON (``serving.model.load_by_alias``), in
a process that then has not imported scikit-learn or skops (~100 MiB), and scores exactly as
the skops artifact does. A version without the JSON (the stack's own, registered bare) still
loads, through skops.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import stack
from tests.support.live_api import Stack

pytestmark = pytest.mark.integration

# A calibrated regression registered the way `fraud train run` registers it, under alias "lean".
_REGISTER = """
from types import SimpleNamespace
import mlflow, numpy as np, pandas as pd
from mlflow import MlflowClient
from fraud_platform.contracts import ModelTags
from fraud_platform.settings import PROJECT_ROOT, get_settings, load_params
from fraud_platform.tracking import experiment_id
from serving.model import load_by_alias
from training.model import build_estimator, fit_calibration, fit_estimator, freeze
from training.registry import register_model

s = get_settings()
names = list(load_by_alias(s.tracking_uri, s.model_name, s.model_alias).features)
rng = np.random.default_rng(1)
x = pd.DataFrame(rng.normal(size=(500, len(names))) * 3 + 1, columns=names)
y = (x[names[0]] + x[names[3]] + rng.normal(size=500) > 2).astype(int).to_numpy()
kind, fill = "logistic_regression", x.mean().to_numpy()
train = load_params(PROJECT_ROOT / "params.yaml").train
fitted = fit_estimator(kind, build_estimator(kind, train, 0), x, y, fill)
raw = freeze(kind, fitted, names, fill).raw_score(x)
model = freeze(kind, fitted, names, fill, fit_calibration(y, raw, "platt"))
mlflow.set_tracking_uri(s.tracking_uri)
mlflow.set_experiment(experiment_id=experiment_id(s, "lean-model"))
with mlflow.start_run():
    result = SimpleNamespace(model=model, kind=kind, features=names)
    version = register_model(result, SimpleNamespace(train=x), s)
client = MlflowClient(s.tracking_uri, s.tracking_uri)
for key, value in ModelTags(threshold=0.5, features=tuple(names)).to_tags().items():
    client.set_model_version_tag(s.model_name, version, key, value)
client.set_registered_model_alias(s.model_name, "lean", version)
"""

_LOAD = """
import json, sys
import numpy as np, pandas as pd
from fraud_platform.settings import get_settings
from serving.model import load_by_alias

s = get_settings()
bundle = load_by_alias(s.tracking_uri, s.model_name, sys.argv[1])
imported = sorted(m for m in ("sklearn", "skops") if m in sys.modules)
import mlflow.sklearn  # the skops artifact of the same version, for the comparison

registered = mlflow.sklearn.load_model(f"models:/{s.model_name}/{bundle.version}")
rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(64, len(bundle.features))) * 10, columns=bundle.features)
a, b = registered.predict_proba(frame), bundle.model.predict_proba(frame)
exact, close = bool((a == b).all()), bool(np.allclose(a, b, rtol=1e-9, atol=1e-12))
print(json.dumps({"imported": imported, "exact": exact, "close": close, "version": bundle.version}))
"""


def _run(env: dict[str, str], root: Path, script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=root,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_the_api_loads_the_plain_form_without_scikit_learn(
    serving_stack: Stack, tmp_path: Path
) -> None:
    root = stack.clone_root(serving_stack.root, tmp_path / "root")
    env = serving_stack.api_env(root)
    _run(env, root, _REGISTER)
    lean = json.loads(_run(env, root, _LOAD, "lean"))
    assert lean["imported"] == [], lean  # neither scikit-learn nor skops in the process
    assert lean["exact"], lean  # the plain form scores exactly like the registered artifact
    bare = json.loads(_run(env, root, _LOAD, "production"))  # registered without the JSON
    # Through skops; a bare pipeline is served as its parameters (to rounding, as before).
    assert bare["imported"] == ["sklearn", "skops"] and bare["close"], bare
    assert bare["version"] != lean["version"]
