"""Freshness: fold a scored transaction (or an arrived label) into the online state in Redis.

Why not ``store.push``: it costs ~5 ms a call here (it re-reads the registry and type-checks on
every call), and Feast's Redis write path *skips* a row whose event time is not newer than the
stored one, which would silently drop the second of two same-second transactions. And a push
is a blind overwrite: two concurrent transactions of one customer would lose one another's
update. So this module writes Feast's own Redis layout directly, through the one adapter that
knows it (:mod:`feature_repo.redis_layout`: key, field hashes, value codecs, the client),
inside an optimistic ``WATCH``/``MULTI`` transaction per entity (read state, merge with
:mod:`feature_repo.logic`, write; retry if another writer got there first). The tests read the
result back through the public ``get_online_features`` to guard the layout.

Redis Cluster (``REDIS_MODE=cluster``). redis-py's cluster pipeline runs such a transaction on
the node that owns the key's hash slot, as long as every key it touches is in that one slot.
Each update here touches one entity's hash only, except a label's at-most-once marker, which
is therefore named in the merchant's slot (:func:`~feature_repo.redis_layout.colocated_key`).
The same code runs on one server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import WatchError

from feature_repo.aggregations import STATE_VELOCITY
from feature_repo.logic import (
    LABEL_STATE_DAYS,
    Transaction,
    folds_into_tiles,
    merchant_event_key,
    merge_label,
    merge_merchant_transaction,
    merge_transaction,
)
from feature_repo.redis_layout import colocated_key

if TYPE_CHECKING:
    from feature_repo.redis_layout import RedisLayout
    from fraud_platform.settings import FeatureParams

MAX_RETRIES = 50
# How long a folded label's transaction id is remembered: past this, its bucket has left every
# label state anyway (LABEL_STATE_DAYS), so folding it again could change nothing it counts.
LABEL_SEEN_SECONDS = (LABEL_STATE_DAYS + 1) * 86_400


def _merge_transaction_into(
    state: Mapping[str, Any] | None,
    *,
    merge: Callable[..., dict[str, Any]],
    txn: Transaction,
    lateness_us: int,
    distinct_cap: int,
) -> dict[str, Any]:
    return merge(state, txn, lateness_us, distinct_cap)


def _latest_ts_us(state: Mapping[str, Any], *, field: str) -> int:
    return int(state[field])


def _into_tiles(state: Mapping[str, Any] | None, *, entity: str, ts_us: int) -> bool:
    return folds_into_tiles(state, entity, ts_us)


class StateWriteConflictError(RuntimeError):
    """Another writer kept changing the same entity's state; the update was not applied."""


def _merge_label_into(
    state: Mapping[str, Any] | None, *, label_ts_us: int, is_fraud: bool
) -> dict[str, Any]:
    return merge_label(state, label_ts_us, is_fraud)


