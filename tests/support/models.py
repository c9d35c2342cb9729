"""Tiny frozen models for tests that need a servable bundle but no training."""

from __future__ import annotations

import numpy as np

from fraud_platform.scoring_model import LINEAR, Calibration, LinearModel
from serving.model import ModelBundle


def linear_bundle(version: str, features: tuple[str, ...] = ("f",), name: str = "m") -> ModelBundle:
    """A bundle of a regression with unit coefficients on unscaled inputs, threshold 0.5."""
    n = len(features)
    model = LinearModel(
        kind=LINEAR,
        features=features,
        fill=np.zeros(n),
        calibration=Calibration(),
        mean=np.zeros(n),
        scale=np.ones(n),
        coef=np.ones(n),
        intercept=0.0,
    )
    return ModelBundle(name, version, "r", 0.5, model)
