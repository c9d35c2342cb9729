"""Freshness: fold a scored transaction (or an arrived label) into the online state in Redis.

Why not ``store.push``: it costs ~5 ms a call here (it re-reads the registry and type-checks on
every call), and Feast's Redis write path *skips* a row whose event time is not newer than the
stored one, which would silently drop the second of two same-second transactions. And a push
is a blind overwrite: two concurrent transactions of one customer would lose one another's
update. So this module writes Feast's own Redis layout directly, through the one adapter that
knows it (:mod:`feature_engine.online.redis_layout`: key, field hashes, value codecs, the client).

One atomic step per entity: compare-and-set in a Lua script (:data:`CAS_SCRIPT`).

1. One round trip reads the states a transaction changes (the card's and the merchant's,
   pipelined; ``HMGET`` of the view's fields).
2. The fold runs here, in Python, with :mod:`feature_engine.state.fold`: the one definition of the
   merge, shared with the batch pipeline. (The state is Feast's protobuf ``ValueProto``
   encoding, which Redis' Lua cannot parse; a fold written again in Lua would be a second copy
   of the feature logic.)
3. One round trip sends, per entity, an ``EVAL`` of the script with a digest of the state the
   fold started from. Inside Redis, atomically: if the stored fields still have that digest,
   the script writes the new state, sets the entity's at-most-once markers and returns 1 (0
   when the marker says the transaction or label was folded before); otherwise it writes
   nothing and returns the fields as they are now, and the fold runs again on those (no read
   round trip, no ``WATCH``/``MULTI``).

So a transaction costs two round trips in all instead of four per entity under ``WATCH``
(watch, read, marker check, ``MULTI``/``EXEC``), and a concurrent writer costs one more round
trip, not a lost update. The digest covers only the view's own fields: a write to another
view's fields of the same hash (the card's profile) is no conflict.

Redis Cluster (``REDIS_MODE=cluster``). A script may only touch keys of one hash slot. Each
call touches one entity's hash and its markers, which are named in the entity's slot
(:func:`~feature_engine.online.redis_layout.colocated_key`); redis-py's cluster pipeline sends each
call to the node owning that slot. The same code runs on one server. The tests read the result
back through the public ``get_online_features`` to guard the layout.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from feature_engine.online.redis_layout import colocated_key, run_commands
from feature_engine.state.fields import LABEL_STATE_DAYS
from feature_engine.state.fold import (
    Transaction,
    folds_into_tiles,
    merchant_event_key,
    merge_label,
    merge_merchant_transaction,
    merge_transaction,
)

if TYPE_CHECKING:
    from feature_engine.declarations import VelocityTable
    from feature_engine.online.redis_layout import RedisLayout
    from fraud_platform.settings import FeatureParams

MAX_RETRIES = 50  # compare-and-set attempts per entity before giving up

# Compare-and-set of one entity's state (see the module docstring).
# KEYS[1]: the entity's hash; KEYS[2..]: at-most-once markers, all in the hash's slot.
# ARGV: digest of the fields the fold started from, the number of fields n, the n field names,
# "1" when KEYS[2] is a marker that must not exist yet, the markers' lifetime (s), the hash's
# ttl (s, 0 for none), then field/value pairs to write.
# Returns 1 (written), 0 (the marker existed: nothing written) or, when the fields changed
# since they were read, the fields as stored now (nothing written).
CAS_SCRIPT = b"""
local n = tonumber(ARGV[2])
local current = redis.call('HMGET', KEYS[1], unpack(ARGV, 3, 2 + n))
local parts = {}
for i = 1, n do
  local value = current[i]
  if value then parts[i] = #value .. ':' .. value else parts[i] = '-' end
end
if redis.sha1hex(table.concat(parts, ',')) ~= ARGV[1] then
  return current
