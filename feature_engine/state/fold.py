"""Folding events into the stored state, one at a time: the online writer's and the batch build's.

A card's (or merchant's) velocity state is a function of the *set* of its transactions (see
:mod:`feature_engine.state.tiles`): folding them in one at a time, in any order
(:func:`merge_transaction`), gives the state the batch pipeline computes from the whole history
(:mod:`feature_engine.offline.pipeline` folds each entity's history with the same
:class:`CustomerStateBuilder` and :class:`~feature_engine.state.tiles.EntityState`), equal up to
the order floating-point sums were added in.

Labels as of event time
-----------------------
Labels arrive weeks after their transactions, so the label state a store holds can be *newer*
than a request: Redis materialized to the end of the data knows chargebacks that arrive after
the transactions being replayed. So a label state says from which day on it is complete
(``ml_complete_from_day``): the state folded online (:func:`merge_label`) keeps the label-arrival
days ``[day(L) - LABEL_STATE_DAYS, day(L)]`` around its latest label L, and a request at t is
answered exactly whenever t's window ``[day(t) - 30, day(t))`` starts on or after that day, that
is for any t from ``LABEL_STATE_DAYS - 30`` days before L onward. Earlier, the buckets it needs
were dropped, and the rate is *unknown*: NaN, never a silent 0.

Offline, the point-in-time join never picks a state newer than t, so 30 days are enough there:
every offline row keeps ``[D - 30, D]``, except each merchant's last row, which keeps
``LABEL_STATE_DAYS`` like the online fold (that is the row ``feast materialize`` loads). Training
reads short arrays; Redis gets the long horizon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feature_engine.declarations import VelocityTable
from feature_engine.state.fields import BASELINE_DAYS, LABEL_STATE_DAYS, activity_layout, day_number
from feature_engine.state.tiles import EntityState, StateLayout, raw_boundary_us


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
        table: VelocityTable,
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
    table: VelocityTable,
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
    table: VelocityTable,
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
