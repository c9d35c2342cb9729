"""Online features for the API, resolved once at start-up.

Two readers give the same numbers (``tests/integration/serving`` checks it on live Redis):

* :class:`FeastReader`: the public path, ``feature_repo.store.online_features``, i.e.
  ``FeatureStore.get_online_features`` on the feature service. Measured ~3.5 ms a row here:
  most of it is Feast converting every state array to protobuf and back around the on-demand
  transform, not Redis.
* :class:`DirectReader`: the same work with everything resolved once: the service's
  on-demand view, its source views, their Redis keys and hash fields (through
  :mod:`feature_repo.redis_layout`, the one adapter of Feast's Redis layout, shared with the
  state writer), one pipelined ``HMGET`` per view and entity, and the on-demand view's
  registered Python function called on the decoded state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from feature_repo.logic import STATE_TIME_FIELDS
from feature_repo.redis_layout import ViewLayout, decode_value
from feature_repo.store import feature_names, feature_service

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

    from feature_repo.redis_layout import RedisLayout


class FeatureReader(Protocol):
    """Reads the feature service's values for request rows built with ``request_row``."""

    names: tuple[str, ...]

    def read(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One dict per row: the service's features in order, then the state times.

        The state times are :data:`~feature_repo.logic.STATE_TIME_FIELDS`, ``None`` for an
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


def feature_types(store: FeatureStore) -> dict[str, str]:
    """The service's features, in order, with their prediction-log column types.

    Raises:
        ValueError: If a feature is not a scalar number, bool or string.
    """
    types = {}
    for projection in feature_service(store).feature_view_projections:
        for feature in projection.features:
            kind = _LOG_TYPES.get(str(feature.dtype))
            if kind is None:
                raise ValueError(f"feature {feature.name}: type {feature.dtype} cannot be logged")
            types[feature.name] = kind
    return types


class FeastReader:
    """The public path: ``get_online_features`` for the feature service's features.

    The service's features are asked for by reference, together with the state times
    (:data:`~feature_repo.logic.STATE_TIME_FIELDS`) the API compares with the request's time.
    """

    def __init__(self, store: FeatureStore) -> None:
        """Resolve the service's feature references and names once."""
        self._store = store
        service: FeatureService = feature_service(store)
        self.names = tuple(feature_names(store))
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


class DirectReader:
    """Same features as :class:`FeastReader`, with the registry work done once."""

    def __init__(self, store: FeatureStore, layout: RedisLayout) -> None:
        """Resolve the on-demand view, its sources and their Redis hash fields.

        Args:
            store: The open feature store (its registry holds the service).
            layout: Feast's Redis layout of that store; its client is the one read with (in
                the API, the fail-fast one of :func:`serving.online_store.install_fast_client`).

        Raises:
            ValueError: If the service is not one python-mode on-demand view over stored views
                plus one request source (then use ``SERVING_FEATURE_PATH=feast``).
        """
        service = feature_service(store)
        self.names = tuple(feature_names(store))
        projections = service.feature_view_projections
        odfvs = [store.get_on_demand_feature_view(p.name) for p in projections]
        if len(odfvs) != 1 or odfvs[0].mode != "python":
            raise ValueError("direct reader needs exactly one python-mode on-demand view")
        odfv = odfvs[0]
        transformation: Any = odfv.feature_transformation
        self._udf: Callable[[dict[str, Any]], dict[str, Any]] = transformation.udf
        self._request_fields = tuple(
            field.name for source in odfv.source_request_sources.values() for field in source.schema
        )
        self._layout = layout
        self._client = layout.client
        views = []
        for projection in odfv.source_feature_view_projections.values():
            wanted = [f.name for f in projection.features]
            time_field = STATE_TIME_FIELDS.get(projection.name)
            if time_field is not None and time_field not in wanted:
                wanted.append(time_field)  # for the lateness check, not the on-demand view
            views.append(layout.view(projection.name, wanted))
        self._views: tuple[ViewLayout, ...] = tuple(views)

    def read(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Features of each row: one Redis round trip, then the on-demand function."""
        if not rows:
            return []
        key = self._layout.key
        with self._client.pipeline(transaction=False) as pipe:
            for row in rows:
                for view in self._views:
                    pipe.hmget(key(view, str(row[view.join_key])), view.field_keys)
            replies = pipe.execute()
        inputs: dict[str, list[Any]] = {name: [] for name in self._request_fields}
        for view in self._views:
            for feature in view.fields:
                inputs.setdefault(feature, [])
        position = 0
        for row in rows:
            for name in self._request_fields:
                inputs[name].append(row[name])
            for view in self._views:
                raw = replies[position]
                position += 1
                for feature, blob in zip(view.fields, raw, strict=True):
                    inputs[feature].append(decode_value(blob))
        out = self._udf(inputs)
        # NaN (an unknown feature) as None, as Feast's online response carries it.
        return [
            {name: (None if (v := out[name][i]) != v else v) for name in self.names}
            | {field: inputs[field][i] for field in STATE_TIME_FIELDS.values()}
            for i in range(len(rows))
        ]


def make_reader(store: FeatureStore, layout: RedisLayout, path: str) -> FeatureReader:
    """The reader for ``SERVING_FEATURE_PATH`` (``direct`` or ``feast``)."""
    return DirectReader(store, layout) if path == "direct" else FeastReader(store)
