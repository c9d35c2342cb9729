"""Features at request time: what the on-demand view runs, offline and online alike.

Why state plus on-demand features
---------------------------------
Feast's ``get_historical_features`` does not compute a time window per entity row: it joins
the latest feature row whose timestamp is <= the row's timestamp. And Feast never filters
online reads by ttl, so a precomputed ``txn_count_1h`` in Redis would go stale. So we store,
per customer and per merchant, a compact *velocity state* (raw events of the last lateness
region and tiles of partial aggregates before it: :mod:`feature_engine.state.tiles`, derived
from the velocity declarations) and compute every feature *relative to the request time t* in
an on-demand feature view (:func:`transaction_features`). Offline, the point-in-time join picks
the state as of t; online, Redis holds the state as of the last ingested transaction; the same
function filters to ``[floor(t - W, tile), t)`` in both places, so the numbers are identical
however old the state is.

The offline state row of a card's (or merchant's) 5-minute tile is stamped with the tile's first
transaction and holds every transaction of the tile (:mod:`feature_engine.offline.pipeline`), so
the point-in-time join at t picks a state at most 5 minutes newer than t; the strict ``< t``
filter over its raw events is what keeps a transaction (and its same-second peers, and the
tile's later ones) out of its own features, offline and online alike.

The state and late events
-------------------------
There is no cap: every transaction of a window counts, at any volume (the windows' start is
rounded down to a tile, see :mod:`feature_engine.declarations`). Requests may arrive late: a
transaction stamped up to ``L`` (``features.max_lateness_seconds``) before the latest one stored
must still get exactly the reference's features. So the state of a customer whose latest
transaction is at T keeps raw events from ``B = floor(T - L, 5 min)`` on, tiles before B, and::

    anchor = the latest transaction before B (with where it happened)

For any t >= T - L this gives every window's value and the latest transaction before t (a raw
one, whose locations the state keeps, or else the anchor). A request more than L older than the
state (:func:`lateness_us`) is answered from what the state retains and flagged by the API; it
is never called a new customer just because its history was not retained.

What a derived feature sees
---------------------------
The features that are not windowed aggregations are declared in ``feature_repo/derived.py``, one
function each, over a :class:`RequestContext`: the request, the velocity rows' values, and what
the state answers as of t. The 30-day baseline is a point-in-time correct daily snapshot: the
card's amounts and counts over the 30 complete UTC days before t's day,
``[midnight(t) - 30 d, midnight(t))``. The merchant's fraud rate counts only labels whose
``label_timestamp`` falls in the 30 complete UTC days before t's day, so every label it uses was
known strictly before t.

Unknown is not zero
-------------------
A card with no transaction before t has no latest transaction and no baseline, and a card the
platform never saw has no home: the context says so (``None``, zero counts), and the features
that need them are NaN (:data:`UNKNOWN`), offline and online alike, instead of defaults an old
quiet card at home could also have. "Before t" is the same strict ``< t`` as everywhere: a
card's own first transaction is new, its same-second peers too.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, NamedTuple

from feature_engine.declarations import ServiceTable, VelocityTable
from feature_engine.state.fields import (
    BASELINE_DAYS,
    DAY_US,
    HOUR_US,
    REQUEST_FIELDS,
    activity_layout,
    day_number,
    feature_inputs,
)
from feature_engine.state.tiles import window_values as tiled_window_values

UNKNOWN = math.nan
"""The value of a feature that lacks what it needs (a card without history, a stale state)."""


def is_unknown(value: Any) -> bool:
    """Whether a feature value says "unknown": NaN here and offline, null through Feast online."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class LastTransaction(NamedTuple):
    """The card's latest transaction strictly before the request: when and where."""

    ts_us: int
    lat: float
    long: float


