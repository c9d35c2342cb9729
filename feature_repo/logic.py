"""Feature logic: pure functions, no I/O. The one definition of every feature.

Why state plus on-demand features
---------------------------------
Feast's ``get_historical_features`` does not compute a time window per entity row: it joins
the latest feature row whose timestamp is <= the row's timestamp. And Feast never filters
online reads by ttl, so a precomputed ``txn_count_1h`` in Redis would go stale. So we store,
per customer and per merchant, a compact *velocity state* (raw events of the last lateness
region and tiles of partial aggregates before it: :mod:`feature_repo.tiles`, derived from
:mod:`feature_repo.aggregations`, the one table of velocity features) and compute every window
feature *relative to the request time t* in an on-demand feature view
(:func:`transaction_features`). Offline, the point-in-time join picks the state as of t;
online, Redis holds the state as of the last ingested transaction; the same function filters
to ``[floor(t - W, tile), t)`` in both places, so the numbers are identical however old the
state is.

The offline state row of a card's (or merchant's) 5-minute tile is stamped with the tile's first
transaction and holds every transaction of the tile (pipeline.py), so the point-in-time join at
t picks a state at most 5 minutes newer than t; the strict ``< t`` filter over its raw events is
what keeps a transaction (and its same-second peers, and the tile's later ones) out of its own
features, offline and online alike.

The state and late events
-------------------------
There is no cap: every transaction of a window counts, at any volume (the windows' start is
rounded down to a tile, see :mod:`feature_repo.aggregations`). Requests may arrive late: a
transaction stamped up to ``L`` (``features.max_lateness_seconds``) before the latest one stored
must still get exactly the reference's features. So the state of a customer whose latest
transaction is at T keeps raw events from ``B = floor(T - L, 5 min)`` on, tiles before B, and::

    anchor = the latest transaction before B (with where it happened)

For any t >= T - L this gives every window's value and the latest transaction before t (a raw
one, whose locations the state keeps, or else the anchor), and it is a function of the set of
transactions alone: folding them in one at a time, in any order (online,
:func:`merge_transaction`), gives the state the batch pipeline computes from the whole history
(equal up to the order floating-point sums were added in). A request more than L older than the
state (:func:`lateness_us`) is answered from what the state retains and flagged by the API; it
is never called a new customer just because its history was not retained.

The 30-day baseline is a point-in-time correct daily snapshot: ``amount_to_avg_30d`` divides the
amount by the customer's average over the 30 complete UTC days before t's day,
``[midnight(t) - 30 d, midnight(t))``. The state holds per-day sums and counts for that.
The merchant fraud rate uses only labels whose ``label_timestamp`` falls in the 30 complete UTC
days before t's day, so every label it uses was known strictly before t.

Unknown is not zero
-------------------
A card with no transaction before t has no gap, no speed and no 30-day baseline, and a card the
platform never saw has no home: those features are NaN (:data:`UNKNOWN_WITHOUT_HISTORY`), offline
and online alike, instead of defaults an old quiet card at home could also have. What "no
history" means is said by ``is_new_customer`` and ``amount_no_baseline`` (the amount when there
is no baseline). "Before t" is the same strict ``< t`` as everywhere: a card's own first
transaction is new, its same-second peers too.

Labels as of event time
-----------------------
Labels arrive weeks after their transactions, so the label state a store holds can be *newer*
than a request: Redis materialized to the end of the data knows chargebacks that arrive after
the transactions being replayed. So a label state says from which day on it is complete
(``ml_complete_from_day``): the state folded online keeps the label-arrival days
``[day(L) - LABEL_STATE_DAYS, day(L)]`` around its latest label L, and a request at t is answered
exactly whenever t's window ``[day(t) - 30, day(t))`` starts on or after that day, that is for
any t from ``LABEL_STATE_DAYS - 30`` days before L onward. Earlier, the buckets it needs were
dropped, and the rate is *unknown*: NaN, never a silent 0.

Offline, the point-in-time join never picks a state newer than t, so 30 days are enough there:
every offline row keeps ``[D - 30, D]``, except each merchant's last row, which keeps
``LABEL_STATE_DAYS`` like the online fold (that is the row ``feast materialize`` loads). Training
reads short arrays; Redis gets the long horizon.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from feature_repo.aggregations import MICROS_PER_SECOND, STATE_VELOCITY, VELOCITY, VelocityTable
from feature_repo.tiles import EntityState, StateLayout, layout_of, raw_boundary_us
from feature_repo.tiles import window_values as tiled_window_values
from fraud_platform.geo import haversine_km  # the one great-circle distance (6,371.0088 km)

HOUR_US = 3_600 * MICROS_PER_SECOND
DAY_US = 86_400 * MICROS_PER_SECOND
BASELINE_DAYS = (
    30  # amount_to_avg_30d and merchant_fraud_rate_30d: complete UTC days before t's day
)
# Label-arrival days a merchant's label state keeps behind its latest label: the 30-day window
# plus 60 days of slack, more than any chargeback delay, so a state loaded with all labels known
# at the end of the data still answers requests from the data's last weeks exactly.
LABEL_STATE_DAYS = 90
MAX_GAP_SECONDS = 30 * 86_400.0  # seconds_since_last_txn is capped here
# "No history" is said explicitly, never with a value an old card could also have: the features
# that need an earlier transaction (seconds_since_last_txn, km_per_hour_from_last_txn), a
# baseline (amount_to_avg_30d) or a home (distance_from_home_km) are NaN without one, beside
# is_new_customer. The model imputes NaN (training's mean: it contributes nothing either way).
UNKNOWN = math.nan
UNKNOWN_WITHOUT_HISTORY = (  # the features that are UNKNOWN for a card without that history
    "seconds_since_last_txn",
    "km_per_hour_from_last_txn",
    "amount_to_avg_30d",
    "distance_from_home_km",
)
MIN_TRAVEL_SECONDS = 60.0  # impossible-travel speed divides by at least one minute
NIGHT_HOURS = frozenset(range(0, 6))  # 00:00-05:59 UTC

# ------------------------------------------------------------------ names of stored state fields

# Each stored field: (name, Feast value type: "int64", "float64", "string", "int64[]",
# "float64[]" or "string[]"). The Feast views' schemas are derived from these tables, and the
# event arrays' columns from the velocity declarations (feature_repo.aggregations): a column no
# declared aggregation reads is not stored.
CUSTOMER_WINDOW_US = STATE_VELOCITY.state_window_us("customer")  # how far the card's windows reach
MERCHANT_WINDOW_US = STATE_VELOCITY.state_window_us("merchant")


# Carried with each raw event of a card: where it happened (the last transaction before a
# request is always a raw one or the anchor, so only those locations are needed).
CUSTOMER_CARRIED = ("c_recent_lats", "c_recent_longs")


def activity_layout(entity: str, table: VelocityTable = STATE_VELOCITY) -> StateLayout:
    """The layout of an entity's velocity state (raw region, tiles, distinct values)."""
    return layout_of(table, entity, CUSTOMER_CARRIED if entity == "customer" else ())


