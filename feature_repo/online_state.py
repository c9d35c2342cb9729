"""Freshness: fold a scored transaction (or an arrived label) into the online state in Redis.

Why not ``store.push``: it costs ~5 ms a call here (it re-reads the registry and type-checks on
every call), and Feast's Redis write path *skips* a row whose event time is not newer than the
stored one, which would silently drop the second of two same-second transactions. And a push
is a blind overwrite: two concurrent transactions of one customer would lose one another's
update. So this module writes Feast's own Redis layout directly, in one place:

* key: ``serialize_entity_key(entity) + project`` (Feast's ``_redis_key``);
* fields: ``mmh3("<view>:<feature>")`` -> serialized ``ValueProto``, and ``_ts:<view>``;

inside an optimistic ``WATCH``/``MULTI`` transaction per entity (read state, merge with
:mod:`feature_repo.logic`, write; retry if another writer got there first). The tests read the
result back through the public ``get_online_features`` to guard this internal layout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import (
    DoubleList,
    Int64List,
    StringList,
)
from feast.protos.feast.types.Value_pb2 import (
    Value as ValueProto,
)
from feast.types import Array, Float64, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import WatchError

from feature_repo.logic import (
    LABEL_STATE_DAYS,
    Transaction,
    merge_label,
    merge_merchant_transaction,
    merge_transaction,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from fraud_platform.settings import FeatureParams

MAX_RETRIES = 50
# How long a folded label's transaction id is remembered: past this, its bucket has left every
# label state anyway (LABEL_STATE_DAYS), so folding it again could change nothing it counts.
LABEL_SEEN_SECONDS = (LABEL_STATE_DAYS + 1) * 86_400


class StateWriteConflictError(RuntimeError):
    """Another writer kept changing the same entity's state; the update was not applied."""


Encoder = Callable[[Any], ValueProto]


def _encoder(dtype: Any) -> Encoder:
    """The ValueProto builder of one Feast type; resolved once per field, not per write."""
    encoders: list[tuple[Any, Encoder]] = [
        (Array(Int64), lambda v: ValueProto(int64_list_val=Int64List(val=[int(x) for x in v]))),
        (
            Array(Float64),
            lambda v: ValueProto(double_list_val=DoubleList(val=[float(x) for x in v])),
        ),
        (Array(String), lambda v: ValueProto(string_list_val=StringList(val=[str(x) for x in v]))),
        (Int64, lambda v: ValueProto(int64_val=int(v))),
        (Float64, lambda v: ValueProto(double_val=float(v))),
        (String, lambda v: ValueProto(string_val=str(v))),
    ]
    for feast_type, encode in encoders:
        if dtype == feast_type:
            return encode
    raise TypeError(f"unsupported state field type {dtype}")


def _from_proto(raw: bytes | None) -> Any:
    if raw is None:
        return None
    proto = ValueProto()
    proto.ParseFromString(raw)
    kind = proto.WhichOneof("val")
    if kind is None:
        return None
    value = getattr(proto, kind)
    return list(value.val) if kind.endswith("_list_val") else value


def _merge_label_into(
    state: Mapping[str, Any] | None, *, label_ts_us: int, is_fraud: bool
) -> dict[str, Any]:
    return merge_label(state, label_ts_us, is_fraud)


@dataclass(frozen=True)
class _View:
    """One feature view's Redis layout, resolved once."""

    name: str
    join_key: str
    fields: tuple[str, ...]
    encoders: tuple[Encoder, ...]
    hash_keys: tuple[bytes, ...]
    ts_key: bytes


