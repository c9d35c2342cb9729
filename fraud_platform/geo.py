"""Great-circle distance: the one haversine of the platform, on the feature contract's Earth.

The feature contract (:mod:`feature_repo.derived`) measures ``distance_from_home_km``
and ``km_per_hour_from_last_txn`` on a sphere of the mean Earth radius, 6,371.0088 km (IUGG).
The synthetic generator decides what "far from home" means for account-takeover fraud with the
same function, so a generated distance and a served feature agree on what a kilometre is.
(The brute-force reference of the tests keeps its own copy on purpose: it shares no code with
the platform.)

Plain floats and ``math`` on purpose: the feature logic calls it twice per scored transaction,
and NumPy on scalars would cost several times as much.
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6_371.0088  # mean Earth radius (IUGG), the feature contract's


def haversine_km(lat1: float, long1: float, lat2: float, long2: float) -> float:
    """Great-circle distance in kilometres between two points given in degrees.

    Args:
        lat1: Latitude of the first point.
        long1: Longitude of the first point.
        lat2: Latitude of the second point.
        long2: Longitude of the second point.

    Returns:
        The distance on a sphere of :data:`EARTH_RADIUS_KM`.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(long2 - long1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
