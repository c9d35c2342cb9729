"""Feast's Redis online layout in one adapter: keys, fields, codecs, the client, reads, writes.

Why an adapter. Four parts of the platform must touch the bytes Feast keeps in Redis: the
freshness writer (:mod:`feature_engine.online.writer`: ``store.push`` costs ~5 ms and drops a
second same-second row), the API's direct reader (``serving/features.py``: one pipelined
``HMGET`` instead of Feast's per-value conversions), the fast materialize engine
(:mod:`feature_engine.materialize`) and the API's fail-fast Redis client
(``serving/online_store.py``, which replaces Feast's client). That layout is internal to Feast
(``feast.infra.online_stores.redis`` and ``.helpers``), so every private Feast name it needs is
imported here and nowhere else; the others go through this module.

The layout (``RedisOnlineStore``, feast 0.67):

* one hash per entity, key ``serialize_entity_key(entity key) + project`` (``_redis_key``);
* per feature, field ``mmh3("<view>:<feature>")`` (4 bytes, ``_mmh3``) -> serialized
  ``ValueProto``;
* field ``_ts:<view>`` -> serialized protobuf ``Timestamp`` of the row's event time, and a row
  replaces the stored one only when its event time is newer;
* ``key_ttl_seconds`` as ``EXPIRE`` on the hash;

where ``<view>`` is the view's name (with a version suffix when the registry's online feature
view versioning is on: ``_versioned_fv_name``).

Materialize (:func:`write_arrow_rows`) writes that layout for whole Arrow tables: values a
column at a time (:mod:`feature_engine.online.value_encoding`), string entity keys from one prefix
(checked against Feast's ``serialize_entity_key`` on every batch), and each batch's reads and
writes as one raw round trip each (:func:`run_commands`), keeping Feast's newer-wins rule.

Pinned: checked with feast 0.67.x, the range ``pyproject.toml`` pins
(``feast[redis,duckdb]>=0.67.0,<0.68``, :data:`FEAST_VERSIONS`). A Feast upgrade that changes
the layout fails loudly in ``tests/integration/features/test_redis_layout.py``, which writes
entities through Feast's public ``write_to_online_store``, compares the Redis bytes with this
module's encoding, and reads this module's writes back through ``get_online_features``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import redis
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.types import Array, Float64, Int64, String
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.utils import HIREDIS_AVAILABLE

from feature_engine.online.value_encoding import serialized_timestamps, serialized_values
from fraud_platform.gc_pause import no_cyclic_gc

if HIREDIS_AVAILABLE:
    import hiredis

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

FEAST_VERSIONS = ">=0.67.0,<0.68"  # the Feast versions this layout was checked against
WRITE_BATCH_ROWS = 10_000  # rows per Redis pipeline round trip (read timestamps, then write)

# ------------------------------------------------------------------ the client


def feast_online_store(store: FeatureStore) -> Any:
    """Feast's configured online store object (a ``RedisOnlineStore`` here)."""
    return store._get_provider().online_store


def client_of(online_store: Any, online_config: Any) -> Any:
    """The redis-py client a Feast Redis online store uses (created on first use)."""
    return online_store._get_client(online_config)


def feast_client(store: FeatureStore) -> Any:
    """Feast's own Redis client of a store (honours ``redis_type``, password, ssl)."""
    return client_of(feast_online_store(store), store.config.online_store)


def use_client(store: FeatureStore, client: Any) -> None:
    """Make Feast's online store hand out ``client`` from now on (its reads use it too)."""
    feast_online_store(store)._client = client


def is_cluster(client: Any) -> bool:
    """Whether a redis-py client talks to a Redis Cluster (``redis_type: redis_cluster``)."""
    return isinstance(client, RedisCluster)


# ------------------------------------------------------------------ cluster slots


@functools.lru_cache(maxsize=1)
def _slot_tags() -> tuple[bytes, ...]:
    """For each of the 16384 hash slots, a short hash tag that maps to it (~0.1 s, once)."""
    tags: dict[int, bytes] = {}
    i = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tag = str(i).encode()
        tags.setdefault(key_slot(tag), tag)
        i += 1
    return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


