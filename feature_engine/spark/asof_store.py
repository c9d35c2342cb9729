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
the join: the entity upload and the query contexts are Feast's; the result is Feast's
``SparkRetrievalJob`` with an Arrow path (:class:`AsOfSparkRetrievalJob`: rows to the driver as
Arrow, not pandas, and the on-demand views applied batch by batch). Per feature view:

1. the entity rows (keys, entity timestamp, row number) and the state rows' keys and
   timestamps (event, created) are put in one narrow relation by ``UNION ALL``;
2. within each entity partition (the view's join keys) the rows are ordered by
   (timestamp, side, created timestamp): state rows sort before entity rows of the same
   timestamp (Feast's ``<=``), and among state rows of one timestamp the latest created
   timestamp sorts last;
3. ``last(state, ignorenulls)`` over the window up to the current row carries the latest state
   row's (timestamp, created) forward to every entity row: one sort per partition, no pairs;
   a match older than the ttl is dropped (:func:`view_plan`);
4. the matched state rows' features are fetched by one broadcast semi join with the matched
   (keys, timestamps) (:func:`fetch_sql`): the wide rows are read once, never sorted or
   shuffled;
5. the match and the fetch come to the driver as Arrow, where a hash join of their narrow
   columns gives each entity row its state row, and one ``take`` per view puts the features in
   entity_df order (:class:`AsOfSparkRetrievalJob`). ``to_spark_df`` runs the same steps as one
   Spark query instead (:func:`as_of_query`), tested equal.

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

Materialization
---------------
``pull_latest_from_table_or_query`` (``feast materialize`` with
``materialization.pull_latest_features``) reads the table's latest-rows sidecar when the Spark
build wrote one (a local or mounted table) and it still answers the range exactly
(:func:`~feature_engine.offline.latest_rows.usable_latest_rows`, the DuckDB store's rule and
code): one small Parquet file per view, read with DuckDB on the driver, and no Spark session
at all. Otherwise Feast's Spark query scans the table.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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

import fraud_platform
from feature_engine.offline.duckdb_store import DuckDBQueryJob, apply_on_demand_views
from feature_engine.offline.latest_rows import sidecar_rows_sql, usable_latest_rows
from feature_engine.spark.session import start_session
from fraud_platform.settings import local_path

# Feast's Spark modules, imported above, put ``simplefilter("once", ...)`` before the platform's
# filters of its "experimental" notices: installed again (see fraud_platform).
fraud_platform.quiet_third_party_warnings()

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


@dataclass(frozen=True)
class ViewPlan:
    """The as-of join of one feature view, in the pieces both retrieval paths use.

    Attributes:
        keys: The view's join keys, quoted (under their entity names).
        state: SQL of the view's state rows: keys, ``__asof_ts``, ``__asof_created``, and the
            requested features as ``__asof_f0, __asof_f1...``.
        matched: SQL of the narrow match: per matched entity row (ttl applied) its row number
            ``__asof_row``, keys, and the matched state row's ``__asof_mts`` / ``__asof_mc``.
        outputs: The output column of each ``__asof_f<i>`` (Feast's names).
    """

    keys: list[str]
    state: str
    matched: str
    outputs: list[str]


def view_plan(
    context: offline_utils.FeatureViewQueryContext,
    entity_table: str,
    entity_timestamp: str,
    full_feature_names: bool,
) -> ViewPlan:
    """The as-of match of one feature view (module docstring, steps 1-3), on narrow rows only.

    Args:
        context: Feast's query context of the view (source query, keys, ttl, features).
        entity_table: The uploaded entity rows, with their row number in ``__asof_row``.
        entity_timestamp: The entity_df's event timestamp column.
        full_feature_names: Whether outputs are prefixed by ``<view>__``.

    Returns:
        The view's state rows and match queries.
    """
    keys = [_quote(key) for key in context.entities]
    ts = context.timestamp_field
    created = context.created_timestamp_column
    # Feast's own pruning: no state row after the last entity row, nor (with a ttl) before
    # the first entity row minus the ttl; both change no answer.
    where = [f"{ts} <= '{context.max_event_timestamp}'"]
    if context.ttl and context.min_event_timestamp:
        where.append(f"{ts} >= '{context.min_event_timestamp}'")
    if keys:  # a null key equals nothing in Feast's join (the selections name keys as entities)
        where += [
            f"{selection.rsplit(' AS ', 1)[0]} IS NOT NULL"
            for selection in context.entity_selections
        ]
    state_keys = [*context.entity_selections] if keys else []
    features = [f"{_quote(feature)} AS __asof_f{i}" for i, feature in enumerate(context.features)]
    # The view's state rows: keys (under their entity names), timestamps, requested features.
    state = f"""
        SELECT {", ".join([*state_keys, ""])}
               CAST({ts} AS TIMESTAMP) AS {_TS},
               {f"CAST({created} AS TIMESTAMP)" if created else "CAST(NULL AS TIMESTAMP)"}
                   AS {_CREATED}
               {"".join(", " + feature for feature in features)}
        FROM {context.table_subquery}
        WHERE {" AND ".join(where)}
    """
    key_list = "".join(f"{key}, " for key in keys)
    # The match, on narrow rows only: state rows (keys, times) and entity rows in one
    # relation, sorted within each entity; the latest state's (time, created) carried forward.
    narrow = f"""
        SELECT {key_list}{_TS}, 0 AS {_SIDE}, {_CREATED}, CAST(NULL AS BIGINT) AS {_ROW},
               named_struct('ts', {_TS}, 'c', {_CREATED}) AS {_STATE}
        FROM ({state}) s
        UNION ALL
        SELECT {"".join(f"e.{key} AS {key}, " for key in keys)}
               CAST(e.{_quote(entity_timestamp)} AS TIMESTAMP) AS {_TS}, 1 AS {_SIDE},
               CAST(NULL AS TIMESTAMP) AS {_CREATED}, e.{_ROW} AS {_ROW}, NULL AS {_STATE}
        FROM {entity_table} e
    """
    partition = f"PARTITION BY {', '.join(keys)}" if keys else ""
    expired = "FALSE"
    if context.ttl:
        expired = f"m.{_STATE}.ts < m.{_TS} - INTERVAL {int(context.ttl)} SECONDS"
    matched = f"""
        SELECT {"".join(f"m.{key}, " for key in keys)}m.{_ROW},
               m.{_STATE}.ts AS __asof_mts, m.{_STATE}.c AS __asof_mc
        FROM (
            SELECT u.{_ROW}, u.{_SIDE}, u.{_TS}, {"".join(f"u.{key}, " for key in keys)}
                   last(u.{_STATE}, true) OVER (
                       {partition}
                       ORDER BY u.{_TS}, u.{_SIDE}, u.{_CREATED} NULLS FIRST
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS {_STATE}
            FROM ({narrow}) u
        ) m
        WHERE m.{_SIDE} = 1 AND m.{_STATE} IS NOT NULL AND NOT ({expired})
    """
    outputs = [_output_name(context, feature, full_feature_names) for feature in context.features]
    return ViewPlan(keys=keys, state=state, matched=matched, outputs=outputs)


def fetch_sql(plan: ViewPlan, matched: str) -> str:
    """The matched state rows, every requested feature: one broadcast semi join.

    The state rows whose (keys, time, created) some entity row matched, found by a semi join
    with the matched triples, broadcast (one per entity row at most), so the wide state rows
    are read once and never sorted nor shuffled. Full ties (same keys and timestamps) may give
    several rows; the caller keeps one.

    Args:
        plan: The view's plan.
        matched: A relation (a query in parentheses or a view) of the plan's matched rows.

    Returns:
        A query of the state rows: keys, ``__asof_ts``, ``__asof_created``, ``__asof_f<i>``.
    """
    same = [f"s.{key} = k.{key}" for key in plan.keys]
    same += [f"s.{_TS} = k.__asof_mts", f"s.{_CREATED} <=> k.__asof_mc"]
    key_list = "".join(f"{key}, " for key in plan.keys)
    return f"""
        SELECT /*+ BROADCAST(k) */ s.*
        FROM ({plan.state}) s
        LEFT SEMI JOIN (SELECT DISTINCT {key_list}__asof_mts, __asof_mc FROM {matched}) k
        ON {" AND ".join(same)}
    """


def view_as_of_sql(
    context: offline_utils.FeatureViewQueryContext,
    entity_table: str,
    entity_timestamp: str,
    full_feature_names: bool,
) -> str:
    """The as-of join of one feature view in one query: one row per matched entity row.

    The one-query form (``to_spark_df``); ``to_arrow`` runs the same match and fetch and joins
    them on the driver (:class:`AsOfSparkRetrievalJob`). The arguments are
    :func:`view_plan`'s, passed on to it unchanged.

    Returns:
        A Spark SQL query of ``__asof_row`` and the view's output columns.
    """
    plan = view_plan(context, entity_table, entity_timestamp, full_feature_names)
    key_list = "".join(f"{key}, " for key in plan.keys)
    fetched = f"""
        SELECT * FROM (
            SELECT f.*, row_number() OVER (
                PARTITION BY {key_list}{_TS}, {_CREATED} ORDER BY {_TS}) AS __asof_tie
            FROM ({fetch_sql(plan, f"({plan.matched}) q")}) f
        ) t WHERE __asof_tie = 1
    """
    back = [f"d.{key} = m.{key}" for key in plan.keys]
    back += [f"d.{_TS} = m.__asof_mts", f"d.{_CREATED} <=> m.__asof_mc"]
    outputs = ", ".join(
        [f"m.{_ROW}"] + [f"d.__asof_f{i} AS {_quote(name)}" for i, name in enumerate(plan.outputs)]
    )
    # Each matched entity row with its state's features (unmatched rows: none here; the
    # final query's LEFT JOIN gives them nulls).
    return f"""
        SELECT {outputs}
        FROM ({plan.matched}) m
        JOIN ({fetched}) d ON {" AND ".join(back)}
    """


def as_of_query(
    contexts: Sequence[offline_utils.FeatureViewQueryContext],
    entity_table: str,
    entity_timestamp: str,
    entity_columns: Sequence[str],
    full_feature_names: bool,
) -> str:
    """Statements (``---EOS---``-separated, as ``SparkRetrievalJob`` runs them) of the join.

    The one-query form, what ``to_spark_df`` returns: each view's as-of join
    (:func:`view_as_of_sql`) joined back to the entity rows in Spark, sorted by row number (a
    global sort: Spark samples its input first).

    Args:
        contexts: Feast's query contexts, one per feature view.
        entity_table: The uploaded entity rows, numbered in ``__asof_row``.
        entity_timestamp: The entity_df's event timestamp column.
        entity_columns: The entity_df's columns (all pass through).
        full_feature_names: Whether outputs are prefixed by ``<view>__``.

    Returns:
        The query; its last statement selects the entity columns and every view's features,
        in entity_df order.
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


_NULL_TIME = -(2**63)  # a null created timestamp as a join key (Arrow's join matches no null)


def _time_key(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A timestamp column as an int64 join key, nulls as one sentinel value."""
    return pc.fill_null(column.cast(pa.int64()), _NULL_TIME)


def _pick_rows(matched: pa.Table, fetched: pa.Table, keys: Sequence[str], rows: int) -> pa.Array:
    """For each of ``rows`` entity rows, the index of its state row in ``fetched`` (or null).

    A hash join on the driver of the narrow match (row number, keys, matched time and created
    time) with the fetched rows' (keys, time, created) and their index; full ties in
    ``fetched`` keep their first row.
    """
    times = ["__asof_kts", "__asof_kc"]
    left = pa.table(
        {
            _ROW: matched[_ROW],
            **{key: matched[key] for key in keys},
            times[0]: _time_key(matched["__asof_mts"]),
            times[1]: _time_key(matched["__asof_mc"]),
        }
    )
    right = (
        pa.table(
            {
                **{key: fetched[key].cast(matched.schema.field(key).type) for key in keys},
                times[0]: _time_key(fetched[_TS]),
                times[1]: _time_key(fetched[_CREATED]),
                "__asof_idx": pa.array(np.arange(fetched.num_rows, dtype=np.int64)),
            }
        )
        .group_by([*keys, *times], use_threads=False)
        .aggregate([("__asof_idx", "min")])
    )
    joined = left.join(right, keys=[*keys, *times], join_type="inner", use_threads=False)
    positions = np.full(rows, -1, dtype=np.int64)
    positions[joined[_ROW].to_numpy()] = joined["__asof_idx_min"].to_numpy()
    return pa.array(positions, mask=positions < 0)


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


class AsOfSparkRetrievalJob(SparkRetrievalJob):
    """Feast's Spark retrieval job whose Arrow result is assembled on the driver.

    Feast's ``SparkRetrievalJob.to_arrow`` is ``Table.from_pandas(df.toPandas())``: every
    state array of every row becomes Python objects in pandas on the driver, then Arrow again,
    and the on-demand views run once on the whole frame (a 1.2M-row long-history retrieval
    peaked at ~18 GiB). Here, per view, Spark runs only the narrow as-of match (row number ->
    matched state row's keys and times, :func:`view_plan`), kept cached, and one broadcast
    semi join fetching the matched state rows' features (:func:`fetch_sql`); both come to the
    driver as Arrow (PySpark 4's ``DataFrame.toArrow``), where a hash join of the narrow
    columns gives each entity row its state row and one ``take`` per view puts the features in
    entity_df order. Spark never sorts, shuffles or joins the wide feature columns. The
    on-demand views run on one record batch at a time
    (:func:`feature_engine.offline.duckdb_store.apply_on_demand_views`, the DuckDB store's
    own), so their Python lists never hold the whole result. The result equals the one-query
    form (``to_spark_df``, Feast's, sorted; tested) and Feast's ``to_arrow``.

    Args:
        plans: Each view's match and state queries (:func:`view_plan`).
        entity_table: The uploaded entity rows' temporary view, numbered in ``__asof_row``.
        entity_columns: The entity_df's columns, passed through.
        batch_rows: Rows per on-demand batch.
        **kwargs: ``SparkRetrievalJob``'s arguments (its ``query`` is the one-query form).
    """

    def __init__(
        self,
        plans: Sequence[ViewPlan],
        entity_table: str,
        entity_columns: Sequence[str],
        batch_rows: int = 65_536,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._plans = list(plans)
        self._entity_table = entity_table
        self._entity_columns = list(entity_columns)
        self._batch_rows = batch_rows

    def _joined(self) -> pa.Table:
        """The join's rows as Arrow, in entity_df order, without the on-demand views."""
        spark = self.spark_session
        columns = ", ".join(_quote(column) for column in self._entity_columns)
        entities = spark.sql(f"SELECT {_ROW}, {columns} FROM {self._entity_table}").toArrow()
        entities = entities.take(pc.sort_indices(entities[_ROW]))
        ids = entities[_ROW].to_numpy()
        contiguous = len(ids) == 0 or (ids[0] == 0 and ids[-1] == len(ids) - 1)
        out = {column: entities[column] for column in self._entity_columns}
        for i, plan in enumerate(self._plans):
            keys = [key.strip("`").replace("``", "`") for key in plan.keys]
            matched_view = f"{self._entity_table}__m{i}"
            matched_frame = spark.sql(plan.matched)
            matched_frame.cache()  # read twice: to the driver, and by the fetch's semi join
            try:
                matched_frame.createOrReplaceTempView(matched_view)
                matched = matched_frame.toArrow()
                fetched = spark.sql(fetch_sql(plan, matched_view)).toArrow()
            finally:
                matched_frame.unpersist()
                spark.catalog.dropTempView(matched_view)
            if not contiguous:  # a Spark entity_df: monotonically increasing, not dense, ids
                dense = np.searchsorted(ids, matched[_ROW].to_numpy())
                matched = matched.set_column(
                    matched.schema.get_field_index(_ROW), _ROW, pa.array(dense)
                )
            pick = _pick_rows(matched, fetched, keys, len(ids))
            for k, name in enumerate(plan.outputs):
                out[name] = fetched[f"__asof_f{k}"].take(pick)
        return pa.table(out)

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        """The joined rows without on-demand views (Feast's ``to_arrow`` applies those)."""
        return self._joined()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._joined().to_pandas()

    def to_arrow(self, validation_reference: Any = None, timeout: int | None = None) -> pa.Table:
        """Joined rows with the on-demand views applied batch by batch (Feast's result).

        Args:
            validation_reference: A dataset validation; handled by Feast's implementation.
            timeout: Unused.

        Returns:
            The retrieval's rows in entity_df order.
        """
        if validation_reference is not None or not self.on_demand_feature_views:
            return super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        joined = self._joined()
        parts = [
            apply_on_demand_views(
                pa.Table.from_batches([batch], schema=joined.schema),
                self.on_demand_feature_views,
                self.full_feature_names,
                self._metadata,
            )
            for batch in joined.to_batches(max_chunksize=self._batch_rows)
        ]
        if not parts:  # no rows: the views still name their columns
            return apply_on_demand_views(
                joined, self.on_demand_feature_views, self.full_feature_names, self._metadata
            )
        return pa.concat_tables(parts)


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
            An :class:`AsOfSparkRetrievalJob` (Feast's ``SparkRetrievalJob`` with an Arrow
            result) over the as-of query.
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
        views = cast(list[offline_utils.FeatureViewQueryContext], spark_contexts)
        query = as_of_query(views, table, timestamp, list(entity_schema), full_feature_names)
        min_ts, max_ts = cast(tuple[datetime, datetime], timestamp_range)
        return AsOfSparkRetrievalJob(
            plans=[view_plan(view, table, timestamp, full_feature_names) for view in views],
            entity_table=table,
            entity_columns=list(entity_schema),
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

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: Any,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        """The latest row per entity with event time in ``[start_date, end_date]``.

        What ``feast materialize`` loads. Read from the table's latest-rows sidecar when it
        answers the range exactly (module docstring), else Feast's Spark query.

        Args:
            config: The repo config.
            data_source: The view's batch source.
            join_key_columns: Entity key columns.
            feature_name_columns: Feature columns.
            timestamp_field: Event timestamp column.
            created_timestamp_column: Created timestamp column, if any.
            start_date: Earliest event time to consider.
            end_date: Latest event time to consider.

        Returns:
            A job whose rows are one per entity.
        """
        sidecar = None
        columns = [*join_key_columns, *feature_name_columns, timestamp_field]
        if created_timestamp_column:
            columns.append(created_timestamp_column)
        table = _local_table(data_source)
        if table is not None:
            sidecar = usable_latest_rows(
                table,
                join_key_columns,
                timestamp_field,
                created_timestamp_column,
                columns,
                end_date,
            )
        if sidecar is None:
            return SparkOfflineStore.pull_latest_from_table_or_query(
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
            )
        return DuckDBQueryJob(
            config, sidecar_rows_sql(sidecar, columns, timestamp_field, start_date, end_date)
        )


def _local_table(source: Any) -> str | None:
    """The local path of a ``SparkSource`` over a Parquet path (file or folder), else None."""
    if not isinstance(source, SparkSource) or not source.path:
        return None
    if (source.file_format or "parquet") != "parquet":
        return None
    path = local_path(source.path)
    return str(path) if path is not None and path.exists() else None
