"""Online features for the API: the feature service, read through Feast's resolution.

Three readers give the same values, with the same Python types (``tests/integration/serving``
checks it on live Redis, row by row and in batches):

* :class:`FeastReader`, the default (``SERVING_FEATURE_PATH=feast``): the feature service as
  Feast's registry defines it (its on-demand view, the view's source views and request source,
  the output types), resolved once per registry load, i.e. again whenever Feast's registry
  cache expires or is refreshed, the moment ``get_online_features`` would see a ``feast
  apply``. A read is one pipelined ``HMGET`` per entity in Feast's Redis layout (through
  :mod:`feature_engine.online.redis_layout`, the one adapter of that layout, checked byte for byte
  against Feast), then Feast's own ``PythonTransformation`` of the on-demand view, then the
  outputs typed as Feast's online response types them. ~0.2 ms a row here.
* :class:`OnlineFeaturesReader`: ``FeatureStore.get_online_features`` itself, ~1.2 ms a row:
  on every call Feast prepares the request (entity protos, response protos), converts every
  state array to protobuf and back around the on-demand view, and type-checks the view's whole
  input. The reference of the tests, and the fallback for a service the fast path cannot
  resolve (not one python-mode on-demand view).
* :class:`DirectReader` (``SERVING_FEATURE_PATH=direct``): the same resolution done once at
  start-up and never again (a registry change needs a restart), and the on-demand view's
  registered function called directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType

from feature_engine.online.redis_layout import ViewLayout, decode_value
from feature_engine.state.fields import STATE_TIME_FIELDS
from feature_engine.store import feature_names, feature_service
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES

if TYPE_CHECKING:
    from datetime import datetime

    from feast import FeatureService, FeatureStore

    from feature_engine.online.redis_layout import RedisLayout

logger = logging.getLogger(__name__)


class FeatureReader(Protocol):
    """Reads the feature service's values for request rows built with ``request_row``."""

    names: tuple[str, ...]

    def read(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One dict per row: the service's features in order, then the state times.

        The state times are :data:`~feature_engine.state.fields.STATE_TIME_FIELDS`, ``None`` for an
        unknown entity.
        """
        ...


# Feast value types of the service's features -> column types of the prediction log's journal.
_LOG_TYPES = {
    "Int32": "int64",
    "Int64": "int64",
    "Float32": "float64",
    "Float64": "float64",
    "Bool": "bool",
    "String": "string",
}


def feature_types(store: FeatureStore, services: Sequence[str]) -> dict[str, str]:
    """The services' features, in order (the first service's first), with their log types.

    The prediction log has one column per feature any served service has: a model's row fills
    its own service's.

    Raises:
        ValueError: If a feature is not a scalar number, bool or string.
    """
    types = {}
    projections = [
        projection
        for service in services
        for projection in feature_service(store, service).feature_view_projections
    ]
    for projection in projections:
        for feature in projection.features:
            kind = _LOG_TYPES.get(str(feature.dtype))
            if kind is None:
                raise ValueError(f"feature {feature.name}: type {feature.dtype} cannot be logged")
            types[feature.name] = kind
    return types


class OnlineFeaturesReader:
    """Feast's public call as is: ``get_online_features`` for the feature service's features.

    The service's features are asked for by reference, together with the state times
    (:data:`~feature_engine.state.fields.STATE_TIME_FIELDS`) the API compares with the request's
    time.
    Feast resolves the request and converts every value to protobuf and back on each call
    (~1.3 ms a row here); :class:`FeastReader` gives the same values from the same resolution
    done once. Kept as the reference the faster readers are tested against, and as the
    fallback for a service :class:`FeastReader` cannot resolve.
    """

    def __init__(self, store: FeatureStore, service_name: str = FEATURE_SERVICE_NAME) -> None:
        """Resolve the service's feature references and names once."""
        self._store = store
        service: FeatureService = feature_service(store, service_name)
        self.names = tuple(feature_names(store, service_name))
        self._refs = [
            f"{projection.name_to_use()}:{feature.name}"
            for projection in service.feature_view_projections
            for feature in projection.features
        ] + [f"{view}:{field}" for view, field in STATE_TIME_FIELDS.items()]
        self._columns = (*self.names, *STATE_TIME_FIELDS.values())

    def read(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Features (and state times) of each row through Feast."""
        response = self._store.get_online_features(
            features=self._refs, entity_rows=[dict(row) for row in rows]
        ).to_dict()
        return [{name: response[name][i] for name in self._columns} for i in range(len(rows))]


def feast_typed(value_type: ValueType) -> Callable[[Any], Any]:
    """What Feast's online response makes of a Python value of a feature of this type.

    Feast converts an on-demand view's outputs to protobuf of the view's declared type and
    back: an ``int`` of a Float64 feature comes back a ``float``, NaN comes back ``None``.
    The usual scalar types are converted directly; any other type takes Feast's own round
    trip.
    """
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        return lambda v: None if v is None or v != v else float(v)
    if value_type in (ValueType.INT64, ValueType.INT32):
        return lambda v: None if v is None else int(v)
    if value_type == ValueType.BOOL:
        return lambda v: None if v is None else bool(v)
    if value_type == ValueType.STRING:
        return lambda v: None if v is None else str(v)
    return lambda v: feast_value_type_to_python_type(
        python_values_to_proto_values([v], value_type)[0], value_type
    )


@dataclass(frozen=True)
class EntityRead:
    """The views of one entity read together: Feast keeps them in one Redis hash.

    Attributes:
        join_key: The entity's join key (a request field).
        views: Its views (any one gives the Redis key).
        fields: The features of all of them, in order.
        field_keys: Their hash fields.
    """

    join_key: str
    views: tuple[ViewLayout, ...]
    fields: tuple[str, ...]
    field_keys: tuple[bytes, ...]

    @classmethod
    def group(cls, views: Sequence[ViewLayout]) -> tuple[EntityRead, ...]:
        """The views grouped by join key, in first-seen order."""
        by_key: dict[str, list[ViewLayout]] = {}
        for view in views:
            by_key.setdefault(view.join_key, []).append(view)
        return tuple(
            cls(
                join_key,
                tuple(group),
                tuple(f for view in group for f in view.fields),
                tuple(k for view in group for k in view.field_keys),
            )
            for join_key, group in by_key.items()
        )


@dataclass(frozen=True)
class Resolution:
    """Everything a read of the feature service needs, resolved from the registry once.

    Attributes:
        entities: The on-demand view's source views (and the state times), as stored in
            Redis, grouped by entity.
        request_fields: The request fields the on-demand view reads.
        transform: Runs the on-demand view on columns (feature name -> one value per row).
        outputs: The service's features in order, each with how Feast types its values.
        registry_version: When Feast loaded the registry this was resolved from.
    """

    entities: tuple[EntityRead, ...]
    request_fields: tuple[str, ...]
    transform: Callable[[dict[str, list[Any]]], Mapping[str, list[Any]]]
    outputs: tuple[tuple[str, Callable[[Any], Any]], ...]
    registry_version: datetime | None


def resolve(
    store: FeatureStore,
    layout: RedisLayout,
    feast_transform: bool,
    allow_cache: bool = False,
    service_name: str = FEATURE_SERVICE_NAME,
) -> Resolution:
    """Resolve the feature service: its on-demand view, sources, Redis fields and output types.

    Args:
        store: The open feature store (its registry holds the service).
        layout: Feast's Redis layout of that store.
        feast_transform: Run the on-demand view as Feast does (its ``PythonTransformation``,
            inputs also under Feast's ``view__feature`` names); else call its function alone.
        allow_cache: Resolve from Feast's cached registry (just refreshed by the caller).
        service_name: The feature service.

    Returns:
        The resolution, stamped with the registry's load time.

    Raises:
        ValueError: If the service is not one python-mode on-demand view over stored views
            plus request sources (then ``get_online_features`` is the way to read it).
    """
    service = store.get_feature_service(service_name, allow_cache=allow_cache)
    projections = service.feature_view_projections
    odfvs = [store.get_on_demand_feature_view(p.name, allow_registry_cache=allow_cache)
             for p in projections]  # fmt: skip
    if len(odfvs) != 1 or odfvs[0].mode != "python" or odfvs[0].singleton:
        raise ValueError("needs exactly one python-mode (batch) on-demand view")
    odfv = odfvs[0]
    transformation: Any = odfv.feature_transformation
    views = []
    aliases: list[tuple[str, str]] = []  # Feast's "view__feature" name -> the feature's name
    for projection in odfv.source_feature_view_projections.values():
        wanted = [f.name for f in projection.features]
        aliases += [(f"{projection.name}__{name}", name) for name in wanted]
        time_field = STATE_TIME_FIELDS.get(projection.name)
        if time_field is not None and time_field not in wanted:
            wanted.append(time_field)  # for the lateness check, not the on-demand view
        views.append(layout.view(projection.name, wanted))
    if feast_transform:
        transform = _feast_transform(transformation.transform, tuple(aliases))
    else:
        transform = transformation.udf
    types = {field.name: field.dtype.to_value_type() for field in odfv.schema}
    names = [feature.name for projection in projections for feature in projection.features]
    return Resolution(
        entities=EntityRead.group(views),
        request_fields=tuple(
            field.name for source in odfv.source_request_sources.values() for field in source.schema
        ),
        transform=transform,
        outputs=tuple((name, feast_typed(types[name])) for name in names),
        # Stamped last: reading without the cache (above) reloads the registry.
        registry_version=registry_version(store),
    )


def registry_version(store: FeatureStore) -> datetime | None:
    """When Feast last loaded the store's registry (its cache's age counts from then).

    ``None`` for a registry without that notion (Feast's remote registry, say).
    """
    version: datetime | None = getattr(store.registry, "cached_registry_proto_created", None)
    return version


def _feast_transform(
    transform: Callable[[dict[str, Any]], dict[str, Any]], aliases: tuple[tuple[str, str], ...]
) -> Callable[[dict[str, list[Any]]], Mapping[str, list[Any]]]:
    """The on-demand view as ``get_online_features`` runs it: Feast's transformation.

    Each source feature is also passed under its ``view__feature`` name, as
    ``OnDemandFeatureView.transform_dict`` does, without that method's per-call type check of
    the whole input (~0.1 ms a request).
    """

    def run(columns: dict[str, list[Any]]) -> Mapping[str, list[Any]]:
        for full, short in aliases:
            columns[full] = columns[short]
        return transform(columns)

    return run


def read_resolved(
    resolution: Resolution, layout: RedisLayout, rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Features (and state times) of each row: one Redis round trip, then the on-demand view.

    Feast keeps every view of an entity in one Redis hash, so the views of one entity (the
    card's activity and profile, say) are read with one ``HMGET``.
    """
    if not rows:
        return []
    key = layout.key
    with layout.client.pipeline(transaction=False) as pipe:
        for row in rows:
            for entity in resolution.entities:
                pipe.hmget(key(entity.views[0], str(row[entity.join_key])), entity.field_keys)
        replies = pipe.execute()
    columns: dict[str, list[Any]] = {name: [] for name in resolution.request_fields}
    for entity in resolution.entities:
        for feature in entity.fields:
            columns.setdefault(feature, [])
    position = 0
    for row in rows:
        for name in resolution.request_fields:
            columns[name].append(row[name])
        for entity in resolution.entities:
            raw = replies[position]
            position += 1
            for feature, blob in zip(entity.fields, raw, strict=True):
                columns[feature].append(decode_value(blob))
    state_times = [(field, columns[field]) for field in STATE_TIME_FIELDS.values()]
    out = resolution.transform(columns)
    return [
        {name: typed(out[name][i]) for name, typed in resolution.outputs}
        | {field: values[i] for field, values in state_times}
        for i in range(len(rows))
    ]


class FeastReader:
    """The default path: the feature service as Feast resolves it, resolved once per registry.

    ``get_online_features`` resolves the service's views on every call, reads them, converts
    every state array to protobuf and back around the on-demand view, and types the outputs.
    This reader does the resolution once, from Feast's registry (the service, its on-demand
    view, the view's source views and request source, the output types), and again only when
    Feast's registry cache expires (``cache_ttl_seconds``: 60 s) or is refreshed: the same
    moment ``get_online_features`` would see a ``feast apply``. Each read is one pipelined
    ``HMGET`` of the source views in Feast's Redis layout
    (:mod:`feature_engine.online.redis_layout`, checked byte for byte against Feast), Feast's own
    transformation of the on-demand view, and the outputs typed as Feast types them. Same values as
    :class:`OnlineFeaturesReader`, tested on live Redis.
    """

    def __init__(
        self, store: FeatureStore, layout: RedisLayout, service_name: str = FEATURE_SERVICE_NAME
    ) -> None:
        """Resolve the service from the store's registry.

        Raises:
            ValueError: If the service cannot be resolved this way (see :func:`resolve`), or
                the registry has no load time to follow.
        """
        self._store = store
        self._layout = layout
        self.service_name = service_name
        self.names = tuple(feature_names(store, service_name))
        self._lock = threading.Lock()
        self.resolution = resolve(store, layout, feast_transform=True, service_name=service_name)
        if self.resolution.registry_version is None:
            raise ValueError("the registry has no load time to follow")

    def current(self) -> Resolution:
        """The resolution of Feast's current registry: resolved again after a refresh."""
        store = self._store
        resolution = self.resolution
        if (
            store.registry.is_cache_valid()
            and registry_version(store) == resolution.registry_version
        ):
            return resolution
        with self._lock:  # one thread refreshes; the others wait for its result
            if not store.registry.is_cache_valid():
                store.refresh_registry()  # what get_online_features would do now
            if registry_version(store) != self.resolution.registry_version:
                fresh = resolve(
                    self._store,
                    self._layout,
                    feast_transform=True,
                    allow_cache=True,
                    service_name=self.service_name,
                )
                if tuple(name for name, _ in fresh.outputs) != self.names:
                    # A changed feature list needs a new service version (feature_engine.store)
                    # and a model trained on it; until a restart, keep the resolution in use.
                    logger.error("%s changed its features: restart the API", self.service_name)
                    fresh = replace(self.resolution, registry_version=fresh.registry_version)
                self.resolution = fresh
            return self.resolution

    def read(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Features (and state times) of each row."""
        return read_resolved(self.current(), self._layout, rows)


class DirectReader:
    """Same values as :class:`FeastReader`, resolved once at start-up, never again.

    The on-demand view's registered function is called directly (not through Feast's
    transformation). A registry change needs a restart.
    """

    def __init__(
        self, store: FeatureStore, layout: RedisLayout, service_name: str = FEATURE_SERVICE_NAME
    ) -> None:
        """Resolve the on-demand view, its sources and their Redis hash fields.

        Args:
            store: The open feature store (its registry holds the service).
            layout: Feast's Redis layout of that store; its client is the one read with (in
                the API, the fail-fast one of :func:`serving.online_store.install_fast_client`).
            service_name: The feature service.

        Raises:
            ValueError: If the service is not one python-mode on-demand view over stored views
                plus one request source (then use ``SERVING_FEATURE_PATH=feast``).
        """
        self.names = tuple(feature_names(store, service_name))
        self._layout = layout
        self._resolution = resolve(store, layout, feast_transform=False, service_name=service_name)

    def read(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Features of each row: one Redis round trip, then the on-demand function."""
        return read_resolved(self._resolution, self._layout, rows)


def make_reader(
    store: FeatureStore, layout: RedisLayout, path: str, service_name: str = FEATURE_SERVICE_NAME
) -> FeatureReader:
    """The reader of a feature service for ``SERVING_FEATURE_PATH`` (``direct`` or ``feast``).

    ``feast`` is :class:`FeastReader`, or plain ``get_online_features``
    (:class:`OnlineFeaturesReader`) for a feature service it cannot resolve.
    """
    if path == "direct":
        return DirectReader(store, layout, service_name)
    try:
        return FeastReader(store, layout, service_name)
    except ValueError as exc:
        logger.warning("feature path feast: get_online_features on every request (%s)", exc)
        return OnlineFeaturesReader(store, service_name)


def make_readers(store: FeatureStore, layout: RedisLayout, path: str) -> dict[str, FeatureReader]:
    """A reader for every feature service applied to the store, by service name.

    The API serves each model with the service its version names (``feature_service`` tag).
    A declared service that was not applied (``fraud features apply``) is left out.
    """
    from feast.errors import FeatureServiceNotFoundException

    readers: dict[str, FeatureReader] = {}
    for service_name in SERVICE_TABLES:
        try:
            readers[service_name] = make_reader(store, layout, path, service_name)
        except FeatureServiceNotFoundException:
            logger.warning("feature service %s is not applied: not served", service_name)
    return readers
