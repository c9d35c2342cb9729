"""The features that are not windowed aggregations: one function each, declared where it is defined.

Each function takes a :class:`~feature_engine.state.request.RequestContext` (the request, and
what the stored state answers as of the request time t: the card's latest earlier transaction,
its 30-day baseline, its home, the merchant's label rate, the velocity rows' values) and returns
the feature's value. The ``@derived`` line declares it: type, where it sits among the model's
columns, whether it is unknown for a card without history, how far back it looks (for the
training rule on truncated history), and what a simulated traffic shift should do to it (the
drift checks of ``fraud monitor simulate``). The on-demand view runs these functions offline and
online alike, so a feature means the same number in training and at request time.

Add a feature: write its function here, then list it in a new service version in
:mod:`feature_repo.services` (a changed feature list is a new version; the old one keeps
serving the models trained on it), and add its definition to the brute-force reference of the
tests (``tests/support/reference.py``), which fails until it knows every declared feature.

**Unknown is not zero.** A card without history has no gap since its last transaction, no
speed, no baseline and (if the platform never saw it) no home: those features are NaN offline
and null online, never a value an old quiet card at home could also have. ``is_new_customer``
and ``amount_no_baseline`` say what "no history" means.
"""

from __future__ import annotations

import math

from feature_engine.declarations import derived
from feature_engine.state.request import UNKNOWN, RequestContext, baseline_start_us
from fraud_platform.geo import haversine_km  # the one great-circle distance (6,371.0088 km)

MAX_GAP_SECONDS = 30 * 86_400.0  # seconds_since_last_txn is capped here
MIN_TRAVEL_SECONDS = 60.0  # impossible-travel speed divides by at least one minute
NIGHT_HOURS = frozenset(range(0, 6))  # 00:00-05:59 UTC


def _gap_lookback(t_us: int) -> int:
    """The gap since the last transaction is capped at 30 days: it looks back that far."""
    return t_us - int(MAX_GAP_SECONDS * 1_000_000)


# ------------------------------------------------------------------ the request itself


@derived(float, placement="request", drift={"amount": "moves", "burst": "moves"})
def log_amount(x: RequestContext) -> float:
    """``log1p(amount)``."""
    return math.log1p(x.amount)


@derived(int, placement="request", drift={"night": "moves", "burst": "may move"})
def hour_of_day(x: RequestContext) -> int:
    """The UTC hour of the transaction, 0-23."""
    return x.utc_hour


@derived(int, placement="request", drift={"night": "moves", "burst": "may move"})
def is_night(x: RequestContext) -> int:
    """1 when the UTC hour is 00-05."""
    return int(x.utc_hour in NIGHT_HOURS)


# ------------------------------------------------------------------ the card's history


@derived(
    float,
    placement="customer",
    unknown_without_history=True,
    lookback=_gap_lookback,
    drift={"night": "may move", "burst": "moves"},
)
def seconds_since_last_txn(x: RequestContext) -> float:
    """T minus the card's latest earlier transaction, capped at 30 days; unknown without one."""
    if x.last_transaction is None:
        return UNKNOWN  # no gap rather than "30 days ago"
    return min((x.t_us - x.last_transaction.ts_us) / 1_000_000, MAX_GAP_SECONDS)


@derived(
    float,
    placement="customer",
    unknown_without_history=True,
    lookback=baseline_start_us,
    drift={"amount": "moves", "burst": "moves"},
)
def amount_to_avg_30d(x: RequestContext) -> float:
    """The amount / the card's mean amount over the 30 complete UTC days before t's day."""
    if not x.baseline_count or x.baseline_sum <= 0:
        return UNKNOWN  # nothing spent in those days: no baseline to compare with
    return x.amount / (x.baseline_sum / x.baseline_count)


@derived(
    float,
    placement="customer",
    lookback=baseline_start_us,
    drift={"amount": "may move", "burst": "may move"},
)
def amount_no_baseline(x: RequestContext) -> float:
    """The amount when the card has no 30-day baseline (a new or long-quiet card), else 0."""
    # The interaction that lets a linear model give such amounts their own slope, in dollars
    # like amount_to_avg_30d (big first purchases are new-account fraud's; card testing's
    # pennies keep log_amount's slope).
    return 0.0 if x.baseline_count else x.amount


@derived(float, placement="customer", unknown_without_history=True, drift={"burst": "may move"})
def distance_from_home_km(x: RequestContext) -> float:
    """Great-circle km from the cardholder's home; unknown for a card the platform never saw."""
    if x.home is None:
        return UNKNOWN  # an unknown card has no home: not "at home"
    return haversine_km(x.home[0], x.home[1], x.lat, x.long)


