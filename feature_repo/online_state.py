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

from feature_repo.logic import (
    LABEL_STATE_DAYS,
    Transaction,
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
        self.state_cap = features.state_cap
        self.merchant_state_cap = features.merchant_state_cap
        self.lateness_us = features.max_lateness_seconds * 1_000_000
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
    ) -> dict[str, Any] | None:
        """Read-merge-write one entity's state under WATCH; retry on a concurrent write.

        With ``once_key``, the update happens at most once: the key is set in the same MULTI,
        and an update whose key exists already is skipped (returns ``None``).
        """
        view = self._views[view_name]
        key = self._layout.key(view, entity_id)
        for _ in range(MAX_RETRIES):
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    if once_key is not None:
                        pipe.watch(key, once_key)
                        if pipe.exists(once_key):
                            return None
                    else:
                        pipe.watch(key)
                    new = merge(view.decode(pipe.hmget(key, list(view.field_keys))))
                    mapping = view.encode(new, event_ts_us(new))
                    pipe.multi()
                    self._layout.write(pipe, key, mapping)
                    if once_key is not None:
                        pipe.set(once_key, b"1", ex=LABEL_SEEN_SECONDS)
                    pipe.execute()
                    return new
                except WatchError:
                    continue
        raise StateWriteConflictError(f"{view_name} {entity_id}: gave up after {MAX_RETRIES}")

    def ingest_transaction(self, txn: Transaction) -> None:
        """Fold a scored transaction into its customer's and its merchant's online state."""
        self._update(
            "customer_activity",
            txn.customer_id,
            lambda state: merge_transaction(state, txn, self.state_cap, self.lateness_us),
            lambda new: int(new["c_latest_ts_us"]),
        )
        self._update(
            "merchant_activity",
            txn.merchant_id,
            lambda state: merge_merchant_transaction(
                state, txn, self.merchant_state_cap, self.lateness_us
            ),
            lambda new: int(new["m_latest_ts_us"]),
        )

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