class OnlineStateWriter:
    """Reads and updates the per-entity state views in Redis, one entity at a time.

    Resolve it once (at API start-up); it keeps the feature views, keys and client.
    """

    def __init__(self, store: FeatureStore, features: FeatureParams) -> None:
        """Resolve the views' layout and the Redis client from an open feature store.

        Args:
            store: An open feature store (its registry must hold the applied views).
            features: The state's caps and lateness, as the feature pipeline builds it.
        """
        config = store.config
        self._project = config.project
        self._key_version = config.entity_key_serialization_version
        # Feast's own Redis client (honours redis_type, password, ssl); internal API, only here.
        online_store: Any = store._get_provider().online_store
        self._client = online_store._get_client(config.online_store)
        self._key_ttl = getattr(config.online_store, "key_ttl_seconds", None)
        self.state_cap = features.state_cap
        self.merchant_state_cap = features.merchant_state_cap
        self.lateness_us = features.max_lateness_seconds * 1_000_000
        self._views = {
            name: self._resolve(store, name)
            for name in ("customer_activity", "merchant_activity", "merchant_label_stats")
        }

    @staticmethod
    def _resolve(store: FeatureStore, name: str) -> _View:
        view = store.get_feature_view(name)
        fields = tuple(f.name for f in view.features)
        return _View(
            name=name,
            join_key=view.join_keys[0],
            fields=fields,
            encoders=tuple(_encoder(f.dtype) for f in view.features),
            hash_keys=tuple(_mmh3(f"{name}:{f}") for f in fields),
            ts_key=f"_ts:{name}".encode(),
        )

    def _key(self, view: _View, entity_id: str) -> bytes:
        entity = EntityKeyProto(
            join_keys=[view.join_key], entity_values=[ValueProto(string_val=entity_id)]
        )
        return _redis_key(self._project, entity, self._key_version)

    def read(self, view_name: str, entity_id: str) -> dict[str, Any] | None:
        """The stored state of one entity, or ``None`` if it has none."""
        view = self._views[view_name]
        raw = self._client.hmget(self._key(view, entity_id), list(view.hash_keys))
        if all(value is None for value in raw):
            return None
        return {name: _from_proto(value) for name, value in zip(view.fields, raw, strict=True)}

    def _update(
        self,
        view_name: str,
        entity_id: str,
        merge: Callable[[Mapping[str, Any] | None], dict[str, Any]],
        event_ts_us: Callable[[Mapping[str, Any]], int],
        once_key: str | None = None,
    ) -> dict[str, Any] | None:
        """Read-merge-write one entity's state under WATCH; retry on a concurrent write.

        With ``once_key``, the update happens at most once: the key is set in the same MULTI,
        and an update whose key exists already is skipped (returns ``None``).
        """
        view = self._views[view_name]
        key = self._key(view, entity_id)
        for _ in range(MAX_RETRIES):
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    if once_key is not None:
                        pipe.watch(key, once_key)
                        if pipe.exists(once_key):
                            return None
                    else:
                        pipe.watch(key)
                    raw = pipe.hmget(key, list(view.hash_keys))
                    current = None
                    if any(value is not None for value in raw):
                        current = {
                            name: _from_proto(value)
                            for name, value in zip(view.fields, raw, strict=True)
                        }
                    new = merge(current)
                    ts = Timestamp()
                    ts.FromMicroseconds(event_ts_us(new))
                    mapping: dict[bytes, bytes] = {view.ts_key: ts.SerializeToString()}
                    for name, encode, hash_key in zip(
                        view.fields, view.encoders, view.hash_keys, strict=True
                    ):
                        mapping[hash_key] = encode(new[name]).SerializeToString()
                    pipe.multi()
                    pipe.hset(key, mapping=mapping)
                    if self._key_ttl:
                        pipe.expire(key, self._key_ttl)
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
            once_key=self.label_seen_key(transaction_id),
        )
        return new is not None

    def label_seen_key(self, transaction_id: str) -> str:
        """The Redis key marking that a transaction's label was folded online."""
        return f"{self._project}:label_seen:{transaction_id}"

    def mark_labels_seen(self, transaction_ids: Sequence[str]) -> None:
        """Mark labels as folded (after a rebuild loaded them through materialize)."""
        with self._client.pipeline(transaction=False) as pipe:
            for transaction_id in transaction_ids:
                pipe.set(self.label_seen_key(transaction_id), b"1", ex=LABEL_SEEN_SECONDS)
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