def event_array_fields(
    entity: str, table: VelocityTable = STATE_VELOCITY
) -> tuple[tuple[str, str], ...]:
    """The raw region's arrays: timestamps, ids, then each column the entity's rows read."""
    return activity_layout(entity, table).raw_fields


_CUSTOMER_FIXED_FIELDS: tuple[tuple[str, str], ...] = (
    ("c_recent_lats", "float64[]"),  # where each raw transaction (of [B, T]) happened
    ("c_recent_longs", "float64[]"),
    ("c_anchor_ts_us", "int64"),  # latest transaction before B (-1 when none)
    ("c_anchor_txn_id", "string"),
    ("c_anchor_lat", "float64"),
    ("c_anchor_long", "float64"),
    ("c_day_numbers", "int64[]"),  # UTC day numbers (days since epoch) of the daily buckets
    ("c_day_sums", "float64[]"),  # amount per day
    ("c_day_counts", "int64[]"),  # transactions per day
)
MERCHANT_LABEL_FIELDS: tuple[tuple[str, str], ...] = (
    ("ml_latest_ts_us", "int64"),  # latest label arrival time known for the merchant
    ("ml_day_numbers", "int64[]"),  # UTC day of label arrival
    ("ml_day_labels", "int64[]"),  # labels that arrived that day
    ("ml_day_frauds", "int64[]"),  # of which fraud
    ("ml_complete_from_day", "int64"),  # every label of days >= this one is in the buckets
)
PROFILE_FIELDS: tuple[tuple[str, str], ...] = (("home_lat", "float64"), ("home_long", "float64"))
# The state fields the on-demand view reads. The ids serve only the online merge (ordering and
# idempotency); leaving them out of the view's inputs keeps Feast from joining and converting
# them in every historical and online read.
_MERGE_ONLY_FIELDS = frozenset({"c_anchor_txn_id", "m_latest_ts_us", "m_lateness_us"})


