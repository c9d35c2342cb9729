"""One great-circle distance for the generator and the features, on the contract's Earth radius."""

from __future__ import annotations

import numpy as np
import pytest

from fraud_platform.geo import EARTH_RADIUS_KM, haversine_km


def test_one_function_one_radius() -> None:
    import data.generate
    import feature_repo.derived

    assert EARTH_RADIUS_KM == 6_371.0088  # the feature contract's mean Earth radius
    assert feature_repo.derived.haversine_km is haversine_km
    assert data.generate.haversine_km is haversine_km
    assert not hasattr(data.generate, "EARTH_RADIUS_KM")
    assert not hasattr(feature_repo.derived, "EARTH_RADIUS_KM")


def test_known_distances() -> None:
    assert haversine_km(40.71, -74.01, 40.71, -74.01) == 0.0
    # A quarter of a meridian, and half the equator: exact fractions of the circumference.
    assert haversine_km(0.0, 0.0, 90.0, 0.0) == pytest.approx(np.pi / 2 * EARTH_RADIUS_KM)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(np.pi * EARTH_RADIUS_KM)
    assert haversine_km(40.71, -74.01, 34.05, -118.24) == pytest.approx(3_936.0, abs=1.0)


def test_generator_distances_are_the_functions() -> None:
    from data.generate import distances_km

    rng = np.random.default_rng(3)
    lats, longs = rng.uniform(-60, 60, 50), rng.uniform(-180, 180, 50)
    got = distances_km(40.71, -74.01, lats, longs)
    expected = [haversine_km(40.71, -74.01, a, b) for a, b in zip(lats, longs, strict=True)]
    assert got.tolist() == expected