def colocated_key(anchor: bytes, name: str) -> bytes:
    """A key named ``name`` in the same Redis Cluster hash slot as ``anchor``.

    A cluster runs a script (or a ``MULTI`` transaction) only when every key it touches hashes
    to one slot. Feast's entity keys are binary and hashed whole (Feast adds no hash tag), so a
    key that must share a script with one gets a hash tag of its own (``{...}``: only that
    part is hashed), chosen to land in the entity key's slot. On a single server the tag is
    just part of the name.
    """
    return b"{" + _slot_tags()[key_slot(anchor)] + b"}" + name.encode()


# ------------------------------------------------------------------ names


def redis_view_name(feature_view: Any, config: RepoConfig) -> str:
    """The view's name as Feast writes it into field names (versioned when that is on)."""
    return _versioned_fv_name(feature_view, config)


def field_key(view: str, feature: str) -> bytes:
    """The hash field of one feature of a view: 4 bytes of murmur3."""
    key: bytes = _mmh3(f"{view}:{feature}")
    return key


def ts_field(view: str) -> bytes:
    """The hash field holding a view's event time."""
    return f"_ts:{view}".encode()


def entity_key(config: RepoConfig, join_keys: Sequence[str], values: Sequence[ValueProto]) -> bytes:
    """The Redis key of one entity: its serialized entity key, then the project."""
    proto = EntityKeyProto(join_keys=list(join_keys), entity_values=list(values))
    key: bytes = _redis_key(
        config.project,
        proto,
        entity_key_serialization_version=config.entity_key_serialization_version,
    )
    return key


# ------------------------------------------------------------------ values

Encoder = Callable[[Any], ValueProto]


def encoder(dtype: Any) -> Encoder:
    """The ``ValueProto`` builder of one Feast type; resolve once per field, not per write.

    Raises:
        TypeError: For a type the state views do not use.
    """
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


def python_value(proto: ValueProto) -> Any:
    """A ``ValueProto`` as Feast hands it to a python-mode on-demand function (lists as lists)."""
    kind = proto.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    value = getattr(proto, kind)
    return list(value.val) if kind.endswith("_list_val") else value


def decode_value(raw: bytes | None) -> Any:
    """A stored field's value; ``None`` for a missing field or a null value."""
    if raw is None:
        return None
    proto = ValueProto()
    proto.ParseFromString(raw)
    return python_value(proto)


def encode_timestamp_us(ts_us: int) -> bytes:
    """A ``_ts:<view>`` value from microseconds since the epoch."""
    ts = Timestamp()
    ts.FromMicroseconds(ts_us)
    return ts.SerializeToString()


def timestamp_nanos(raw: bytes | None) -> int:
    """Event time (ns) of a stored ``_ts:<view>`` field; 0 when absent."""
    if not raw:
        return 0
    ts = Timestamp()
    ts.ParseFromString(raw)
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


# ------------------------------------------------------------------ one view, one store


@dataclass(frozen=True)
class ViewLayout:
    """One feature view's Redis layout, resolved once.

    Attributes:
        name: The view as named in Redis field names.
        join_key: Its (single, string) join key.
        fields: The features, in order.
        field_keys: Their hash fields.
        ts_key: The event-time field.
        encoders: One ``ValueProto`` builder per feature.
    """

    name: str
    join_key: str
    fields: tuple[str, ...]
    field_keys: tuple[bytes, ...]
    ts_key: bytes
    encoders: tuple[Encoder, ...]

    def encode(
        self,
        values: Mapping[str, Any],
        event_ts_us: int,
        stored: Mapping[str, Any] | None = None,
    ) -> dict[bytes, bytes]:
        """The hash fields of one entity's row: every feature plus the event time.

        Args:
            values: Feature name -> value.
            event_ts_us: The row's event time.
            stored: The row as stored now, when the write is guaranteed to apply to exactly
                that (the compare-and-set of :mod:`feature_engine.online.writer`): the features
                whose value is unchanged are left out, being stored already.
        """
        mapping = {self.ts_key: encode_timestamp_us(event_ts_us)}
        for name, encode, key in zip(self.fields, self.encoders, self.field_keys, strict=True):
            value = values[name]
            if stored is not None and stored.get(name) == value and value is not None:
                continue
            mapping[key] = encode(value).SerializeToString()
        return mapping

    def decode(self, raw: Sequence[bytes | None]) -> dict[str, Any] | None:
        """Feature name -> value of an ``HMGET`` of :attr:`field_keys`; ``None`` if none is set."""
        if all(value is None for value in raw):
            return None
        return {name: decode_value(value) for name, value in zip(self.fields, raw, strict=True)}


