"""Feast definitions of the fraud features: entities, sources, views, the feature service.

Read top to bottom: entity -> data source -> feature view -> on-demand view -> feature service.
The stored views hold *state* (the velocity state of :mod:`feature_engine.state.tiles`, built for
every row of every service's declaration table), not finished window features; each feature service
(``fraud_scoring_v1``, ``fraud_scoring_v2``: :data:`~feature_repo.services.SERVICE_TABLES`) has its
own on-demand view (``transaction_features_v1``...) that computes its features relative to the
request time from that one state, so the same code gives the training value and the serving value,
and a new service version never changes an old one's values. The features are declared in
:mod:`feature_repo.velocity` and :mod:`feature_repo.derived`; the engine that evaluates them is
:mod:`feature_engine.state.request` (see its docstring for the semantics).

Two ways in. ``feast apply`` (run by ``fraud features apply``) imports this module and registers
its top-level objects; only for it is the project root read from the environment
(``PROJECT_ROOT``, which the ``fraud features`` commands set for the Feast CLI), at the bottom of
this file. Code that knows its root builds the very same objects with
:func:`fraud_definitions` (the offline tables' folder is the only thing a root changes), so
nothing here needs a process-global settings object and no test has to touch ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    PushSource,
    RequestSource,
)
from feast.transformation.python_transformation import PythonTransformation
from feast.types import Array, Float64, Int64, String
from feast.value_type import ValueType

from feature_engine.declarations import FINEST_TILE_US, ServiceTable, VelocityTable, state_table
from feature_engine.state.fields import feature_inputs, state_fields
from feature_repo.services import SERVICE_TABLES
from fraud_platform.settings import FeatureProfile, table_location

if TYPE_CHECKING:  # pyspark is imported only when the Spark profile builds a source
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    BatchSource: TypeAlias = FileSource | SparkSource

OWNER = "fraud-ml-platform@example.com"
FEAST_TYPES: dict[str, Any] = {
    "int64": Int64,
    "float64": Float64,
    "string": String,
    "int64[]": Array(Int64),
    "float64[]": Array(Float64),
    "string[]": Array(String),
}


def _schema(view: str, table: VelocityTable) -> list[Field]:
    """A state view's schema, from its field table (feature_engine.state.fields: the one list)."""
    return [Field(name=name, dtype=FEAST_TYPES[kind]) for name, kind in state_fields(table)[view]]


_NO_TTL = timedelta(0)  # state rows never expire: the on-demand view filters by request time

# ------------------------------------------------------------------ entities

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A cardholder.",
    owner=OWNER,
)

merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.STRING,
    description="A merchant accepting card payments.",
    owner=OWNER,
)

# ------------------------------------------------------------------ request source

# In get_historical_features these fields come from entity_df columns; online, from the request.
transaction_request = RequestSource(
    name="transaction_request",
    schema=[
        Field(name="txn_timestamp_us", dtype=Int64),
        Field(name="amount", dtype=Float64),
        Field(name="lat", dtype=Float64),
        Field(name="long", dtype=Float64),
    ],
    description="The transaction being scored: time (µs since epoch, UTC), amount, location.",
    owner=OWNER,
)