end
local at = 3 + n
if ARGV[at] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], '1', 'EX', ARGV[at + 1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, at + 3))
local ttl = tonumber(ARGV[at + 2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# How long a folded label's transaction id is remembered: past this, its bucket has left every
# label state anyway (LABEL_STATE_DAYS), so folding it again could change nothing it counts.
LABEL_SEEN_SECONDS = (LABEL_STATE_DAYS + 1) * 86_400
MARK_BATCH = 10_000  # once-marks per pipelined round trip after a rebuild


def state_digest(raw: Sequence[bytes | None]) -> bytes:
    """The digest :data:`CAS_SCRIPT` computes of a view's stored fields (``HMGET`` order).

    Each field as ``<length>:<bytes>``, a missing one as ``-``, joined by commas, SHA-1 in hex.
    """
    parts = [b"-" if value is None else b"%d:%s" % (len(value), value) for value in raw]
    return hashlib.sha1(b",".join(parts)).hexdigest().encode()  # a change check, not security


def _merge_transaction_into(
    state: Mapping[str, Any] | None,
    *,
    merge: Callable[..., dict[str, Any]],
    txn: Transaction,
    lateness_us: int,
    distinct_cap: int,
    table: VelocityTable,
) -> dict[str, Any]:
    return merge(state, txn, lateness_us, distinct_cap, table)


def _latest_ts_us(state: Mapping[str, Any], *, field: str) -> int:
    return int(state[field])


def _into_tiles(state: Mapping[str, Any] | None, *, entity: str, ts_us: int) -> bool:
    return folds_into_tiles(state, entity, ts_us)


def _label_latest_ts_us(state: Mapping[str, Any]) -> int:
    return int(state["ml_latest_ts_us"])


def _always(state: Mapping[str, Any] | None) -> bool:
    return True


class StateWriteConflictError(RuntimeError):
    """Another writer kept changing the same entity's state; the update was not applied."""


@dataclass(frozen=True)
class StateUpdate:
    """One entity's read-merge-write, as :meth:`OnlineStateWriter._apply` runs it.

    Attributes:
        view_name: The state view (``customer_activity``, ``merchant_activity``, ...).
        key: The entity's Redis hash.
        merge: Stored state (``None`` if none) -> new state; pure, so it can run again.
        event_ts_us: New state -> the event time written in Feast's ``_ts`` field.
        once_key: Marker making the update at-most-once whenever ``once_when(state)`` holds.
        once_when: Whether the marker applies to a given stored state.
        once_seconds: How long markers live.
        retired: ``(old, new)`` -> more markers to set with the write.
    """

    view_name: str
    key: bytes
    merge: Callable[[Mapping[str, Any] | None], dict[str, Any]]
    event_ts_us: Callable[[Mapping[str, Any]], int]
    once_key: bytes | None = None
    once_when: Callable[[Mapping[str, Any] | None], bool] = field(default=_always)
    once_seconds: int = LABEL_SEEN_SECONDS
    retired: Callable[[Mapping[str, Any] | None, Mapping[str, Any]], list[bytes]] | None = None


def _merge_label_into(
    state: Mapping[str, Any] | None, *, label_ts_us: int, is_fraud: bool
) -> dict[str, Any]:
    return merge_label(state, label_ts_us, is_fraud)


class OnlineStateWriter:
    """Reads and updates the per-entity state views in Redis, one entity at a time.

    Resolve it once (at API start-up); it keeps the views' layouts and the layout's client.
    """

    def __init__(self, layout: RedisLayout, features: FeatureParams, table: VelocityTable) -> None:
        """Resolve the state views' layout.

        Args:
            layout: Feast's Redis layout of an open feature store (its registry must hold the
                applied views); its client is the one written with.
            features: The state's caps and lateness, as the feature pipeline builds it.
            table: The velocity rows the state is kept for (the union of every service's,
                ``feature_repo.services.STATE_VELOCITY``), as the feature pipeline builds it.
        """
        self._layout = layout
        self._client = layout.client
        self._project = layout.project
        self.distinct_cap = features.distinct_values_cap
        self.lateness_us = features.max_lateness_seconds * 1_000_000
        self.table = table
        reach_us = max(table.state_window_us(e) for e in ("customer", "merchant"))
        self.transaction_seen_seconds = (reach_us + self.lateness_us) // 1_000_000 + 1
        self._views = {
            name: layout.view(name)
            for name in ("customer_activity", "merchant_activity", "merchant_label_stats")
        }
        colocated_key(b"", "")  # builds the slot-tag table now (~0.1 s), not in a request

    def read(self, view_name: str, entity_id: str) -> dict[str, Any] | None:
        """The stored state of one entity, or ``None`` if it has none."""
        return self._layout.read(self._views[view_name], entity_id)

    def _apply(self, updates: Sequence[StateUpdate]) -> list[dict[str, Any] | None]:
        """Fold updates of distinct entities into their states: one read, one CAS round trip.

        Each update's fold runs on the state as read; an entity whose state changed in between
        is folded again on the fields the script returned, and sent again, until it goes
        through (at most :data:`MAX_RETRIES` times).

        With ``once_key``, an update happens at most once whenever ``once_when(state)`` holds:
        the script skips it if the key exists and sets it (expiring after ``once_seconds``)
        with the write. ``retired(old, new)`` names more such keys to set with the write
        (transactions that left the raw region).

        Returns:
            Per update, the new state, or ``None`` when the marker skipped it.

        Raises:
            StateWriteConflictError: When an entity kept changing under every attempt.
        """
        views = [self._views[u.view_name] for u in updates]
        read = [(b"HMGET", u.key, *view.field_keys) for u, view in zip(updates, views, strict=True)]
        stored: dict[int, Sequence[bytes | None]] = dict(
            enumerate(run_commands(self._client, read))
        )
        results: list[dict[str, Any] | None] = [None] * len(updates)
        for _ in range(MAX_RETRIES):
            calls, folded = [], []
            for i, raw in stored.items():
                update, view = updates[i], views[i]
                state = view.decode(raw)
                new = update.merge(state)
                once = update.once_key is not None and update.once_when(state)
                markers = [update.once_key] if once else []
                if update.retired is not None:
                    markers += update.retired(state, new)
                # Only the fields the fold changed: the script writes only onto `raw`.
                mapping = view.encode(new, update.event_ts_us(new), state)
                calls.append(
                    (
                        b"EVAL",
                        CAS_SCRIPT,
                        1 + len(markers),
                        update.key,
                        *markers,
                        state_digest(raw),
                        len(view.field_keys),
                        *view.field_keys,
                        b"1" if once else b"0",
                        update.once_seconds,
                        self._layout.key_ttl or 0,
                        *(item for pair in mapping.items() for item in pair),
                    )
                )
                folded.append((i, new))
            conflicts: dict[int, Sequence[bytes | None]] = {}
            for (i, new), reply in zip(folded, run_commands(self._client, calls), strict=True):
                if isinstance(reply, list):
                    conflicts[i] = reply  # changed since read: fold again on these fields
                else:
                    results[i] = new if reply == 1 else None
            if not conflicts:
                return results
            stored = conflicts
        names = ", ".join(f"{updates[i].view_name} {updates[i].key!r}" for i in stored)
        raise StateWriteConflictError(f"{names}: gave up after {MAX_RETRIES} attempts")

    def ingest_transaction(self, txn: Transaction) -> None:
        """Fold a scored transaction into its customer's and its merchant's online state.

        Idempotent: a retry of a transaction still in the state's raw region is recognised by
        its id. The tiles keep no ids, so a transaction that enters them (folded straight in,
        being older than the raw region, or moved there by a later fold) gets a seen-key in the
        entity's hash slot, living as long as any window can reach it, and a retry with such a
        key is skipped.
        """
        self._apply(self._transaction_updates(txn))

    def ingest_transactions(self, txns: Sequence[Transaction]) -> int:
        """Fold many transactions, in their order per entity, a few round trips for them all.

        The transactions go in rounds: a round holds at most one update per entity (two
        updates of one hash in one compare-and-set batch would each start from the same
        stored state), and a transaction whose card or merchant waits for an earlier one goes
        to a later round, so each entity sees its transactions in the given order, as
        :meth:`ingest_transaction` one by one would. Each round costs two round trips (read,
        compare-and-set), whatever its size. Idempotent per transaction, as
        :meth:`ingest_transaction`.

        Returns:
            How many rounds it took.
        """
        remaining = list(txns)
        rounds = 0
        while remaining:
            taken: list[StateUpdate] = []
            deferred: list[Transaction] = []
            busy: set[tuple[str, str]] = set()
            for txn in remaining:
                keys = {("c", txn.customer_id), ("m", txn.merchant_id)}
                if keys & busy:
                    deferred.append(txn)
                else:
                    taken.extend(self._transaction_updates(txn))
                busy |= keys  # a deferred one blocks its entities too: order is kept
            self._apply(taken)
            rounds += 1
            remaining = deferred
        return rounds

    def state_key(self, view_name: str, entity_id: str) -> bytes:
        """The Redis hash of one entity's state view (``customer_activity``, ...)."""
        return self._key(view_name, entity_id)

    def _transaction_updates(self, txn: Transaction) -> list[StateUpdate]:
        updates = []
        for view_name, entity, entity_id, merge in (
            ("customer_activity", "customer", txn.customer_id, merge_transaction),
            ("merchant_activity", "merchant", txn.merchant_id, merge_merchant_transaction),
        ):
            key = self._key(view_name, entity_id)  # the markers are named after it
            updates.append(
                StateUpdate(
                    view_name,
                    key,
                    functools.partial(
                        _merge_transaction_into,
                        merge=merge,
                        txn=txn,
                        lateness_us=self.lateness_us,
                        distinct_cap=self.distinct_cap,
                        table=self.table,
                    ),
                    functools.partial(_latest_ts_us, field=f"{entity[0]}_latest_ts_us"),
                    once_key=self._seen_key(
                        key, view_name, merchant_event_key(txn.customer_id, txn.transaction_id)
                    ),
                    once_when=functools.partial(_into_tiles, entity=entity, ts_us=txn.ts_us),
                    once_seconds=self.transaction_seen_seconds,
                    retired=functools.partial(
                        self._retired_keys, view_name=view_name, entity_id=entity_id, key=key
                    ),
                )
            )
        return updates

    def _key(self, view_name: str, entity_id: str) -> bytes:
        return self._layout.key(self._views[view_name], entity_id)

    def transaction_seen_key(self, view_name: str, entity_id: str, event_key: str) -> bytes:
        """The key marking a transaction folded into a state's tiles (where ids are not kept).

        Args:
            view_name: ``customer_activity`` or ``merchant_activity``.
            entity_id: The card or merchant.
            event_key: ``merchant_event_key(card, transaction id)``.
        """
        return self._seen_key(self._key(view_name, entity_id), view_name, event_key)

    def _seen_key(self, key: bytes, view_name: str, event_key: str) -> bytes:
        """:meth:`transaction_seen_key` from the entity's hash key, already known."""
        return colocated_key(key, f"{self._project}:txn_seen:{view_name}:{event_key}")

    def _retired_keys(
        self,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any],
        *,
        view_name: str,
        entity_id: str,
        key: bytes,
    ) -> list[bytes]:
        """Seen-keys of the transactions a fold moved from the raw region into the tiles.

        Their ids leave the state, so a later retry of one of them (say, of a transaction that
        came in through ``feast materialize``) is recognised by the key instead.
        """
        field = "c_txn_ids" if view_name == "customer_activity" else "m_txn_ids"
        left = set((old or {}).get(field) or []) - set(new.get(field) or [])
        if view_name == "customer_activity":  # a card's ids are transaction ids: add the card
            left = {merchant_event_key(entity_id, tid) for tid in left}
        return [self._seen_key(key, view_name, event_key) for event_key in sorted(left)]

    def ingest_label(
        self, merchant_id: str, transaction_id: str, label_ts_us: int, is_fraud: bool
    ) -> bool:
        """Fold one label into its merchant's buckets, at most once per transaction id.

        Returns:
            False when a label of this transaction was folded before (nothing changes).
        """
        once_key = self.label_seen_key(merchant_id, transaction_id)
        (new,) = self._apply([self._label_update(merchant_id, label_ts_us, is_fraud, once_key)])
        return new is not None

    def _label_update(
        self, merchant_id: str, label_ts_us: int, is_fraud: bool, once_key: bytes | None = None
    ) -> StateUpdate:
        return StateUpdate(
            "merchant_label_stats",
            self._key("merchant_label_stats", merchant_id),
            functools.partial(_merge_label_into, label_ts_us=label_ts_us, is_fraud=is_fraud),
            _label_latest_ts_us,
            once_key=once_key,
        )

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
        for start in range(0, len(labels), MARK_BATCH):
            with self._client.pipeline(transaction=False) as pipe:
                for merchant_id, transaction_id in labels[start : start + MARK_BATCH]:
                    key = self.label_seen_key(merchant_id, transaction_id)
                    pipe.set(key, b"1", ex=LABEL_SEEN_SECONDS)
                pipe.execute()

    def labels_seen(self, labels: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each label was folded before (its once-mark exists), pipelined.

        Lets a periodic ingestion skip what is counted already at one ``EXISTS`` per label
        instead of a compare-and-set each.

        Args:
            labels: ``(merchant_id, transaction_id)`` pairs.

        Returns:
            One flag per pair, in order.
        """
        seen: list[bool] = []
        for start in range(0, len(labels), MARK_BATCH):
            with self._client.pipeline(transaction=False) as pipe:
                for merchant_id, transaction_id in labels[start : start + MARK_BATCH]:
                    pipe.exists(self.label_seen_key(merchant_id, transaction_id))
                seen.extend(bool(found) for found in pipe.execute())
        return seen

    def ingest_labels(self, labels: Sequence[tuple[str, str, int, bool]]) -> int:
        """Fold arrived labels into their merchants' label buckets, each at most once.

        The same once-mark per transaction id as :meth:`ingest_label` (``POST /labels``): a
        label already folded, posted online or loaded by a materialize, is not counted again.

        Args:
            labels: ``(merchant_id, transaction_id, label_timestamp_us, is_fraud)``.

        Returns:
            How many labels were applied (the others were counted before).
        """
        return sum(
            self.ingest_label(merchant_id, transaction_id, label_ts_us, is_fraud)
            for merchant_id, transaction_id, label_ts_us, is_fraud in labels
        )