class RequestContext:
    """What a derived feature reads: the request, and the stored state's answers as of t.

    Built once per request by :func:`features_for_request`; every field is computed from the
    request and the state alone, so it is the same offline and online.

    Attributes:
        t_us: The request time (µs since the epoch, UTC).
        amount: The transaction's amount.
        lat: Where it happens (latitude).
        long: Where it happens (longitude).
        utc_hour: The request's UTC hour, 0-23.
        velocity: The service's velocity rows' values (card and merchant), by name.
        last_transaction: The card's latest transaction strictly before t, or ``None`` (a new
            card, or history not retained for a request beyond the lateness bound).
        baseline_sum: The card's amounts over the 30 complete UTC days before t's day.
        baseline_count: How many transactions those are (0: no baseline).
        home: The cardholder's home ``(lat, long)``, or ``None`` for a card never seen.
        merchant_fraud_rate: Frauds / labels among the merchant's labels that arrived in the 30
            complete UTC days before t's day; 0.0 with none; NaN when the stored label state is
            too new to hold that window (:func:`merchant_fraud_rate`).
        merchant_window_events: The merchant's transactions in its widest window.
        merchant_labels: The merchant's ``ml_*`` label-day buckets, for label rates over other
            windows (:meth:`merchant_fraud_rate_over`).
        today: The UTC day number of t.
        history_not_retained: A known card whose history before t is not kept (a request beyond
            the lateness bound): not a new card.
    """

    __slots__ = (
        "amount",
        "baseline_count",
        "baseline_sum",
        "history_not_retained",
        "home",
        "last_transaction",
        "lat",
        "long",
        "merchant_fraud_rate",
        "merchant_labels",
        "merchant_window_events",
        "t_us",
        "today",
        "utc_hour",
        "velocity",
    )

    def __init__(
        self,
        request: Mapping[str, Any],
        customer_state: Mapping[str, Any],
        merchant_labels: Mapping[str, Any],
        profile: Mapping[str, Any],
        velocity: dict[str, Any],
        merchant_window_events: int,
    ) -> None:
        t = int(request["txn_timestamp_us"])
        self.t_us = t
        self.amount = float(request["amount"])
        self.lat, self.long = float(request["lat"]), float(request["long"])
        self.utc_hour = (t // HOUR_US) % 24
        self.velocity = velocity
        self.merchant_window_events = merchant_window_events

        # 30-day baseline: complete UTC days before t's day (bucket days ascend).
        today = day_number(t)
        days = customer_state.get("c_day_numbers") or []
        lo, hi = bisect_left(days, today - BASELINE_DAYS), bisect_left(days, today)
        self.baseline_sum = sum((customer_state.get("c_day_sums") or [])[lo:hi], 0.0)
        self.baseline_count = sum((customer_state.get("c_day_counts") or [])[lo:hi])

        self.last_transaction = _last_before(customer_state, t)
        self.history_not_retained = _history_not_retained(customer_state, t)
        home_lat, home_long = profile.get("home_lat"), profile.get("home_long")
        self.home = None if home_lat is None or home_long is None else (home_lat, home_long)
        self.merchant_labels = merchant_labels
        self.today = today
        self.merchant_fraud_rate = merchant_fraud_rate(merchant_labels, today)

    def merchant_fraud_rate_over(self, days: int) -> float:
        """The merchant's fraud rate over the ``days`` complete UTC days before t's day.

        Args:
            days: The window in days, 1 to 30 (:func:`merchant_fraud_rate`).
        """
        return merchant_fraud_rate(self.merchant_labels, self.today, days)


def baseline_start_us(t_us: int) -> int:
    """Where the 30-day baseline of a request at t starts: ``midnight(t) - 30 days``."""
    return (day_number(t_us) - BASELINE_DAYS) * DAY_US


def lookback_start_us(t_us: int, service: ServiceTable) -> int:
    """The earliest instant any customer feature of a service looks at for a request at t.

    The furthest the card's velocity windows reach (its longest window plus that window's tile)
    and the earliest :attr:`~feature_engine.declarations.DerivedFeature.lookback` of its
    derived features (the 30-day baseline, the 30-day cap of the gap since the last
    transaction). A request's features are complete only if the data holds the card's history
    from this instant on: training drops the rows of cards that may have had history before the
    data's start (see ``training/dataset.py``).
    """
    starts = [t_us - service.velocity.state_window_us("customer")]
    starts += [f.lookback(t_us) for f in service.derived if f.lookback is not None]
    return min(starts)


def _last_before(state: Mapping[str, Any], t_us: int) -> LastTransaction | None:
    """The customer's latest transaction strictly before t, if retained.

    The arrays are sorted by (ts, id), so the last element before t is the latest (ties: the
    largest id). When it is one of the recent transactions (``[T - L, T]``, the arrays' tail)
    its location is kept; otherwise, for any t >= T - L, the latest before t is the latest
    before T - L: the anchor.
    """
    ts_list = state.get("c_ts_us") or []
    i = bisect_left(ts_list, t_us) - 1
    lats = state.get("c_recent_lats") or []
    recent_from = len(ts_list) - len(lats)
    if i >= recent_from:
        return LastTransaction(
            ts_list[i], lats[i - recent_from], state["c_recent_longs"][i - recent_from]
        )
    anchor = state.get("c_anchor_ts_us")
    if anchor is not None and 0 <= anchor < t_us:
        return LastTransaction(anchor, state["c_anchor_lat"], state["c_anchor_long"])
    return None


def _history_not_retained(state: Mapping[str, Any], t_us: int) -> bool:
    """A request beyond the lateness bound of a known card: its history before t is not kept.

    Such a card is not new (it has transactions after t); the API flags the request as late.
    """
    latest = state.get("c_latest_ts_us")
    lateness = state.get("c_lateness_us")
    return latest is not None and lateness is not None and t_us < latest - lateness


def lateness_us(request_ts_us: int, state_ts_us: int | None) -> int:
    """How much older a request is than the latest event of a state (0 when not older)."""
    if state_ts_us is None or state_ts_us < 0:
        return 0
    return max(0, state_ts_us - request_ts_us)


def window_values(
    state: Mapping[str, Any], entity: str, t_us: int, table: VelocityTable
) -> tuple[dict[str, Any], int]:
    """The entity's velocity features at t from its state, and its events in its windows.

    Each declared row aggregates ``[floor(t - window, tile), t)`` from the state's tiles and raw
    events (:func:`feature_engine.state.tiles.window_values`); strictly earlier transactions
    only.

    Args:
        state: The entity's state fields (empty for an unknown entity).
        entity: ``customer`` or ``merchant``.
        t_us: The request time.
        table: The service's velocity rows.

    Returns:
        (feature name -> value for the entity's rows, events in its earliest-starting window).
    """
    return tiled_window_values(state, activity_layout(entity, table), t_us)


def merchant_fraud_rate(
    merchant_labels: Mapping[str, Any], today: int, window_days: int = BASELINE_DAYS
) -> float:
    """Frauds / labels among labels that arrived in the complete UTC days before ``today``.

    0.0 when the merchant has no such label; NaN (unknown) when the state is too new to hold
    the whole window (see "Labels as of event time" in :mod:`feature_engine.state.fold`).

    Args:
        merchant_labels: The merchant's ``ml_*`` label-day buckets (empty when none).
        today: UTC day number of the request.
        window_days: How many complete days before ``today`` (30 by default). The label state
            keeps more days than the 30-day window (``LABEL_STATE_DAYS``), so any window up
            to 30 days is exact.
    """
    if not 0 < window_days <= BASELINE_DAYS:
        raise ValueError(f"window_days must be in 1..{BASELINE_DAYS}, got {window_days}")
    days = merchant_labels.get("ml_day_numbers") or []
    if not days:
        return 0.0
    first_needed = today - window_days
    if first_needed < int(merchant_labels["ml_complete_from_day"]):
        return math.nan
    # Days are ascending: the window is one contiguous slice.
    start, stop = bisect_left(days, first_needed), bisect_left(days, today)
    labels = sum(merchant_labels["ml_day_labels"][start:stop])
    frauds = sum(merchant_labels["ml_day_frauds"][start:stop])
    return frauds / labels if labels else 0.0


def features_for_request(
    request: Mapping[str, Any],
    customer_state: Mapping[str, Any],
    merchant_state: Mapping[str, Any],
    merchant_labels: Mapping[str, Any],
    profile: Mapping[str, Any],
    service: ServiceTable,
) -> dict[str, Any]:
    """Every feature of a service for one transaction at time t, from stored state as of <= t.

    Missing state (an unknown customer or merchant) is an empty mapping or ``None`` values.

    Args:
        request: ``txn_timestamp_us`` (t), ``amount``, ``lat``, ``long`` of the transaction.
        customer_state: The customer's ``c_*`` state fields.
        merchant_state: The merchant's ``m_*`` state fields.
        merchant_labels: The merchant's ``ml_*`` label-day buckets.
        profile: ``home_lat``, ``home_long``.
        service: The service's declarations: its velocity rows and derived features.

    Returns:
        A dict keyed by the service's feature names.
    """
    t = int(request["txn_timestamp_us"])
    # Velocity: the declared windows over the card's and the merchant's retained events.
    card, _ = window_values(customer_state, "customer", t, service.velocity)
    merchant, merchant_events = window_values(merchant_state, "merchant", t, service.velocity)
    velocity = {**card, **merchant}
    context = RequestContext(
        request, customer_state, merchant_labels, profile, velocity, merchant_events
    )
    out = dict(velocity)
    for feature in service.derived:
        out[feature.name] = feature.compute(context)
    return out


@cache
def _state_groups(table: VelocityTable) -> tuple[tuple[str, ...], ...]:
    """The on-demand view's state inputs, grouped as features_for_request takes them."""
    return tuple(feature_inputs(table).values())


def transaction_features(
    inputs: Mapping[str, Sequence[Any]], service: ServiceTable
) -> dict[str, list[Any]]:
    """Batch form of :func:`features_for_request` for Feast's python-mode on-demand view.

    Args:
        inputs: Column name -> list of values, one per row (request fields and state fields).
        service: The service's declarations.

    Returns:
        Feature name -> list of values, one per row.
    """
    n_rows = len(inputs["txn_timestamp_us"])
    missing = [None] * n_rows  # a state field Feast did not pass (no such view): no state

    def rows_of(fields: Sequence[str]) -> list[dict[str, Any]]:
        columns = [inputs.get(name) or missing for name in fields]
        return [dict(zip(fields, values, strict=True)) for values in zip(*columns, strict=True)]

    groups = [rows_of(fields) for fields in _state_groups(service.velocity)]
    names = service.feature_names
    out: dict[str, list[Any]] = {name: [] for name in names}
    appends = [(name, out[name].append) for name in names]
    for request, *states in zip(rows_of(REQUEST_FIELDS), *groups, strict=True):
        customer, merchant, labels, profile = states
        row = features_for_request(request, customer, merchant, labels, profile, service)
        for name, append in appends:
            append(row[name])
    return out
