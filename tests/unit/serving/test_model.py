"""The served model: the bundle's arithmetic and explanation, its checks, and the holder's swaps.

Both families are served: a regression (registered bare, as before calibration, or frozen with
its calibration) and LightGBM trees. Whichever serves, the explanation is exact: the
contributions plus the base value are the model's raw score (log-odds).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.contracts import ModelTags
from fraud_platform.scoring_model import LinearModel, ScoringModel, TreeModel
from fraud_platform.settings import load_params
from serving.model import (
    EXPLANATION_SIZE,
    ModelBundle,
    ModelHolder,
    ModelLoadError,
    bundle_from_model,
)
from tests.support.models import linear_bundle
from training.model import build_estimator, fit_calibration, fit_estimator, freeze

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
    bundle = bundle_from_model(pipeline, "m", "3", "run", _tags())
    assert (bundle.name, bundle.version, bundle.run_id, bundle.threshold) == ("m", "3", "run", 0.7)
    assert isinstance(bundle.model, LinearModel)  # a bare pipeline: served as registered
    rows = np.random.default_rng(1).normal(size=(50, len(FEATURES))) * 4
    expected = pipeline.predict_proba(pd.DataFrame(rows, columns=FEATURES))[:, 1]
    for row, want in zip(rows, expected, strict=True):
        probability, x, contributions = bundle.score(dict(zip(FEATURES, row, strict=True)))
        assert math.isclose(probability, want, rel_tol=1e-9, abs_tol=1e-12)
        assert x.tolist() == row.tolist()
        assert contributions.sum() + bundle.model.intercept == pytest.approx(
            math.log(probability / (1 - probability)), rel=1e-6, abs=1e-9
        )


def test_explanation_is_the_five_largest_contributions(pipeline: Pipeline) -> None:
    bundle = bundle_from_model(pipeline, "m", "1", "", _tags())
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
    bundle = bundle_from_model(pipeline, "m", "1", "", _tags())
    values: dict[str, float | None] = dict.fromkeys(FEATURES, 1.0)
    values["f0"] = None  # merchant_fraud_rate_30d can be unknown online
    _, x, contributions = bundle.score(values)
    assert math.isnan(x[0]) and contributions[0] == 0.0
    same_as_mean = dict(values, f0=float(bundle.model.fill[0]))
    assert bundle.score(values)[0] == pytest.approx(bundle.score(same_as_mean)[0])
    first = {e["feature"]: e for e in bundle.explain(x, contributions)}
    assert "f0" not in first or first["f0"]["value"] is None


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
        bundle_from_model(pipeline, "m", "2", "", tags)


def test_only_scoring_models_or_the_lr_pipeline_are_served() -> None:
    other = Pipeline([("clf", LogisticRegression())])
    with pytest.raises(ModelLoadError, match="expected Pipeline"):
        bundle_from_model(other, "m", "2", "", _tags())


# ------------------------------------------------------------------ both families, trained


def _training_data(n: int = 2000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(n, len(FEATURES))) * 3 + 1, columns=FEATURES)
    logit = 1.5 * x["f0"] - x["f3"] * (x["f5"] > 1) + 0.3 * x["f1"] ** 2 - 4
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    return x, y


@pytest.fixture(scope="module", params=["logistic_regression", "lightgbm"])
def trained(request: pytest.FixtureRequest) -> ScoringModel:
    """A calibrated model of each family, trained through training/model.py."""
    from fraud_platform.settings import PROJECT_ROOT

    params = load_params(PROJECT_ROOT / "params.yaml").train
    x, y = _training_data()
    kind = request.param
    x.loc[np.arange(len(x)) % 5 == 0, "f1"] = np.nan  # no history: unknown in training too
    fill = x.mean().to_numpy()
    fitted = fit_estimator(kind, build_estimator(kind, params, seed=0), x, y, fill)
    uncalibrated = freeze(kind, fitted, FEATURES, fill)
    calibration = fit_calibration(y, uncalibrated.raw_score(x), "platt")
    return freeze(kind, fitted, FEATURES, fill, calibration)


def test_contributions_plus_base_are_the_raw_score(trained: ScoringModel) -> None:
    x, _ = _training_data(300)
    both = trained.contributions(x)
    raw = trained.raw_score(x)
    assert both.shape == (len(x), len(FEATURES) + 1)
    np.testing.assert_allclose(both.sum(axis=1), raw, rtol=1e-9, atol=1e-9)
    # ... and the raw score is the estimator's own log-odds, not a re-derivation of it.
    if isinstance(trained, TreeModel):
        own = trained.booster.predict(x.to_numpy(), raw_score=True)
    else:
        assert isinstance(trained, LinearModel)
        own = ((x.to_numpy() - trained.mean) / trained.scale) @ trained.coef + trained.intercept
    np.testing.assert_allclose(raw, own, rtol=1e-9, atol=1e-9)
    # The contributions do not all sit in the base value: features explain the score.
    assert np.abs(both[:, :-1]).sum(axis=1).min() > 0


def test_the_plain_form_scores_exactly_like_the_model(
    trained: ScoringModel, tmp_path: Path
) -> None:
    """JSON parameters -> the same model: identical probabilities and contributions, NaN too."""
    import json

    from fraud_platform.scoring_model import PLAIN_FILE, from_plain, to_plain
    from serving.model import load_model_files

    folder = tmp_path / "extra_files"
    folder.mkdir()
    (folder / PLAIN_FILE).write_text(json.dumps(to_plain(trained)))
    plain = load_model_files(tmp_path)  # what the API loads: the plain form, not skops
    assert type(plain) is type(trained) and plain.features == trained.features
    x, _ = _training_data(300)
    x.loc[np.arange(len(x)) % 3 == 0, "f2"] = np.nan
    np.testing.assert_array_equal(plain.predict_proba(x), trained.predict_proba(x))
    np.testing.assert_array_equal(plain.contributions(x), trained.contributions(x))
    row = trained.vector(dict(zip(FEATURES, x.iloc[0], strict=True)))
    assert plain.score_row(row)[0] == trained.score_row(row)[0]
    with pytest.raises(ValueError, match="unknown family"):
        from_plain({**to_plain(trained), "kind": "forest"})
    (folder / PLAIN_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match=PLAIN_FILE):
        load_model_files(tmp_path)


def test_served_explanation_sums_to_the_raw_score_for_either_family(
    trained: ScoringModel,
) -> None:
    bundle = bundle_from_model(trained, "m", "9", "run", _tags())
    assert bundle.kind == trained.kind
    x, _ = _training_data(50)
    expected = trained.predict_proba(x)[:, 1]
    for (_, row), want in zip(x.iterrows(), expected, strict=True):
        probability, values, contributions = bundle.score(row.to_dict())
        _, _, base = trained.score_row(values)
        raw = base + contributions.sum()
        assert math.isclose(probability, want, rel_tol=1e-9, abs_tol=1e-12)
        assert raw == pytest.approx(float(trained.raw_score(row.to_frame().T)[0]), abs=1e-9)
        # The calibrated probability is a monotone map of exactly that raw score.
        assert probability == pytest.approx(float(trained.calibration.apply(np.array(raw))))
        explanation = bundle.explain(values, contributions)
        assert len(explanation) == EXPLANATION_SIZE
        top = max(abs(c) for c in contributions)
        assert abs(explanation[0]["contribution"]) == top


def test_unknown_values_are_scored_as_in_training(trained: ScoringModel) -> None:
    """The regression takes NaN at the training mean; LightGBM keeps NaN (its missing branch)."""
    bundle = bundle_from_model(trained, "m", "9", "run", _tags())
    rows = []
    for k in range(12):
        values: dict[str, float | None] = {f: (k + i) % 7 - 2.0 for i, f in enumerate(FEATURES)}
        values["f1" if k % 2 else "f0"] = None
        rows.append(values)
        frame = pd.DataFrame([values], columns=list(FEATURES), dtype=float)
        assert trained.predict_proba(frame)[0, 1] == pytest.approx(bundle.score(values)[0])
        unknown = "f1" if k % 2 else "f0"
        at_mean = dict(values, **{unknown: float(trained.fill[FEATURES.index(unknown)])})
        if isinstance(trained, LinearModel):
            assert bundle.score(values)[0] == pytest.approx(bundle.score(at_mean)[0], abs=1e-12)
        else:
            assert isinstance(trained, TreeModel)
            x = np.array([[math.nan if v is None else v for v in values.values()]])
            native = trained.booster.predict(x, raw_score=True)[0]
            assert bundle.score(values)[0] == pytest.approx(
                float(trained.calibration.apply(np.array(native)))
            )
    if isinstance(trained, TreeModel):  # the missing branch is not the mean's, somewhere
        frame = pd.DataFrame(rows, columns=list(FEATURES), dtype=float)
        means = frame.fillna(dict(zip(FEATURES, trained.fill, strict=True)))
        assert not np.allclose(trained.raw_score(frame), trained.raw_score(means))


def test_calibrated_probabilities_match_the_observed_rate(trained: ScoringModel) -> None:
    x, y = _training_data(4000)
    probability = trained.predict_proba(x)[:, 1]
    # Fraud is rare here (as in the data): the class-balanced regression's raw sigmoid would
    # sit far above it; calibrated, the mean probability is the observed rate.
    assert probability.mean() == pytest.approx(y.mean(), abs=0.02)


def test_tags_must_name_the_models_features(trained: ScoringModel) -> None:
    with pytest.raises(ModelLoadError, match="do not match the fitted shape"):
        bundle_from_model(trained, "m", "2", "", _tags(features="f0,f1"))


def test_isotonic_calibration_is_sklearns_isotonic_regression() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(5)
    raw = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * raw))).astype(int)
    calibration = fit_calibration(y, raw, "isotonic")
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y)
    probe = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(calibration.apply(probe), reference.predict(probe), atol=1e-12)
    assert [calibration.apply_one(v) for v in probe] == pytest.approx(reference.predict(probe))


def _bundle(version: str, features: tuple[str, ...] = ("f",)) -> ModelBundle:
    return linear_bundle(version, features)


def test_holder_swaps_only_to_a_new_version_and_refuses_unknown_features() -> None:
    registry: dict[str, tuple[str, ...]] = {}  # version -> the features the model wants
    alias = ["1"]
    loads: list[str] = []

    def load() -> ModelBundle:
        loads.append(alias[0])
        return _bundle(alias[0], registry.get(alias[0], ("f",)))

    holder = ModelHolder(
        load, lambda: alias[0], {FEATURE_SERVICE_NAME: ["f", "g"]}, poll_seconds=60
    )
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


def test_holder_serves_a_model_only_with_the_service_it_was_trained_on() -> None:
    alias, services = ["1"], {"1": "fraud_scoring_v2", "2": "fraud_scoring_v9"}

    def load() -> ModelBundle:
        return dataclasses.replace(
            _bundle(alias[0], ("f", "g")), feature_service=services[alias[0]]
        )

    provided = {FEATURE_SERVICE_NAME: ["f"], "fraud_scoring_v2": ["f", "g"]}
    holder = ModelHolder(load, lambda: alias[0], provided, poll_seconds=60)
    assert holder.refresh() and holder.bundle is not None
    assert holder.bundle.feature_service == "fraud_scoring_v2"  # v1 lacks g; v2 has it
    alias[0] = "2"  # trained on a service this API does not serve
    assert holder.refresh() is False and holder.bundle.version == "1"
    assert holder.last_error is not None and "'fraud_scoring_v9'" in holder.last_error


def test_concurrent_requests_get_the_same_answers(trained: ScoringModel) -> None:
    # The API scores on a pool of threads (SERVING_THREADS) with one shared model.
    from concurrent.futures import ThreadPoolExecutor

    bundle = bundle_from_model(trained, "m", "9", "run", _tags())
    rows = [row.to_dict() for _, row in _training_data(200)[0].iterrows()]
    alone = [bundle.score(row)[2] for row in rows]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda row: bundle.score(row)[2], rows * 4))
    for k, contributions in enumerate(together):
        np.testing.assert_array_equal(contributions, alone[k % len(rows)])
