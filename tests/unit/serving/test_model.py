"""The served model: the bundle's arithmetic and explanation, its checks, and the holder's swaps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fraud_platform.contracts import ModelTags
from serving.model import (
    EXPLANATION_SIZE,
    ModelBundle,
    ModelHolder,
    ModelLoadError,
    bundle_from_pipeline,
)

FEATURES = ("f0", "f1", "f2", "f3", "f4", "f5", "f6")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        rng.normal(size=(300, len(FEATURES))) * [1, 2, 3, 4, 5, 6, 7] + 3, columns=FEATURES
    )
    y = (x["f0"] - 0.5 * x["f3"] + rng.normal(size=300) > 1).astype(int)
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y)


def _tags(**change: Any) -> dict[str, str]:
    return ModelTags(threshold=0.7, features=FEATURES).to_tags() | change


def test_bundle_scores_exactly_like_the_pipeline(pipeline: Pipeline) -> None:
    bundle = bundle_from_pipeline(pipeline, "m", "3", "run", _tags())
    assert (bundle.name, bundle.version, bundle.run_id, bundle.threshold) == ("m", "3", "run", 0.7)
    rows = np.random.default_rng(1).normal(size=(50, len(FEATURES))) * 4
    expected = pipeline.predict_proba(pd.DataFrame(rows, columns=FEATURES))[:, 1]
    for row, want in zip(rows, expected, strict=True):
        probability, x, contributions = bundle.score(dict(zip(FEATURES, row, strict=True)))
        assert math.isclose(probability, want, rel_tol=1e-9, abs_tol=1e-12)
        assert x.tolist() == row.tolist()
        assert contributions.sum() + bundle.intercept == pytest.approx(
            math.log(probability / (1 - probability)), rel=1e-6, abs=1e-9
        )


def test_explanation_is_the_five_largest_contributions(pipeline: Pipeline) -> None:
    bundle = bundle_from_pipeline(pipeline, "m", "1", "", _tags())
    values = dict(zip(FEATURES, [10.0, -3.0, 0.0, 8.0, 1.0, 2.0, 30.0], strict=True))
    _, x, contributions = bundle.score(values)
    explanation = bundle.explain(x, contributions)
    assert len(explanation) == EXPLANATION_SIZE == 5
    sizes = [abs(e["contribution"]) for e in explanation]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == max(abs(c) for c in contributions)
    assert {e["feature"] for e in explanation} <= set(FEATURES)
    assert all(e["value"] == values[e["feature"]] for e in explanation)


def test_an_unknown_feature_contributes_nothing(pipeline: Pipeline) -> None:
    bundle = bundle_from_pipeline(pipeline, "m", "1", "", _tags())
    values: dict[str, float | None] = dict.fromkeys(FEATURES, 1.0)
    values["f0"] = None  # merchant_fraud_rate_30d can be unknown online
    _, x, contributions = bundle.score(values)
    assert math.isnan(x[0]) and contributions[0] == 0.0
    same_as_mean = dict(values, f0=float(bundle.mean[0]))
    assert bundle.score(values)[0] == pytest.approx(bundle.score(same_as_mean)[0])
    first = {e["feature"]: e for e in bundle.explain(x, contributions)}
    assert "f0" not in first or first["f0"]["value"] is None


def test_the_training_pipeline_with_its_imputer_scores_nan_exactly_like_sklearn() -> None:
    """The model training registers (mean imputer first) is served with the same arithmetic."""
    from fraud_platform.settings import load_params
    from training.model import build_model

    rng = np.random.default_rng(2)
    x = pd.DataFrame(rng.normal(size=(400, len(FEATURES))) * 3 + 1, columns=FEATURES)
    y = (x["f0"] + x["f1"] + rng.normal(size=400) > 2).astype(int)
    x.loc[rng.random(400) < 0.2, "f1"] = np.nan  # no history: unknown in training too
    model = build_model(load_params().train, seed=0).fit(x, y)
    bundle = bundle_from_pipeline(model, "m", "4", "", _tags())
    rows = rng.normal(size=(30, len(FEATURES))) * 3
    rows[::3, 1] = np.nan
    rows[::4, 5] = np.nan
    expected = model.predict_proba(pd.DataFrame(rows, columns=FEATURES))[:, 1]
    for row, want in zip(rows, expected, strict=True):
        values = {
            f: None if math.isnan(v) else float(v) for f, v in zip(FEATURES, row, strict=True)
        }
        assert math.isclose(bundle.score(values)[0], want, rel_tol=1e-9, abs_tol=1e-12)


def test_an_imputer_other_than_the_mean_is_refused(pipeline: Pipeline) -> None:
    from sklearn.impute import SimpleImputer

    zeros = Pipeline(
        [("impute", SimpleImputer(strategy="constant", fill_value=0.0)), *pipeline.steps]
    )
    with pytest.raises(ModelLoadError, match="expected Pipeline"):
        bundle_from_pipeline(zeros, "m", "2", "", _tags())


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (_tags(threshold="x"), "bad or missing tag"),
        ({"features": ",".join(FEATURES)}, "bad or missing tag"),
        (_tags(threshold="1.5"), "threshold 1.5 or features invalid"),
        (_tags(features="f0,f1"), "do not match the fitted shape"),
    ],
)
def test_bad_tags_or_shapes_are_refused(
    pipeline: Pipeline, tags: dict[str, str], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        bundle_from_pipeline(pipeline, "m", "2", "", tags)


def test_only_the_lr_pipeline_is_served() -> None:
    other = Pipeline([("clf", LogisticRegression())])
    with pytest.raises(ModelLoadError, match="expected Pipeline"):
        bundle_from_pipeline(other, "m", "2", "", _tags())


def _bundle(version: str, features: tuple[str, ...] = ("f",)) -> ModelBundle:
    n = len(features)
    return ModelBundle("m", version, "r", 0.5, features, np.zeros(n), np.ones(n), np.ones(n), 0.0)


def test_holder_swaps_only_to_a_new_version_and_refuses_unknown_features() -> None:
    registry: dict[str, tuple[str, ...]] = {}  # version -> the features the model wants
    alias = ["1"]
    loads: list[str] = []

    def load() -> ModelBundle:
        loads.append(alias[0])
        return _bundle(alias[0], registry.get(alias[0], ("f",)))

    holder = ModelHolder(load, lambda: alias[0], ["f", "g"], poll_seconds=60)
    assert holder.unavailable_reason.startswith("no model loaded yet")
    assert holder.refresh() and holder.bundle is not None and holder.bundle.version == "1"
    assert holder.refresh() is False and loads == ["1"]  # same version: nothing reloaded
    alias[0], registry["2"] = "2", ("f", "h")  # a model that wants a feature we lack
    assert holder.refresh() is False
    assert holder.bundle.version == "1"  # the old one keeps serving
    assert holder.last_error is not None and "lacks: ['h']" in holder.last_error
    registry["2"] = ("g",)
    assert holder.refresh() is True and holder.bundle.version == "2"
    assert holder.last_error is None and holder.unavailable_reason == ""
