"""The stored state's fields: what each Feast view holds, derived from the declarations.

Four views hold *state*, not finished features (see :mod:`feature_engine.state.request` for
why): ``customer_activity`` and ``merchant_activity`` (the velocity state of
:mod:`feature_engine.state.tiles`: raw events of the lateness region, tiles before it; for a
card also the anchor and the daily buckets of its 30-day baseline), ``merchant_label_stats``
(label-arrival buckets) and ``customer_profile`` (the home). The event arrays' columns and the
tile levels follow the velocity declarations: a column no declared aggregation reads is not
stored. The Feast views' schemas (``feature_repo/definitions.py``), the offline build's Arrow
types and the online writer all read these tables.

Each field is ``(name, Feast value type)``, the type one of ``int64``, ``float64``, ``string``,
``int64[]``, ``float64[]``, ``string[]``.
"""

from __future__ import annotations

from functools import cache

from feature_engine.declarations import MICROS_PER_SECOND, VelocityTable
from feature_engine.state.tiles import StateLayout, layout_of

HOUR_US = 3_600 * MICROS_PER_SECOND
DAY_US = 86_400 * MICROS_PER_SECOND
# The card's baseline and the merchant's label rate look at the complete UTC days before t's
# day: this many (the state keeps the daily buckets they need).
BASELINE_DAYS = 30
# Label-arrival days a merchant's label state keeps behind its latest label: the 30-day window
# plus 60 days of slack, more than any chargeback delay, so a state loaded with all labels known
# at the end of the data still answers requests from the data's last weeks exactly.
LABEL_STATE_DAYS = 90

# Carried with each raw event of a card: where it happened (the last transaction before a
# request is always a raw one or the anchor, so only those locations are needed).
CUSTOMER_CARRIED = ("c_recent_lats", "c_recent_longs")


def activity_layout(entity: str, table: VelocityTable) -> StateLayout:
    """The layout of an entity's velocity state (raw region, tiles, distinct values).

    Args:
        entity: ``customer`` or ``merchant``.
        table: The velocity rows the state is kept for (the union of every service's).
    """
    return layout_of(table, entity, CUSTOMER_CARRIED if entity == "customer" else ())


def event_array_fields(entity: str, table: VelocityTable) -> tuple[tuple[str, str], ...]:
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
def state_fields(table: VelocityTable) -> dict[str, tuple[tuple[str, str], ...]]:
    """Stored view -> its fields, in order, for the state's velocity rows.

    Args:
        table: The velocity rows the state is kept for (the union of every service's:
            ``feature_repo.services.STATE_VELOCITY``).
    """
    return {
        "customer_activity": (*activity_layout("customer", table).fields, *_CUSTOMER_FIXED_FIELDS),
        "merchant_activity": activity_layout("merchant", table).fields,
        "merchant_label_stats": MERCHANT_LABEL_FIELDS,
        "customer_profile": PROFILE_FIELDS,
    }


@cache
def feature_inputs(table: VelocityTable) -> dict[str, tuple[str, ...]]:
    """Stored view -> the fields a service's on-demand view reads (all but the merge-only ids).

    Args:
        table: The service's velocity rows: its on-demand view reads only their fields.
    """
    merge_only = (
        _MERGE_ONLY_FIELDS
        | activity_layout("customer", table).merge_only
        | activity_layout("merchant", table).merge_only
    )
    return {
        view: tuple(name for name, _ in fields if name not in merge_only)
        for view, fields in state_fields(table).items()
    }


# The time of the latest event each state holds: the API compares it with the request's time
# to tell a late request beyond the lateness bound (request.lateness_us).
STATE_TIME_FIELDS = {"customer_activity": "c_latest_ts_us", "merchant_activity": "m_latest_ts_us"}
# The request's own fields the on-demand view reads (Feast's RequestSource).
REQUEST_FIELDS = ("txn_timestamp_us", "amount", "lat", "long")


def day_number(ts_us: int) -> int:
    """UTC day number (days since 1970-01-01) of a timestamp in microseconds."""
    return ts_us // DAY_US
