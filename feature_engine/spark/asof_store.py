"""Feast's Spark offline store with a point-in-time join linear in rows (an as-of join).

Why
---
Feast 0.67's Spark store (``MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN`` in
``feast/infra/offline_stores/contrib/spark_offline_store/spark.py``) joins every entity row with
*every* earlier state row of its entity (``event_timestamp <= entity_timestamp``), then keeps
the latest pair with a row number: a card with n state rows costs n^2/2 pairs, the same
quadratic join :mod:`feature_engine.offline.duckdb_store` replaced on the DuckDB side.

What this store does instead
----------------------------
:class:`AsOfSparkOfflineStore` subclasses Feast's ``SparkOfflineStore`` and is registered by
class path in ``feature_store.spark.yaml`` (``offline_store.type``; Feast finds the config
class by appending ``Config``). It overrides ``get_historical_features`` only, and there only
the join: the entity upload, the query contexts, the ``SparkRetrievalJob`` (and so the
on-demand views Feast applies on its result) are Feast's. Per feature view:

1. the entity rows (keys, entity timestamp, row number) and the state rows (keys, event
   timestamp, created timestamp, the requested features packed in one struct) are put in one
   relation by ``UNION ALL``;
2. within each entity partition (the view's join keys) the rows are ordered by
   (timestamp, side, created timestamp): state rows sort before entity rows of the same
   timestamp (Feast's ``<=``), and among state rows of one timestamp the latest created
   timestamp sorts last;
3. ``last(state, ignorenulls)`` over the window up to the current row carries the latest state
   row forward to every entity row: one sort per partition, no pairs;
4. the entity rows are kept, their matched state set to null when older than the ttl, and
   joined back to the entity rows by row number (one row each, a hash join).

Point-in-time semantics, exactly Feast's (the DuckDB as-of store's)
-------------------------------------------------------------------
* the state row picked is the latest one of the same keys whose timestamp is ``<= t``;
* several rows at that timestamp: the latest created timestamp wins (Feast's tie-break); among
  full ties one of them (Feast returns one row per tied state row there, this store one row);
* ttl: Feast keeps only candidates with ``event_timestamp >= t - ttl``; the latest candidate is
  inside that window or none is, so "as of t, then null when older than t - ttl" is the same
  answer; ``ttl=0`` means no limit;
* no row (unknown entity, entity row before the first state row, expired, null key): nulls;
* every entity_df column passes through; views may use different join keys;
  ``full_feature_names`` prefixes ``<view>__``; rows come back in entity_df order.

What the as-of path does not cover goes to Feast's own implementation unchanged: retrieval by
date range without an entity_df, ``filter_by_created_timestamp=True`` (a second inequality an
as-of join does not express) and sources other than ``SparkSource``.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd
import pyspark.sql
from feast.feature_view import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkFeatureViewQueryContext,
    SparkOfflineStore,
    SparkOfflineStoreConfig,
    SparkRetrievalJob,
    _apply_bfv_transformations,
    _get_entity_df_event_timestamp_range,
    _get_entity_schema,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from pydantic import StrictStr

from feature_engine.spark.session import start_session

STORE_CLASS_PATH = "feature_engine.spark.asof_store.AsOfSparkOfflineStore"
_ROW = "__asof_row"  # entity row number: joins the views back and restores entity_df order
_TS = "__asof_ts"
_SIDE = "__asof_side"  # 0: a state row, 1: an entity row (sorts after state rows of its time)
_CREATED = "__asof_created"
_STATE = "__asof_state"  # the state row's timestamp and requested features, one struct


class AsOfSparkOfflineStoreConfig(SparkOfflineStoreConfig):
    """``offline_store`` section for :class:`AsOfSparkOfflineStore`: Feast's Spark one.

    Attributes:
        type: The store's class path.
    """

    type: StrictStr = STORE_CLASS_PATH


def _quote(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _output_name(context: offline_utils.FeatureViewQueryContext, feature: str, full: bool) -> str:
    """A feature's output column, exactly as Feast's ``build_point_in_time_query`` names it."""
    name = context.field_mapping.get(feature, feature)
    return f"{context.name}__{name}" if full else name


def view_as_of_sql(
    context: offline_utils.FeatureViewQueryContext,
    entity_table: str,
    entity_timestamp: str,
    full_feature_names: bool,
) -> str:
    """The as-of join of one feature view: one row per entity row, its row number and features.

    Args:
        context: Feast's query context of the view (source query, keys, ttl, features).
        entity_table: The uploaded entity rows, with their row number in ``__asof_row``.
        entity_timestamp: The entity_df's event timestamp column.
        full_feature_names: Whether outputs are prefixed by ``<view>__``.

    Returns:
        A Spark SQL query of ``__asof_row`` and the view's output columns.
    """
    keys = [_quote(key) for key in context.entities]
    ts = context.timestamp_field
    created = context.created_timestamp_column
    fields = ", ".join(
        [f"'ts', CAST({ts} AS TIMESTAMP)"]
        + [f"'f{i}', {_quote(feature)}" for i, feature in enumerate(context.features)]
    )
    # Feast's own pruning: no state row after the last entity row, nor (with a ttl) before
    # the first entity row minus the ttl; both change no answer.
    where = [f"{ts} <= '{context.max_event_timestamp}'"]
    if context.ttl and context.min_event_timestamp:
        where.append(f"{ts} >= '{context.min_event_timestamp}'")
    state_keys = [*context.entity_selections] if keys else []
    entity_keys = [f"e.{key} AS {key}" for key in keys]
    state = f"""
        SELECT {", ".join([*state_keys, ""])}
               CAST({ts} AS TIMESTAMP) AS {_TS},
               0 AS {_SIDE},
               {f"CAST({created} AS TIMESTAMP)" if created else "CAST(NULL AS TIMESTAMP)"}
                   AS {_CREATED},
               CAST(NULL AS BIGINT) AS {_ROW},
               named_struct({fields}) AS {_STATE}
        FROM {context.table_subquery}
        WHERE {" AND ".join(where)}
    """
    if keys:  # a null key equals nothing in Feast's join; the keys have their entity names here
        state = f"SELECT * FROM ({state}) s WHERE {' AND '.join(f'{k} IS NOT NULL' for k in keys)}"
    entities = f"""
        SELECT {", ".join([*entity_keys, ""])}
               CAST(e.{_quote(entity_timestamp)} AS TIMESTAMP) AS {_TS},
               1 AS {_SIDE},
               CAST(NULL AS TIMESTAMP) AS {_CREATED},
               e.{_ROW} AS {_ROW},
               NULL AS {_STATE}
        FROM {entity_table} e
    """
    partition = f"PARTITION BY {', '.join(keys)}" if keys else ""
    expired = "FALSE"
    if context.ttl:
        expired = f"m.{_STATE}.ts < m.{_TS} - INTERVAL {int(context.ttl)} SECONDS"
    outputs = ", ".join(
        [f"{_ROW}"]
        + [
            f"{_STATE}.f{i} AS {_quote(_output_name(context, feature, full_feature_names))}"
            for i, feature in enumerate(context.features)
        ]
    )
    return f"""
        SELECT {outputs}
        FROM (
            SELECT m.{_ROW}, CASE WHEN {expired} THEN NULL ELSE m.{_STATE} END AS {_STATE}
            FROM (
                SELECT u.{_ROW}, u.{_SIDE}, u.{_TS},
                       last(u.{_STATE}, true) OVER (
                           {partition}
                           ORDER BY u.{_TS}, u.{_SIDE}, u.{_CREATED} NULLS FIRST
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                       ) AS {_STATE}
                FROM ({state} UNION ALL {entities}) u
            ) m
            WHERE m.{_SIDE} = 1
        )
    """


def as_of_query(
    contexts: Sequence[offline_utils.FeatureViewQueryContext],
    entity_table: str,
    entity_timestamp: str,
    entity_columns: Sequence[str],
    full_feature_names: bool,
) -> str:
    """Statements (``---EOS---``-separated, as ``SparkRetrievalJob`` runs them) of the join.

    Args:
        contexts: Feast's query contexts, one per feature view.
        entity_table: The uploaded entity rows, numbered in ``__asof_row``.
        entity_timestamp: The entity_df's event timestamp column.
        entity_columns: The entity_df's columns (all pass through).
        full_feature_names: Whether outputs are prefixed by ``<view>__``.

    Returns:
        The query; its last statement selects the entity columns and every view's features in
        entity_df order.
    """
    statements, joins = [], []
    outputs = [f"e.{_quote(column)}" for column in entity_columns]
    for i, context in enumerate(contexts):
        view = f"{entity_table}__asof_{i}"
        statements.append(
            f"CREATE OR REPLACE TEMPORARY VIEW {view} AS "
            + view_as_of_sql(context, entity_table, entity_timestamp, full_feature_names)
        )
        joins.append(f"LEFT JOIN {view} v{i} ON v{i}.{_ROW} = e.{_ROW}")
        outputs += [
            f"v{i}.{_quote(_output_name(context, feature, full_feature_names))}"
            for feature in context.features
        ]
    statements.append(
        f"SELECT {', '.join(outputs)} FROM {entity_table} e {' '.join(joins)} ORDER BY e.{_ROW}"
    )
    return "\n---EOS---\n".join(statements)


def _upload_numbered(
    spark: pyspark.sql.SparkSession, entity_df: Any, timestamp: str, table: str
) -> None:
    """The entity rows as a temporary view, numbered in ``__asof_row`` in their order."""
    if isinstance(entity_df, pd.DataFrame):
        frame = entity_df.copy()
        frame[timestamp] = pd.to_datetime(frame[timestamp], utc=True)
        frame[_ROW] = np.arange(len(frame), dtype=np.int64)
        spark.createDataFrame(frame).createOrReplaceTempView(table)
        return
    from pyspark.sql import functions

    frame = spark.sql(entity_df) if isinstance(entity_df, str) else entity_df
    frame.withColumn(_ROW, functions.monotonically_increasing_id()).createOrReplaceTempView(table)


class AsOfSparkOfflineStore(SparkOfflineStore):
    """Feast's Spark offline store whose point-in-time join is an as-of join (module docstring)."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | pyspark.sql.DataFrame | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        """Point-in-time features of the entity rows, joined as of each row's timestamp.

        Args:
            config: The repo config; its ``offline_store`` is this store's.
            feature_views: The requested views.
            feature_refs: ``view:feature`` references.
            entity_df: Entity rows: a pandas or Spark DataFrame or a Spark SQL query; ``None``
                (a date range) goes to Feast's implementation.
            registry: The registry (on-demand views, join keys).
            project: The Feast project.
            full_feature_names: Prefix outputs by ``<view>__``.
            filter_by_created_timestamp: Feast's extra filter; when set, Feast's join runs.
            **kwargs: Feast's other arguments (``start_date``...), passed on when falling back.

        Returns:
            Feast's ``SparkRetrievalJob`` over the as-of query.
        """
        if (
            entity_df is None
            or filter_by_created_timestamp
            or not all(isinstance(view.batch_source, SparkSource) for view in feature_views)
        ):
            return SparkOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
                **kwargs,
            )
        assert isinstance(config.offline_store, SparkOfflineStoreConfig)
        warnings.filterwarnings("ignore", "The spark offline store is an experimental")
        spark = start_session(config.offline_store.spark_conf or {})  # names a bad setting
        spark.conf.set("spark.sql.parser.quotedRegexColumnNames", "true")  # as Feast's start
        entity_schema = _get_entity_schema(spark, entity_df)
        timestamp = offline_utils.infer_event_timestamp_from_entity_df(entity_schema)
        offline_utils.assert_expected_columns_in_entity_df(
            entity_schema,
            offline_utils.get_expected_join_keys(project, feature_views, registry),
            timestamp,
        )
        timestamp_range = _get_entity_df_event_timestamp_range(
            entity_df,
            timestamp,
            spark,
        )
        table = offline_utils.get_temp_entity_table_name() + uuid.uuid4().hex[:4]
        _upload_numbered(spark, entity_df, timestamp, table)
        contexts = offline_utils.get_feature_view_query_context(
            feature_refs, feature_views, registry, project, timestamp_range
        )
        contexts = _apply_bfv_transformations(
            spark_session=spark, feature_views=feature_views, query_contexts=contexts
        )
        spark_contexts = [
            SparkFeatureViewQueryContext(
                **asdict(context), min_date_partition=None, max_date_partition=None
            )
            for context in contexts
        ]
        query = as_of_query(
            cast(list[offline_utils.FeatureViewQueryContext], spark_contexts),
            table,
            timestamp,
            list(entity_schema),
            full_feature_names,
        )
        min_ts, max_ts = cast(tuple[datetime, datetime], timestamp_range)
        return SparkRetrievalJob(
            spark_session=spark,
            query=query,
            full_feature_names=full_feature_names,
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(
                feature_refs, project, registry
            ),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=list(set(entity_schema) - {timestamp}),
                min_event_timestamp=min_ts,
                max_event_timestamp=max_ts,
            ),
            config=config,
        )