class OnlineStateWriter:
    """Reads and updates the per-entity state views in Redis, one entity at a time.

    Resolve it once (at API start-up); it keeps the views' layouts and the layout's client.
    """

    def __init__(self, layout: RedisLayout, features: FeatureParams) -> None:
        """Resolve the state views' layout.

        Args:
            layout: Feast's Redis layout of an open feature store (its registry must hold the
                applied views); its client is the one written with.
            features: The state's caps and lateness, as the feature pipeline builds it.
        """
        self._layout = layout
        self._client = layout.client
        self._project = layout.project
        self.distinct_cap = features.distinct_values_cap
        self.lateness_us = features.max_lateness_seconds * 1_000_000
        reach_us = max(STATE_VELOCITY.state_window_us(e) for e in ("customer", "merchant"))
        self.transaction_seen_seconds = (reach_us + self.lateness_us) // 1_000_000 + 1
        self._views = {
            name: layout.view(name)
            for name in ("customer_activity", "merchant_activity", "merchant_label_stats")
        }
        colocated_key(b"", "")  # builds the slot-tag table now (~0.1 s), not in a request

    def read(self, view_name: str, entity_id: str) -> dict[str, Any] | None:
        """The stored state of one entity, or ``None`` if it has none."""
        return self._layout.read(self._views[view_name], entity_id)

    def _update(
        self,
        view_name: str,
        entity_id: str,
        merge: Callable[[Mapping[str, Any] | None], dict[str, Any]],
        event_ts_us: Callable[[Mapping[str, Any]], int],
        once_key: bytes | None = None,
        once_when: Callable[[Mapping[str, Any] | None], bool] = lambda state: True,
        once_seconds: int = LABEL_SEEN_SECONDS,
        retired: Callable[[Mapping[str, Any] | None, Mapping[str, Any]], list[bytes]] | None = None,
    ) -> dict[str, Any] | None:
        """Read-merge-write one entity's state under WATCH; retry on a concurrent write.

        With ``once_key``, the update happens at most once whenever ``once_when(state)`` holds:
        the key is set in the same MULTI (expiring after ``once_seconds``), and an update whose
        key exists already is skipped (returns ``None``). ``retired(old, new)`` names more such
        keys to set in the same MULTI (transactions that left the raw region).
        """
        view = self._views[view_name]
        key = self._layout.key(view, entity_id)
        for _ in range(MAX_RETRIES):
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key) if once_key is None else pipe.watch(key, once_key)
                    state = view.decode(pipe.hmget(key, list(view.field_keys)))
                    once = once_key is not None and once_when(state)
                    if once and pipe.exists(once_key):
                        return None
                    new = merge(state)
                    mapping = view.encode(new, event_ts_us(new))
                    pipe.multi()
                    self._layout.write(pipe, key, mapping)
                    if once:
                        pipe.set(once_key, b"1", ex=once_seconds)
                    for seen in retired(state, new) if retired is not None else ():
                        pipe.set(seen, b"1", ex=once_seconds)
                    pipe.execute()
                    return new
                except WatchError:
                    continue
        raise StateWriteConflictError(f"{view_name} {entity_id}: gave up after {MAX_RETRIES}")

    def ingest_transaction(self, txn: Transaction) -> None:
        """Fold a scored transaction into its customer's and its merchant's online state.

        Idempotent: a retry of a transaction still in the state's raw region is recognised by
        its id. The tiles keep no ids, so a transaction that enters them (folded straight in,
        being older than the raw region, or moved there by a later fold) gets a seen-key in the
        entity's hash slot, living as long as any window can reach it, and a retry with such a
        key is skipped.
        """
        for view_name, entity, entity_id, merge in (
            ("customer_activity", "customer", txn.customer_id, merge_transaction),
            ("merchant_activity", "merchant", txn.merchant_id, merge_merchant_transaction),
        ):
            self._update(
                view_name,
                entity_id,
                functools.partial(
                    _merge_transaction_into,
                    merge=merge,
                    txn=txn,
                    lateness_us=self.lateness_us,
                    distinct_cap=self.distinct_cap,
                ),
                functools.partial(_latest_ts_us, field=f"{entity[0]}_latest_ts_us"),
                once_key=self.transaction_seen_key(
                    view_name, entity_id, merchant_event_key(txn.customer_id, txn.transaction_id)
                ),
                once_when=functools.partial(_into_tiles, entity=entity, ts_us=txn.ts_us),
                once_seconds=self.transaction_seen_seconds,
                retired=functools.partial(
                    self._retired_keys, view_name=view_name, entity_id=entity_id
                ),
            )

    def transaction_seen_key(self, view_name: str, entity_id: str, event_key: str) -> bytes:
        """The key marking a transaction folded into a state's tiles (where ids are not kept).

        Args:
            view_name: ``customer_activity`` or ``merchant_activity``.
            entity_id: The card or merchant.
            event_key: ``merchant_event_key(card, transaction id)``.
        """
        view = self._views[view_name]
        return colocated_key(
            self._layout.key(view, entity_id), f"{self._project}:txn_seen:{view_name}:{event_key}"
        )

    def _retired_keys(
        self,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any],
        *,
        view_name: str,
        entity_id: str,
    ) -> list[bytes]:
        """Seen-keys of the transactions a fold moved from the raw region into the tiles.

        Their ids leave the state, so a later retry of one of them (say, of a transaction that
        came in through ``feast materialize``) is recognised by the key instead.
        """
        field = "c_txn_ids" if view_name == "customer_activity" else "m_txn_ids"
        left = set((old or {}).get(field) or []) - set(new.get(field) or [])
        if view_name == "customer_activity":  # a card's ids are transaction ids: add the card
            left = {merchant_event_key(entity_id, tid) for tid in left}
        return [self.transaction_seen_key(view_name, entity_id, key) for key in sorted(left)]

    def ingest_label(
        self, merchant_id: str, transaction_id: str, label_ts_us: int, is_fraud: bool
    ) -> bool:
        """Fold one label into its merchant's buckets, at most once per transaction id.

        Returns:
            False when a label of this transaction was folded before (nothing changes).
        """
        new = self._update(
            "merchant_label_stats",
            merchant_id,
            functools.partial(_merge_label_into, label_ts_us=label_ts_us, is_fraud=is_fraud),
            lambda new: int(new["ml_latest_ts_us"]),
            once_key=self.label_seen_key(merchant_id, transaction_id),
        )
        return new is not None

    def label_seen_key(self, merchant_id: str, transaction_id: str) -> bytes:
        """The Redis key marking that a transaction's label was folded into its merchant.

        In the merchant's label-state hash slot, so that the marker and the state change in one
        transaction on a Redis Cluster too.
        """
        view = self._views["merchant_label_stats"]
        return colocated_key(
            self._layout.key(view, merchant_id), f"{self._project}:label_seen:{transaction_id}"
        )

    def mark_labels_seen(self, labels: Sequence[tuple[str, str]]) -> None:
        """Mark labels as folded (after a rebuild loaded them through materialize).

        Args:
            labels: ``(merchant_id, transaction_id)`` pairs.
        """
        with self._client.pipeline(transaction=False) as pipe:
            for merchant_id, transaction_id in labels:
                key = self.label_seen_key(merchant_id, transaction_id)
                pipe.set(key, b"1", ex=LABEL_SEEN_SECONDS)
            pipe.execute()

    def ingest_labels(self, labels: Sequence[tuple[str, int, bool]]) -> int:
        """Fold arrived labels into their merchants' label buckets.

        Args:
            labels: ``(merchant_id, label_timestamp_us, is_fraud)`` triples.

        Returns:
            How many labels were applied.
        """
        for merchant_id, label_ts_us, is_fraud in labels:
            self._update(
                "merchant_label_stats",
                merchant_id,
                functools.partial(_merge_label_into, label_ts_us=label_ts_us, is_fraud=is_fraud),
                lambda new: int(new["ml_latest_ts_us"]),
            )
        return len(labels)