class RedisLayout:
    """Feast's Redis layout for one feature store: views, keys and the client, resolved once."""

    def __init__(self, store: FeatureStore) -> None:
        """Take the store's config and Feast's current client (the API installs its own first).

        Args:
            store: An open feature store with a Redis online store.
        """
        self._store = store
        self.config = store.config
        self.project = self.config.project
        self.key_ttl: int | None = getattr(self.config.online_store, "key_ttl_seconds", None)
        self.client = feast_client(store)

    def view(self, name: str, fields: Sequence[str] | None = None) -> ViewLayout:
        """The layout of a registered feature view (only ``fields``, in that order, if given)."""
        feature_view = self._store.get_feature_view(name)
        features = {f.name: f for f in feature_view.features}
        wanted = list(fields) if fields is not None else list(features)
        redis_name = redis_view_name(feature_view, self.config)
        return ViewLayout(
            name=redis_name,
            join_key=feature_view.join_keys[0],
            fields=tuple(wanted),
            field_keys=tuple(field_key(redis_name, f) for f in wanted),
            ts_key=ts_field(redis_name),
            encoders=tuple(encoder(features[f].dtype) for f in wanted),
        )

    def key(self, view: ViewLayout, entity_id: str) -> bytes:
        """The Redis key of one entity of a view with a string join key."""
        return entity_key(self.config, [view.join_key], [ValueProto(string_val=entity_id)])

    def read(self, view: ViewLayout, entity_id: str) -> dict[str, Any] | None:
        """The stored row of one entity, or ``None`` if it has none."""
        return view.decode(self.client.hmget(self.key(view, entity_id), list(view.field_keys)))

    def write(self, pipe: Any, key: bytes, mapping: Mapping[bytes, bytes]) -> None:
        """Queue one entity's row on a pipeline, with Feast's key ttl."""
        pipe.hset(key, mapping=dict(mapping))
        if self.key_ttl:
            pipe.expire(key, self.key_ttl)


# ------------------------------------------------------------------ Arrow rows (materialize)


def value_bytes(column: pa.Array, value_type: ValueType) -> list[bytes]:
    """Serialized ``ValueProto`` of every row of a column, exactly as Feast's materialize writes.

    Int, float and string columns (and lists of them without null items) are encoded a whole
    column at a time (:mod:`feature_engine.online.value_encoding`); anything else goes through
    Feast's own ``python_values_to_proto_values``.

    Args:
        column: One Arrow column.
        value_type: The feature's Feast value type.

    Returns:
        One serialized ValueProto per row.
    """
    fast = serialized_values(column, value_type)
    if fast is not None:
        return fast
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    protos = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)
    return [proto.SerializeToString() for proto in protos]


def _string_entity_keys(
    config: RepoConfig, join_key: str, column: pa.Array, value_type: ValueType
) -> list[bytes] | None:
    """Redis keys of a single string join key, built as Feast's ``serialize_entity_key`` v3 does.

    Feast's key is ``<count><type><len><join key>`` then ``<type><len><value>`` (little-endian
    uint32s) then the project; only the value part changes from row to row, so the rest is
    built once. The first key is checked against Feast's own function on every call, so a
    change of Feast's format fails loudly instead of writing keys nobody reads.

    Returns:
        One key per row, or ``None`` when this is not a non-null string key under v3.
    """
    if (
        value_type != ValueType.STRING
        or config.entity_key_serialization_version < 3
        or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type))
        or column.null_count
        or not len(column)
    ):
        return None
    name = join_key.encode()
    string = struct.pack("<I", ValueType.STRING.value)
    head = struct.pack("<I", 1) + string + struct.pack("<I", len(name)) + name + string
    tail = config.project.encode()
    ids = [value.encode() for value in column.to_pylist()]
    keys = [head + struct.pack("<I", len(i)) + i + tail for i in ids]
    feasts = entity_key(config, [join_key], [ValueProto(string_val=ids[0].decode())])
    if keys[0] != feasts:
        raise RuntimeError(f"Feast's entity key layout changed: {keys[0]!r} != {feasts!r}")
    return keys