@cache
def state_fields(table: VelocityTable = STATE_VELOCITY) -> dict[str, tuple[tuple[str, str], ...]]:
    """Stored view -> its fields, in order, for a declaration table."""
    return {
        "customer_activity": (*activity_layout("customer", table).fields, *_CUSTOMER_FIXED_FIELDS),
        "merchant_activity": activity_layout("merchant", table).fields,
        "merchant_label_stats": MERCHANT_LABEL_FIELDS,
        "customer_profile": PROFILE_FIELDS,
    }


@cache
def feature_inputs(table: VelocityTable = VELOCITY) -> dict[str, tuple[str, ...]]:
    """Stored view -> the fields the on-demand view reads (all but the merge-only ids)."""
    merge_only = (
        _MERGE_ONLY_FIELDS
        | activity_layout("customer", table).merge_only
        | activity_layout("merchant", table).merge_only
    )
    return {
        view: tuple(name for name, _ in fields if name not in merge_only)
        for view, fields in state_fields(table).items()
    }


STATE_FIELDS = state_fields()
FEATURE_INPUTS = feature_inputs()
# The time of the latest event each state holds: the API compares it with the request's time
# to tell a late request beyond the lateness bound (lateness_us).
STATE_TIME_FIELDS = {"customer_activity": "c_latest_ts_us", "merchant_activity": "m_latest_ts_us"}
REQUEST_FIELDS = ("txn_timestamp_us", "amount", "lat", "long")


@cache
def output_features(table: VelocityTable = VELOCITY) -> tuple[tuple[str, type], ...]:
    """The model's features, in order: the on-demand view's outputs for a declaration table.

    The request-time features, the card's velocity rows, the card's history features, the
    merchant's velocity rows, then merchant risk and the "new" flags.
    """

    def declared(entity: str) -> tuple[tuple[str, type], ...]:
        return tuple((row.name, row.output_type) for row in table.of(entity))

    return (
        ("log_amount", float),
        ("hour_of_day", int),
        ("is_night", int),
        *declared("customer"),
        ("seconds_since_last_txn", float),
        ("amount_to_avg_30d", float),
        ("amount_no_baseline", float),
        ("distance_from_home_km", float),
        ("km_per_hour_from_last_txn", float),
        *declared("merchant"),
        ("merchant_fraud_rate_30d", float),
        ("is_new_customer", int),
        ("is_new_merchant", int),
    )


# The model's features, in order. Feast's feature service is the one list of what a model
# reads; this tuple only fixes the output schema of the function that computes them.
OUTPUT_FEATURES: tuple[tuple[str, type], ...] = output_features()


def day_number(ts_us: int) -> int:
    """UTC day number (days since 1970-01-01) of a timestamp in microseconds."""
    return ts_us // DAY_US