def _python_transformation(table: ServiceTable) -> PythonTransformation:
    """The on-demand view's function, for one service's declarations, with its source text.

    Feast keeps the source text in the registry and rebuilds the function from it in every
    process that reads the registry (the API, ``feast serve``), so the function holds no
    closure: it names its table, and imports the engine that evaluates it.
    """
    source = (
        "def transaction_features(inputs):\n"
        '    """Every feature of the service for each transaction; see feature_repo."""\n'
        "    from feature_engine.state.request import transaction_features as compute\n"
        "    from feature_repo.services import service_table\n"
        "\n"
        f"    return compute(inputs, service_table({table.name!r}))\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # our own fixed text; Feast rebuilds the function the same way
    return PythonTransformation(udf=namespace["transaction_features"], udf_string=source)


@dataclass(frozen=True)
class FraudDefinitions:
    """The root-dependent Feast objects, built by :func:`fraud_definitions` for one root."""

    customer_activity_source: BatchSource
    customer_activity_push: PushSource
    merchant_activity_source: BatchSource
    merchant_activity_push: PushSource
    merchant_label_source: BatchSource
    merchant_label_push: PushSource
    customer_profile_source: BatchSource
    customer_activity_fv: FeatureView
    merchant_activity_fv: FeatureView
    merchant_label_stats_fv: FeatureView
    customer_profile_fv: FeatureView
    on_demand: dict[str, OnDemandFeatureView]  # service name -> its on-demand view
    services: dict[str, FeatureService]

    def objects(self) -> list[Any]:
        """Every Feast object of the repository, entities and request source included."""
        own = [getattr(self, item.name) for item in fields(self)][:-2]
        return [
            customer, merchant, transaction_request, *own,
            *self.on_demand.values(), *self.services.values(),
        ]  # fmt: skip


def batch_source(
    name: str, location: Path | str, table: str, description: str, profile: FeatureProfile
) -> BatchSource:
    """The batch source of one offline table, of the type the profile's offline store reads.

    The one place the profile touches the Feast objects: the views, their schemas and the
    on-demand logic are the same in both profiles; only the source type follows the offline
    store (Feast's Spark store accepts only ``SparkSource``, its DuckDB store a
    ``FileSource``). Both name the same Parquet table, stamped by ``event_timestamp``.

    Args:
        name: The source's Feast name.
        location: The offline tables' folder or URI (``Settings.offline_tables_location``).
        table: The table's name (``customer_activity``...), its file ``<table>.parquet``.
        description: The source's description.
        profile: ``duckdb`` or ``spark`` (``Settings.feature_profile``).

    Returns:
        A ``FileSource`` (DuckDB) or a ``SparkSource`` (Spark) over ``<location>/<table>.parquet``.
    """
    path = table_location(location, table)
    if profile == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(
            name=name,
            path=path,
            file_format="parquet",
            timestamp_field="event_timestamp",
            description=description,
            owner=OWNER,
        )
    return FileSource(
        name=name,
        path=path,
        timestamp_field="event_timestamp",
        description=description,
        owner=OWNER,
    )


def on_demand_view_name(service: str) -> str:
    """``fraud_scoring_v2`` -> ``transaction_features_v2``: each service's own on-demand view."""
    return "transaction_features_" + service.removeprefix("fraud_scoring_")


def fraud_definitions(
    features_dir: Path | str,
    services: Mapping[str, ServiceTable] = SERVICE_TABLES,
    profile: FeatureProfile = "duckdb",
) -> FraudDefinitions:
    """The fraud features' sources, views and services, reading offline tables in ``features_dir``.

    Args:
        features_dir: The project's offline feature tables (``Paths.features_dir``, or
            ``Settings.offline_tables_location``: a URI such as ``s3a://...`` for Spark).
        profile: ``duckdb`` or ``spark``: the type of the batch sources (:func:`batch_source`).
        services: Feature service name -> the declarations its on-demand view computes
            (:data:`~feature_repo.services.SERVICE_TABLES`; a test fixture adds rows). The
            state views' schemas derive from the union of their velocity rows.

    Returns:
        The objects ``feast apply`` registers (with :data:`customer`, :data:`merchant` and
        :data:`transaction_request`, which do not depend on the root).
    """
    table = state_table("velocity_state", services)  # what the state views hold

    # -------------------------------------------------------------- data sources

    customer_activity_source = batch_source(
        "customer_activity_source",
        features_dir,
        "customer_activity",
        "Customer recent-activity state as of each transaction (feature pipeline).",
        profile,
    )

    customer_activity_push = PushSource(
        name="customer_activity_push",
        batch_source=customer_activity_source,
        description="Fresh customer state pushed by the API after each scored transaction.",
        owner=OWNER,
    )

    merchant_activity_source = batch_source(
        "merchant_activity_source",
        features_dir,
        "merchant_activity",
        "Merchant recent-activity state as of each transaction.",
        profile,
    )

    merchant_activity_push = PushSource(
        name="merchant_activity_push",
        batch_source=merchant_activity_source,
        description="Fresh merchant state pushed by the API after each scored transaction.",
        owner=OWNER,
    )

    merchant_label_source = batch_source(
        "merchant_label_source",
        features_dir,
        "merchant_label_stats",
        "Per-merchant label-arrival buckets as of each label arrival time.",
        profile,
    )

    merchant_label_push = PushSource(
        name="merchant_label_push",
        batch_source=merchant_label_source,
        description="Label buckets pushed when chargebacks or confirmations arrive.",
        owner=OWNER,
    )

    customer_profile_source = batch_source(
        "customer_profile_source",
        features_dir,
        "customer_profile",
        "Cardholder home location, known from account creation.",
        profile,
    )

    # -------------------------------------------------------------- feature views (state)

    # A merchant state row is stamped with its 5-minute tile's first event and holds events up
    # to 5 minutes later (feature_engine/offline/pipeline.py); one older than the furthest any
    # merchant window reaches plus that tile holds nothing inside any window, so a ttl of that
    # length changes no value
    # (offline: no row -> empty windows; online: stale row -> empty windows) while it bounds
    # the point-in-time join.
    merchant_ttl = timedelta(microseconds=table.state_window_us("merchant") + FINEST_TILE_US)

    customer_activity_fv = FeatureView(
        name="customer_activity",
        entities=[customer],
        ttl=_NO_TTL,
        schema=_schema("customer_activity", table),
        source=customer_activity_push,
        online=True,
        description="Card's velocity state (raw lateness region, tiles) and daily buckets.",
        owner=OWNER,
    )

    merchant_activity_fv = FeatureView(
        name="merchant_activity",
        entities=[merchant],
        ttl=merchant_ttl,
        schema=_schema("merchant_activity", table),
        source=merchant_activity_push,
        online=True,
        description="Merchant's velocity state (raw events of the lateness region, tiles).",
        owner=OWNER,
    )

    merchant_label_stats_fv = FeatureView(
        name="merchant_label_stats",
        entities=[merchant],
        ttl=_NO_TTL,  # one row per label day; the on-demand view filters by request time
        schema=_schema("merchant_label_stats", table),
        source=merchant_label_push,
        online=True,
        description="Labels that reached the merchant per UTC day of arrival (LABEL_STATE_DAYS).",
        owner=OWNER,
    )

    customer_profile_fv = FeatureView(
        name="customer_profile",
        entities=[customer],
        ttl=_NO_TTL,
        schema=_schema("customer_profile", table),
        source=customer_profile_source,
        online=True,
        description="Cardholder's home location.",
        owner=OWNER,
    )

    # -------------------------------------------------------------- on-demand view

    on_demand = {
        service: OnDemandFeatureView(
            name=on_demand_view_name(service),
            # Projections: only the state fields this service's logic reads (feature_inputs),
            # so Feast neither joins nor converts the ids only the online merge needs, nor the
            # fields only another service reads.
            sources=[
                view[list(feature_inputs(service_table.velocity)[view.name])]
                for view in (
                    customer_activity_fv,
                    merchant_activity_fv,
                    merchant_label_stats_fv,
                    customer_profile_fv,
                )
            ]
            + [transaction_request],
            schema=[
                Field(name=name, dtype=Int64 if kind is int else Float64)
                for name, kind in service_table.output_features
            ],
            feature_transformation=_python_transformation(service_table),
            mode="python",  # measured much faster online than "pandas" (DESIGN.md)
            description=(
                f"{service}'s velocity, baseline, travel and merchant-risk features as of the "
                "request time."
            ),
            owner=OWNER,
        )
        for service, service_table in services.items()
    }

    # -------------------------------------------------------------- feature services

    feature_services = {
        service: FeatureService(
            name=service,
            features=[view],
            description=(
                f"The fraud model's features ({service}): a model records the service it was "
                "trained on, and the API serves that service."
            ),
            owner=OWNER,
        )
        for service, view in on_demand.items()
    }
    return FraudDefinitions(
        customer_activity_source,
        customer_activity_push,
        merchant_activity_source,
        merchant_activity_push,
        merchant_label_source,
        merchant_label_push,
        customer_profile_source,
        customer_activity_fv,
        merchant_activity_fv,
        merchant_label_stats_fv,
        customer_profile_fv,
        on_demand,
        feature_services,
    )


# ------------------------------------------------------------------ for `feast apply`
# The Feast CLI registers this module's top-level objects; it runs with PROJECT_ROOT set by
# `fraud features ...` (feast_environment), so a fresh Settings() reads that root here.


def _from_environment() -> FraudDefinitions:
    from fraud_platform.settings import Settings

    settings = Settings()
    return fraud_definitions(settings.offline_tables_location, profile=settings.feature_profile)


_FEAST_CLI = _from_environment()
customer_activity_source = _FEAST_CLI.customer_activity_source
customer_activity_push = _FEAST_CLI.customer_activity_push
merchant_activity_source = _FEAST_CLI.merchant_activity_source
merchant_activity_push = _FEAST_CLI.merchant_activity_push
merchant_label_source = _FEAST_CLI.merchant_label_source
merchant_label_push = _FEAST_CLI.merchant_label_push
customer_profile_source = _FEAST_CLI.customer_profile_source
customer_activity_fv = _FEAST_CLI.customer_activity_fv
merchant_activity_fv = _FEAST_CLI.merchant_activity_fv
merchant_label_stats_fv = _FEAST_CLI.merchant_label_stats_fv
customer_profile_fv = _FEAST_CLI.customer_profile_fv
# The on-demand views and services, by their Feast names (the CLI finds module attributes).
globals().update({view.name: view for view in _FEAST_CLI.on_demand.values()})
globals().update({service.name: service for service in _FEAST_CLI.services.values()})