@derived(
    float,
    placement="customer",
    unknown_without_history=True,
    lookback=_gap_lookback,
    drift={"night": "may move", "burst": "may move"},
)
def km_per_hour_from_last_txn(x: RequestContext) -> float:
    """Km from the card's latest earlier transaction / max(the gap, 60 s), per hour."""
    last = x.last_transaction
    if last is None:
        return UNKNOWN  # no earlier transaction known: no speed
    gap_seconds = min((x.t_us - last.ts_us) / 1_000_000, MAX_GAP_SECONDS)
    hops_km = haversine_km(last.lat, last.long, x.lat, x.long)
    return hops_km / max(gap_seconds, MIN_TRAVEL_SECONDS) * 3_600.0


@derived(int, placement="customer")
def is_new_customer(x: RequestContext) -> int:
    """1 when the card has no transaction strictly before t (exact offline and online)."""
    # A known card whose history before t is not retained (a request beyond the lateness bound)
    # is not new: it has transactions after t.
    return int(x.last_transaction is None and not x.history_not_retained)


# ------------------------------------------------------------------ the merchant


@derived(float, placement="merchant")
def merchant_fraud_rate_30d(x: RequestContext) -> float:
    """Frauds / labels among the merchant's labels known in the 30 complete days before t's day."""
    # Only labels whose label_timestamp falls in [midnight(t) - 30 d, midnight(t)): labels arrive
    # late, and one not yet known at t must not count. Unknown when the stored label state is
    # too new to hold that window, never a silent 0.
    return x.merchant_fraud_rate


@derived(int, placement="merchant", drift={"night": "may move", "burst": "may move"})
def is_new_merchant(x: RequestContext) -> int:
    """1 when the merchant has no transaction in any of its velocity rows' windows."""
    # The widest merchant window (24 h today) is also the merchant state view's ttl
    # (feature_repo/definitions.py), so the ttl changes no value.
    return int(x.merchant_window_events == 0)


# ------------------------------------------------------------------ the merchant against itself
# A breach changes a merchant before its chargebacks arrive: more traffic than its own month,
# amounts off its own mean, and the first fraud labels within days. These read version 2's
# merchant rows (feature_repo/velocity.py), so only a service with those rows may list them.

MERCHANT_BASELINE_DAYS = 30  # merchant_txn_count_30d's window, in days
SHORT_LABEL_DAYS = 7  # merchant_fraud_rate_7d's window, in days


@derived(float, placement="merchant", drift={"burst": "may move"})
def merchant_txn_24h_to_30d(x: RequestContext) -> float:
    """The merchant's last-24-hour count / its daily mean over 30 days; unknown without one."""
    month = x.velocity["merchant_txn_count_30d"]
    if not month:
        return UNKNOWN  # no transaction in the month: no baseline to compare with
    return x.velocity["merchant_txn_count_24h"] / (month / MERCHANT_BASELINE_DAYS)


@derived(float, placement="merchant", drift={"amount": "moves", "burst": "may move"})
def merchant_amount_to_mean_30d(x: RequestContext) -> float:
    """The amount / the merchant's mean amount over 30 days; unknown without one."""
    mean = x.velocity["merchant_amount_mean_30d"]
    if math.isnan(mean) or mean <= 0:
        return UNKNOWN
    return x.amount / mean


@derived(float, placement="merchant")
def merchant_fraud_rate_7d(x: RequestContext) -> float:
    """Frauds / labels among the merchant's labels known in the 7 complete days before t's day."""
    # The same label-arrival buckets as merchant_fraud_rate_30d over a shorter window: the
    # first chargebacks of a breach move it weeks before they move the 30-day rate.
    return x.merchant_fraud_rate_over(SHORT_LABEL_DAYS)


# The derived features of the first service version, in the model's column order within each
# placement (request, card, merchant).
DERIVED_V1 = (
    log_amount,
    hour_of_day,
    is_night,
    seconds_since_last_txn,
    amount_to_avg_30d,
    amount_no_baseline,
    distance_from_home_km,
    km_per_hour_from_last_txn,
    is_new_customer,
    merchant_fraud_rate_30d,
    is_new_merchant,
)

# Version 2: v1's plus the merchant compared with its own baseline.
DERIVED_V2 = (
    *DERIVED_V1,
    merchant_txn_24h_to_30d,
    merchant_amount_to_mean_30d,
    merchant_fraud_rate_7d,
)