def is_unknown(value: Any) -> bool:
    """Whether a feature value says "unknown": NaN here and offline, null through Feast online."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def lookback_start_us(t_us: int, table: VelocityTable = VELOCITY) -> int:
    """The earliest instant any customer feature of a request at t looks at.

    The longest of the windows declared above: the furthest the card's velocity windows reach
    (its longest window plus that window's tile), the 30-day baseline
    ``[midnight(t) - 30 d, midnight(t))``
    and the 30-day cap of ``seconds_since_last_txn``. A request's features are complete only
    if the data holds the card's history from this instant on: training drops the rows of
    cards that may have had history before the data's start (see ``training/dataset.py``).
    """
    return min(
        t_us - table.state_window_us("customer"),
        (day_number(t_us) - BASELINE_DAYS) * DAY_US,
        t_us - int(MAX_GAP_SECONDS * MICROS_PER_SECOND),
    )


# ------------------------------------------------------------------ on-demand features


def _last_before(state: Mapping[str, Any], t_us: int) -> tuple[int, float, float] | None:
    """(time, lat, long) of the customer's latest transaction strictly before t, if retained.

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
        return ts_list[i], lats[i - recent_from], state["c_recent_longs"][i - recent_from]
    anchor = state.get("c_anchor_ts_us")
    if anchor is not None and 0 <= anchor < t_us:
        return anchor, state["c_anchor_lat"], state["c_anchor_long"]
    return None


def lateness_us(request_ts_us: int, state_ts_us: int | None) -> int:
    """How much older a request is than the latest event of a state (0 when not older)."""
    if state_ts_us is None or state_ts_us < 0:
        return 0
    return max(0, state_ts_us - request_ts_us)


def window_values(
    state: Mapping[str, Any], entity: str, t_us: int, table: VelocityTable = VELOCITY
) -> tuple[dict[str, Any], int]:
    """The entity's velocity features at t from its state, and its events in its windows.

    Each declared row aggregates ``[floor(t - window, tile), t)`` from the state's tiles and raw
    events (:func:`feature_repo.tiles.window_values`); strictly earlier transactions only.

    Args:
        state: The entity's state fields (empty for an unknown entity).
        entity: ``customer`` or ``merchant``.
        t_us: The request time.
        table: The declaration table.

    Returns:
        (feature name -> value for the entity's rows, events in its earliest-starting window).
    """
    return tiled_window_values(state, activity_layout(entity, table), t_us)


def features_for_request(
    request: Mapping[str, Any],
    customer_state: Mapping[str, Any],
    merchant_state: Mapping[str, Any],
    merchant_labels: Mapping[str, Any],
    profile: Mapping[str, Any],
    table: VelocityTable = VELOCITY,
) -> dict[str, Any]:
    """Every model feature of one transaction at time t, from stored state as of <= t.

    Missing state (an unknown customer or merchant) is an empty mapping or ``None`` values.

    Args:
        request: ``txn_timestamp_us`` (t), ``amount``, ``lat``, ``long`` of the transaction.
        customer_state: The customer's ``c_*`` state fields.
        merchant_state: The merchant's ``m_*`` state fields.
        merchant_labels: The merchant's ``ml_*`` label-day buckets.
        profile: ``home_lat``, ``home_long``.
        table: The velocity declarations (:data:`~feature_repo.aggregations.VELOCITY`).

    Returns:
        A dict keyed by the names of :func:`output_features` of ``table``.
    """
    t = int(request["txn_timestamp_us"])
    amount = float(request["amount"])
    lat, long = float(request["lat"]), float(request["long"])
    hour = (t // HOUR_US) % 24

    # Velocity: the declared windows over the card's and the merchant's retained events.
    card_velocity, _ = window_values(customer_state, "customer", t, table)
    merchant_velocity, merchant_events = window_values(merchant_state, "merchant", t, table)

    # 30-day baseline: complete UTC days before t's day (bucket days ascend).
    today = day_number(t)
    days = customer_state.get("c_day_numbers") or []
    lo, hi = bisect_left(days, today - BASELINE_DAYS), bisect_left(days, today)
    day_sum = sum((customer_state.get("c_day_sums") or [])[lo:hi], 0.0)
    day_count = sum((customer_state.get("c_day_counts") or [])[lo:hi])
    # No spending in the 30 complete days before t's day: no baseline to compare with.
    amount_to_avg = amount / (day_sum / day_count) if day_count and day_sum > 0 else UNKNOWN

    last = _last_before(customer_state, t)
    if last is None:
        # No earlier transaction known (a new card, or history not retained for a request
        # beyond the lateness bound): no gap and no speed, rather than "30 days ago, here".
        gap_seconds = speed = UNKNOWN
    else:
        last_ts, last_lat, last_long = last
        gap_seconds = min((t - last_ts) / MICROS_PER_SECOND, MAX_GAP_SECONDS)
        hops_km = haversine_km(last_lat, last_long, lat, long)
        speed = hops_km / max(gap_seconds, MIN_TRAVEL_SECONDS) * 3_600.0

    home_lat, home_long = profile.get("home_lat"), profile.get("home_long")
    from_home = UNKNOWN  # an unknown card has no home: not "at home"
    if home_lat is not None and home_long is not None:
        from_home = haversine_km(home_lat, home_long, lat, long)

    fraud_rate = merchant_fraud_rate(merchant_labels, today)

    return {
        "log_amount": math.log1p(amount),
        "hour_of_day": hour,
        "is_night": int(hour in NIGHT_HOURS),
        **card_velocity,
        "seconds_since_last_txn": gap_seconds,
        "amount_to_avg_30d": amount_to_avg,
        # The amount with nothing to compare it to (no spending in the 30 complete days before
        # t's day: a new or long-quiet card), else 0: the interaction that lets a linear model
        # give such amounts their own slope, in dollars like amount_to_avg_30d (big first
        # purchases are new-account fraud's; card testing's pennies keep log_amount's slope).
        "amount_no_baseline": 0.0 if day_count else amount,
        "distance_from_home_km": from_home,
        "km_per_hour_from_last_txn": speed,
        **merchant_velocity,
        "merchant_fraud_rate_30d": fraud_rate,
        # A new customer has no transaction strictly before t (exact offline and online); a new
        # merchant none in its state window, the longest merchant window (24 h), whose length
        # is also its state view's ttl (see definitions).
        "is_new_customer": int(last is None and not _history_not_retained(customer_state, t)),
        "is_new_merchant": int(merchant_events == 0),
    }


def _history_not_retained(state: Mapping[str, Any], t_us: int) -> bool:
    """A request beyond the lateness bound of a known card: its history before t is not kept.

    Such a card is not new (it has transactions after t); the API flags the request as late.
    """
    latest = state.get("c_latest_ts_us")
    lateness = state.get("c_lateness_us")
    return latest is not None and lateness is not None and t_us < latest - lateness


def merchant_fraud_rate(merchant_labels: Mapping[str, Any], today: int) -> float:
    """Frauds / labels among labels that arrived in the 30 complete UTC days before ``today``.

    0.0 when the merchant has no such label; NaN (unknown) when the state is too new to hold
    the whole window (see "Labels as of event time" above).

    Args:
        merchant_labels: The merchant's ``ml_*`` label-day buckets (empty when none).
        today: UTC day number of the request.
    """
    days = merchant_labels.get("ml_day_numbers") or []
    if not days:
        return 0.0
    first_needed = today - BASELINE_DAYS
    if first_needed < int(merchant_labels["ml_complete_from_day"]):
        return math.nan
    # Days are ascending: the window is one contiguous slice.
    start, stop = bisect_left(days, first_needed), bisect_left(days, today)
    labels = sum(merchant_labels["ml_day_labels"][start:stop])
    frauds = sum(merchant_labels["ml_day_frauds"][start:stop])
    return frauds / labels if labels else 0.0


def _state_groups(table: VelocityTable) -> tuple[tuple[str, ...], ...]:
    """The on-demand view's state inputs, grouped as features_for_request takes them."""
    return tuple(feature_inputs(table).values())


def transaction_features(
    inputs: Mapping[str, Sequence[Any]], table: VelocityTable = VELOCITY
) -> dict[str, list[Any]]:
    """Batch form of :func:`features_for_request` for Feast's python-mode on-demand view.

    Args:
        inputs: Column name -> list of values, one per row (request fields and state fields).
        table: The velocity declarations.

    Returns:
        Feature name -> list of values, one per row.
    """
    n_rows = len(inputs["txn_timestamp_us"])
    missing = [None] * n_rows  # a state field Feast did not pass (no such view): no state

    def rows_of(fields: Sequence[str]) -> list[dict[str, Any]]:
        columns = [inputs.get(name) or missing for name in fields]
        return [dict(zip(fields, values, strict=True)) for values in zip(*columns, strict=True)]

    groups = [rows_of(fields) for fields in _state_groups(table)]
    names = [name for name, _ in output_features(table)]
    out: dict[str, list[Any]] = {name: [] for name in names}
    appends = [(name, out[name].append) for name in names]
    for request, *states in zip(rows_of(REQUEST_FIELDS), *groups, strict=True):
        customer, merchant, labels, profile = states
        row = features_for_request(request, customer, merchant, labels, profile, table)
        for name, append in appends:
            append(row[name])
    return out


# ------------------------------------------------------------------ online state maintenance


@dataclass(frozen=True)
class Transaction:
    """One transaction as the state sees it."""

    transaction_id: str
    customer_id: str
    merchant_id: str
    ts_us: int
    amount: float
    lat: float
    long: float


def folds_into_tiles(state: Mapping[str, Any] | None, entity: str, ts_us: int) -> bool:
    """Whether an event at ``ts_us`` is older than the state's raw region once folded in.

    Such an event goes straight into the tiles, where transaction ids are not kept: folding it
    twice would count it twice, so the online writer folds it at most once (a once-key).
    """
    state = state or {}
    prefix = entity[0]
    latest = state.get(f"{prefix}_latest_ts_us")
    lateness = state.get(f"{prefix}_lateness_us")
    if latest is None or lateness is None or int(latest) < 0:
        return False
    boundary = raw_boundary_us(max(int(latest), ts_us), int(lateness))
    return ts_us < boundary


def _fold_day(
    state: Mapping[str, Any], ts_us: int, amount: float, latest: int, lateness_us: int
) -> dict[str, list[Any]]:
    """The card's daily buckets with one more transaction, pruned to what a request needs.

    A request at t >= T - L uses the complete days ``[day(t) - 30, day(t))``.
    """
    buckets = dict(
        zip(
            state.get("c_day_numbers") or [],
            zip(state.get("c_day_sums") or [], state.get("c_day_counts") or [], strict=True),
            strict=True,
        )
    )
    day = day_number(ts_us)
    day_sum, day_count = buckets.get(day, (0.0, 0))
    buckets[day] = (day_sum + amount, day_count + 1)
    first_kept_day = day_number(latest - lateness_us) - BASELINE_DAYS
    days = sorted(d for d in buckets if d >= first_kept_day)
    return {
        "c_day_numbers": days,
        "c_day_sums": [buckets[d][0] for d in days],
        "c_day_counts": [buckets[d][1] for d in days],
    }


class CustomerStateBuilder:
    """A card's state while its transactions are folded in, in any order.

    The one implementation of the card's state: :func:`merge_transaction` folds one
    transaction into stored fields with it, and the batch pipeline folds a card's whole history
    with it, emitting the fields after each 5-minute tile.
    """

    def __init__(
        self,
        lateness_us: int,
        distinct_cap: int,
        table: VelocityTable = STATE_VELOCITY,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        state = state or {}
        self.lateness_us = lateness_us
        self.layout = activity_layout("customer", table)
        self.velocity = EntityState.from_fields(self.layout, state, lateness_us, distinct_cap)
        anchor = state.get("c_anchor_ts_us")
        if anchor is not None and anchor >= 0:
            self.velocity.anchor = (
                int(anchor),
                state["c_anchor_txn_id"],
                (),
                (state["c_anchor_lat"], state["c_anchor_long"]),
            )
        self.days: dict[str, list[Any]] = {
            name: list(state.get(name) or [])
            for name in ("c_day_numbers", "c_day_sums", "c_day_counts")
        }

    def add(self, txn: Transaction) -> bool:
        """Fold one transaction in; False if it was already in (nothing changes)."""
        event = (
            txn.ts_us,
            txn.transaction_id,
            tuple(getattr(txn, column) for column in self.layout.columns),
            (txn.lat, txn.long),
        )
        if self.velocity.add(event) == "duplicate":
            return False
        self.days = _fold_day(
            self.days, txn.ts_us, txn.amount, self.velocity.latest, self.lateness_us
        )
        return True

    def fields(self) -> dict[str, Any]:
        """The stored ``c_*`` fields of the state."""
        new = self.velocity.to_fields()
        anchor = self.velocity.anchor
        new["c_anchor_ts_us"] = -1 if anchor is None else anchor[0]
        new["c_anchor_txn_id"] = "" if anchor is None else anchor[1]
        new["c_anchor_lat"] = 0.0 if anchor is None else anchor[3][0]
        new["c_anchor_long"] = 0.0 if anchor is None else anchor[3][1]
        new.update(self.days)
        return new


def merge_transaction(
    state: Mapping[str, Any] | None,
    txn: Transaction,
    lateness_us: int,
    distinct_cap: int,
    table: VelocityTable = STATE_VELOCITY,
) -> dict:
    """Fold one transaction into a customer's state (the online twin of the batch pipeline).

    Idempotent for transactions in the raw region (the last lateness region): a transaction id
    already there is not counted twice. An older one goes into the tiles, where ids are not
    kept (:func:`folds_into_tiles`). Works for late (out-of-order) transactions too.

    Args:
        state: The current ``c_*`` fields, or ``None``/empty for an unknown customer.
        txn: The transaction to add.
        lateness_us: The lateness L (``features.max_lateness_seconds``), in microseconds.
        distinct_cap: Distinct values kept per column (``features.distinct_values_cap``).
        table: The velocity declarations (what the state keeps, over which windows).

    Returns:
        The new ``c_*`` fields.
    """
    builder = CustomerStateBuilder(lateness_us, distinct_cap, table, state)
    if not builder.add(txn):
        return dict(state or {})
    return builder.fields()


def merchant_event_key(customer_id: str, transaction_id: str) -> str:
    """A merchant's key of one transaction: (card, transaction id), as two cards may reuse an id.

    The separator, U+001F, is a control character no valid id holds, so the key is unambiguous.
    The batch pipeline builds the same key in SQL (``customer_id || chr(31) || tid``).
    """
    return f"{customer_id}\x1f{transaction_id}"


def merchant_event(
    txn: Transaction, layout: StateLayout
) -> tuple[int, str, tuple[Any, ...], tuple[()]]:
    """A transaction as an event of its merchant's state: keyed by (card, transaction id)."""
    key = merchant_event_key(txn.customer_id, txn.transaction_id)
    return txn.ts_us, key, tuple(getattr(txn, column) for column in layout.columns), ()


def merge_merchant_transaction(
    state: Mapping[str, Any] | None,
    txn: Transaction,
    lateness_us: int,
    distinct_cap: int,
    table: VelocityTable = STATE_VELOCITY,
) -> dict:
    """Fold one transaction into a merchant's state; same tiles and lateness rule as the card's.

    Idempotent by (card, transaction id) in the raw region: a retry is not counted twice, while
    another card's transaction that happens to reuse the id is.
    """
    layout = activity_layout("merchant", table)
    velocity = EntityState.from_fields(layout, state or {}, lateness_us, distinct_cap)
    if velocity.add(merchant_event(txn, layout)) == "duplicate":
        return dict(state or {})
    return velocity.to_fields()


def merge_label(
    state: Mapping[str, Any] | None,
    label_ts_us: int,
    is_fraud: bool,
    keep_days: int = LABEL_STATE_DAYS,
) -> dict:
    """Fold one arrived label into a merchant's label-day buckets (any order gives one result).

    Buckets older than the latest label's day minus ``keep_days`` are dropped, and the state is
    complete from that day on (never earlier than it was); the batch pipeline's last row of a
    merchant is exactly this fold of every label.

    Args:
        state: The current ``ml_*`` fields, or ``None``.
        label_ts_us: When the label arrived.
        is_fraud: The label.
        keep_days: Label-arrival days kept behind the latest label (:data:`LABEL_STATE_DAYS`).

    Returns:
        The new ``ml_*`` fields.
    """
    state = state or {}
    buckets = dict(
        zip(
            state.get("ml_day_numbers") or [],
            zip(state.get("ml_day_labels") or [], state.get("ml_day_frauds") or [], strict=True),
            strict=True,
        )
    )
    day = day_number(label_ts_us)
    n_labels, n_frauds = buckets.get(day, (0, 0))
    buckets[day] = (n_labels + 1, n_frauds + int(is_fraud))
    latest = max(label_ts_us, state.get("ml_latest_ts_us") or label_ts_us)
    complete_from = day_number(latest) - keep_days
    if state.get("ml_complete_from_day") is not None:
        # A state loaded with a shorter horizon does not become complete further back.
        complete_from = max(complete_from, int(state["ml_complete_from_day"]))
    days = sorted(d for d in buckets if d >= complete_from)
    return {
        "ml_latest_ts_us": latest,
        "ml_day_numbers": days,
        "ml_day_labels": [buckets[d][0] for d in days],
        "ml_day_frauds": [buckets[d][1] for d in days],
        "ml_complete_from_day": complete_from,
    }