def _entity_keys(config: RepoConfig, join_keys: Mapping[str, ValueType], batch: Any) -> list[bytes]:
    """The Redis key of every row of a batch (Feast's own serialization but for string keys)."""
    if len(join_keys) == 1:
        ((name, value_type),) = join_keys.items()
        fast = _string_entity_keys(config, name, batch.column(name), value_type)
        if fast is not None:
            return fast
    values = [
        python_values_to_proto_values(batch.column(name).to_numpy(zero_copy_only=False), value_type)
        for name, value_type in join_keys.items()
    ]
    return [entity_key(config, list(join_keys), row) for row in zip(*values, strict=True)]


def write_arrow_rows(
    client: Any,
    config: RepoConfig,
    feature_view: Any,
    table: pa.Table,
    batch_rows: int = WRITE_BATCH_ROWS,
) -> int:
    """Write a view's latest rows to Redis in Feast's layout; skip rows not newer than stored.

    Args:
        client: A redis-py client (Feast's, :func:`client_of`).
        config: The repo config (project, key serialization version, ``key_ttl_seconds``).
        feature_view: The view being materialized.
        table: One row per entity: join keys, features, event timestamp.
        batch_rows: Rows per pipeline round trip.

    Returns:
        The number of rows written.
    """
    online_config = config.online_store
    view_name = redis_view_name(feature_view, config)
    ts_key = ts_field(view_name)
    join_keys = {e.name: e.dtype.to_value_type() for e in feature_view.entity_columns}
    features = [(f.name, f.dtype.to_value_type()) for f in feature_view.features]
    field_keys = [field_key(view_name, name) for name, _ in features]
    timestamp_field = feature_view.batch_source.timestamp_field
    ttl = getattr(online_config, "key_ttl_seconds", None)
    skip_dedup = bool(getattr(online_config, "skip_dedup", False))
    written = 0
    with no_cyclic_gc():  # ~20 fresh containers per row, none in a cycle
        for batch in table.combine_chunks().to_batches(max_chunksize=batch_rows):
            keys = _entity_keys(config, join_keys, batch)
            stamps, stamp_nanos = serialized_timestamps(batch.column(timestamp_field))
            values = [value_bytes(batch.column(name), vt) for name, vt in features]
            stored: Sequence[Any] = [None] * len(keys)
            if not skip_dedup:
                stored = run_commands(client, [(b"HGET", key, ts_key) for key in keys])
            newest: dict[bytes, int] = {}
            commands: list[tuple[Any, ...]] = []
            for key, stamp, nanos, previous, row in zip(
                keys, stamps, stamp_nanos, stored, zip(*values, strict=True), strict=True
            ):
                latest = max(timestamp_nanos(previous), newest.get(key, 0))
                if latest and nanos <= latest:
                    continue  # Feast's rule: only a newer event time replaces online state
                newest[key] = nanos
                fields = [ts_key, stamp]
                for item in zip(field_keys, row, strict=True):
                    fields += item
                commands.append((b"HSET", key, *fields))
                if ttl:
                    commands.append((b"EXPIRE", key, ttl))
                written += 1
            run_commands(client, commands)
    return written


def run_commands(client: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send commands in one round trip and return their replies, as a redis-py pipeline does.

    A pipeline spends ~15 us of Python per command (queueing, packing through two wrappers,
    parsing through three); with a plain client this packs them with hiredis when it is
    installed and reads the replies straight off one pooled connection, about a third of that.
    A cluster client keeps its own pipeline, which routes each key to its node. An error reply
    raises, as a pipeline's ``execute()`` does; the connection is then dropped, not reused with
    unread replies on it.

    Args:
        client: A redis-py client.
        commands: Commands as argument tuples (``(b"HSET", key, field, value, ...)``).

    Returns:
        One reply per command.
    """
    if not commands:
        return []
    if not isinstance(client, redis.Redis):
        with client.pipeline(transaction=False) as pipe:
            for name, *args in commands:
                # A cluster pipeline looks its routing policy up by the command's name as text.
                pipe.execute_command(name.decode() if isinstance(name, bytes) else name, *args)
            replies: list[Any] = pipe.execute()
            return replies
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        if HIREDIS_AVAILABLE:
            connection.send_packed_command([b"".join(map(hiredis.pack_command, commands))])
        else:
            connection.send_packed_command(connection.pack_commands(commands))
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
