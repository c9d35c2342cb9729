"""The Spark profile's state build: the same offline tables as the DuckDB build.

Same tables as :mod:`feature_engine.offline.pipeline`, same schema, same rows
(``tests/integration/features/test_spark_profile.py`` compares them row for row); only the engine
differs, so the offline tables can be built where the history is, on a cluster, from Parquet on
object storage.

* The velocity states (``customer_activity``, ``merchant_activity``) are *not* rewritten in Spark:
  ``groupBy(entity).applyInArrow`` hands each customer's (merchant's) events to
  :func:`feature_engine.offline.pipeline.fold_activity`, the DuckDB pipeline's own fold, which runs
  the online fold's code (``CustomerStateBuilder`` / ``EntityState``). The window semantics
  (sawtooth tiles, lateness region, caps) have one implementation for every engine.
* The label and home tables are short SQL; here they are Spark SQL, the DuckDB SQL of
  :mod:`feature_engine.offline.pipeline` written with Spark's functions (``collect_list`` for
  ``list``, ``transform``/``filter`` for ``list_transform``/``list_filter``, ``timestamp_micros``
  for ``make_timestamp``), with the same constants (``DAY_US``, ``BASELINE_DAYS``,
  ``LABEL_STATE_DAYS``) imported from :mod:`feature_engine.state.request`.

Each table is written as a Parquet *folder* (Spark's part files) at ``<location>/<name>.parquet``,
the path the profile's ``SparkSource`` reads. Every table is first written to a staging path
beside it; only when all are written are they switched in, each by two folder renames (see
:func:`_switch`), so a build that fails leaves the previous tables readable.

Beside each table on a local (or mounted shared) path goes its latest-rows sidecar
``<name>.latest.parquet``, written by the DuckDB build's own
:func:`~feature_engine.offline.latest_rows.write_latest_rows` from the staged part files, so
``feast materialize`` reads one small file per view instead of a Spark scan of the whole state
history (``AsOfSparkOfflineStore.pull_latest_from_table_or_query``,
:mod:`feature_engine.spark.asof_store`). A table on an object store or HDFS gets none;
materialize then scans it with Spark.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from feature_engine.declarations import VelocityTable
from feature_engine.offline.latest_rows import latest_rows_path, write_latest_rows
from feature_engine.offline.pipeline import (
    OFFLINE_TABLES,
    TABLE_JOIN_KEYS,
    TRANSACTION_COLUMNS,
    PipelineResult,
    fold_activity,
)
from feature_engine.state.fields import BASELINE_DAYS, DAY_US, LABEL_STATE_DAYS, state_fields
from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.settings import FeatureParams, Settings, local_path, table_location

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_SPARK_TYPES = {
    "int64": "bigint",
    "float64": "double",
    "string": "string",
    "int64[]": "array<bigint>",
    "float64[]": "array<double>",
    "string[]": "array<string>",
}


def activity_schema(entity: str, table: VelocityTable) -> str:
    """The Spark DDL schema of an activity table: join key, ``event_timestamp``, state fields."""
    key = "customer_id" if entity == "customer" else "merchant_id"
    view = "customer_activity" if entity == "customer" else "merchant_activity"
    fields = [f"{key} string", f"{EVENT_TIMESTAMP} timestamp"]
    fields += [f"`{name}` {_SPARK_TYPES[kind]}" for name, kind in state_fields(table)[view]]
    return ", ".join(fields)


def _fold_group(
    events: pa.Table, entity: str, features: FeatureParams, table: VelocityTable
) -> pa.Table:
    """One entity's events (one ``applyInArrow`` group) -> its state rows, by the shared fold.

    Spark hands the group in no particular order; the fold needs time order with the
    transaction id breaking ties, the DuckDB pipeline's ``ORDER BY ts, tid``.
    """
    ordered = events.sort_by([("ts", "ascending"), ("tid", "ascending")])
    return fold_activity(
        ordered.select(["entity_id", *TRANSACTION_COLUMNS]), entity, features, table
    )


def activity_frame(
    txn: DataFrame, entity: str, features: FeatureParams, table: VelocityTable
) -> DataFrame:
    """The ``customer_activity`` or ``merchant_activity`` rows, one group per entity.

    Args:
        txn: Transactions with :data:`~feature_engine.offline.pipeline.TRANSACTION_COLUMNS` (``ts``
        in
            microseconds since the epoch).
        entity: ``customer`` or ``merchant``.
        features: ``params.yaml``'s ``features``.
        table: The velocity declarations.

    Returns:
        A lazy DataFrame of the table's rows.
    """
    key = "customer_id" if entity == "customer" else "merchant_id"

    def fold(events: pa.Table) -> pa.Table:
        # A closure with type hints, not a functools.partial: PySpark 4.3 reads the hints to
        # pick the Arrow UDF type, and fails on a partial.
        return _fold_group(events, entity, features, table)

    events = txn.withColumn("entity_id", txn[key])
    return events.groupBy("entity_id").applyInArrow(fold, activity_schema(entity, table))


def merchant_labels_sql() -> str:
    """Spark SQL of ``merchant_label_stats``: ``pipeline._merchant_labels_sql`` in Spark's words.

    Per merchant and UTC day with label arrivals, the label state as of that day's last label:
    the row of day D, stamped with D's last label time, keeps the arrival days ``[D - 30, D]``,
    the merchant's last row ``[D - LABEL_STATE_DAYS, D]`` (see the DuckDB version's docstring).
    Reads the temporary view ``lab`` (``tid, merchant_id, is_fraud, label_ts``).
    """
    return f"""
    WITH ml_daily AS (
        SELECT merchant_id, label_ts DIV {DAY_US} AS day,
               CAST(count(*) AS BIGINT) AS labels, CAST(sum(is_fraud) AS BIGINT) AS frauds,
               max(label_ts) AS last_label_ts
        FROM lab
        GROUP BY merchant_id, label_ts DIV {DAY_US}
    ),
    windowed AS (
        SELECT merchant_id, last_label_ts,
               day - CASE WHEN day = max(day) OVER (PARTITION BY merchant_id)
                          THEN {LABEL_STATE_DAYS} ELSE {BASELINE_DAYS} END AS complete_from,
               array_sort(collect_list(named_struct('d', day, 'n', labels, 'f', frauds)) OVER (
                   PARTITION BY merchant_id ORDER BY day
                   RANGE BETWEEN {LABEL_STATE_DAYS} PRECEDING AND CURRENT ROW)) AS buckets
        FROM ml_daily
    ),
    kept AS (
        SELECT *, filter(buckets, x -> x.d >= complete_from) AS kept FROM windowed
    )
    SELECT merchant_id,
           timestamp_micros(last_label_ts) AS event_timestamp,
           last_label_ts AS ml_latest_ts_us,
           transform(kept, x -> x.d) AS ml_day_numbers,
           transform(kept, x -> x.n) AS ml_day_labels,
           transform(kept, x -> x.f) AS ml_day_frauds,
           complete_from AS ml_complete_from_day
    FROM kept
    """


def customer_profile_sql() -> str:
    """Spark SQL of ``customer_profile``: ``pipeline._customer_profile_sql`` in Spark's words.

    Homes are master data, dated no later than the data's first transaction (see the DuckDB
    version). Reads the temporary views ``cust`` and ``txn``.
    """
    return """
    SELECT c.customer_id,
           least(c.created_at, coalesce(f.first_ts, c.created_at)) AS event_timestamp,
           c.home_lat, c.home_long
    FROM cust c
    CROSS JOIN (SELECT timestamp_micros(min(ts)) AS first_ts FROM txn) f
    """


def build_offline_tables_spark(
    spark: SparkSession,
    transactions: DataFrame,
    labels: DataFrame,
    customers: DataFrame,
    location: str,
    features: FeatureParams,
    table: VelocityTable,
    progress: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Build every offline feature table with Spark, as the DuckDB ``build_offline_tables`` does.

    Args:
        spark: The session (:func:`feature_engine.spark.session.spark_session`).
        transactions: Raw-schema transactions (``transaction_id, customer_id, merchant_id,
            timestamp, amount, lat, long``), e.g. ``spark.read.parquet("s3a://.../transactions")``.
        labels: Labels with their merchant (``transaction_id, merchant_id, is_fraud,
            label_timestamp``).
        customers: The customers table (``customer_id, home_lat, home_long, created_at``).
        location: Folder or URI the tables are written under (``<location>/<name>.parquet``).
        features: ``params.yaml``'s ``features`` (state caps, lateness).
        table: The velocity declarations.
        progress: Where to report each table's build time; silent by default.

    Returns:
        Where each table went, its row count and the wall time.
    """
    started = time.perf_counter()
    transactions.selectExpr(
        "transaction_id AS tid", "customer_id", "merchant_id", "unix_micros(timestamp) AS ts",
        "amount", "lat", "long",
    ).createOrReplaceTempView("txn")  # fmt: skip
    labels.selectExpr(
        "transaction_id AS tid", "merchant_id", "CAST(is_fraud AS INT) AS is_fraud",
        "unix_micros(label_timestamp) AS label_ts",
    ).createOrReplaceTempView("lab")  # fmt: skip
    customers.createOrReplaceTempView("cust")
    txn = spark.table("txn")
    frames = {
        "customer_activity": activity_frame(txn, "customer", features, table),
        "merchant_activity": activity_frame(txn, "merchant", features, table),
        "merchant_label_stats": spark.sql(merchant_labels_sql()),
        "customer_profile": spark.sql(customer_profile_sql()),
    }
    # Every table is written to a staging path beside its own first; only when all four are
    # written and counted are they switched in (the previous table renamed aside, the new one
    # renamed to its path, the previous one deleted). A build that fails half-way leaves the
    # previous tables as they were, readable, and removes its staged ones.
    build_id = uuid.uuid4().hex[:12]
    staged: dict[str, tuple[str, str, int]] = {}
    try:
        for name in OFFLINE_TABLES:
            step_started = time.perf_counter()
            path = table_location(location, name)
            staging = f"{path}.building-{build_id}"
            key = "customer_id" if name.startswith("customer") else "merchant_id"
            # Each part file ordered by (entity, time), like the DuckDB tables. The activity
            # frames already are: Spark sorts each partition by the grouping key before a
            # grouped map, and the fold emits an entity's rows in time order (sorting their wide
            # rows again needs gigabytes of heap on a long history). No global orderBy: its
            # range partitioning samples the input first, which would run the fold twice.
            frame = frames[name]
            if name not in ("customer_activity", "merchant_activity"):
                frame = frame.sortWithinPartitions(key, EVENT_TIMESTAMP)
            frame.write.mode("overwrite").parquet(staging)
            staged[name] = (path, staging, spark.read.parquet(staging).count())
            local = local_path(staging)
            if local is not None:
                # What `feast materialize` loads, from the staged part files (a folder rename
                # keeps their fingerprint); switched in after the table.
                write_latest_rows(
                    local,
                    [TABLE_JOIN_KEYS[name]],
                    EVENT_TIMESTAMP,
                    out=f"{local}.latest-{build_id}",
                )
            if progress:
                progress(f"  {name}: {time.perf_counter() - step_started:.1f} s")
    except BaseException:
        for _, staging, _ in staged.values():
            _delete(spark, staging)
        _delete_matching(spark, location, f".building-{build_id}")
        raise
    written: dict[str, tuple[str, int]] = {}
    for name, (path, staging, rows) in staged.items():
        _switch(spark, staging, path, f"{path}.previous-{build_id}")
        local = local_path(staging)
        if local is not None:
            # Between the two replaces the old sidecar's fingerprint no longer matches the
            # table: a materialize then scans the table, it never reads a stale sidecar.
            os.replace(f"{local}.latest-{build_id}", latest_rows_path(local_path(path) or path))
        written[name] = (path, rows)
    return PipelineResult(
        tables=written,  # type: ignore[arg-type]  # paths as strings: they may be URIs
        seconds=time.perf_counter() - started,
        transactions=transactions.count(),
        labels=labels.count(),
    )


def check_local_tables(location: str) -> bool:
    """Check that every offline table under a local ``location`` is a readable Parquet table.

    What Feast's ``SparkSource.validate`` checks at ``feast apply`` (the table exists and has a
    schema), without starting Spark: DuckDB's reader lists each table's part files and reads
    their schema.

    Args:
        location: ``Settings.offline_tables_location`` of the Spark profile.

    Returns:
        ``True`` when checked here; ``False`` for a location only Spark reaches (HDFS, object
        stores), which Feast then checks through Spark.

    Raises:
        FileNotFoundError: A table is missing or not Parquet; the message names it.
    """
    import duckdb

    from feature_engine.offline.latest_rows import parquet_source, sql_literal

    local = local_path(location)
    if local is None:
        return False
    for name in OFFLINE_TABLES:
        table = table_location(local, name)
        try:
            duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet({sql_literal(parquet_source(table))})")
        except duckdb.Error as exc:
            raise FileNotFoundError(
                f"offline table {table} is missing or unreadable (run `fraud features build`): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    return True


def _hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """The Hadoop FileSystem and Path of a table path (local folder, HDFS, s3a...)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def _delete(spark: SparkSession, path: str) -> None:
    """Delete a folder (recursively) if it exists."""
    fs, hadoop_path = _hadoop_path(spark, path)
    if fs.exists(hadoop_path):
        fs.delete(hadoop_path, True)


def _delete_matching(spark: SparkSession, location: str, marker: str) -> None:
    """Delete every entry of ``location`` whose name contains ``marker`` (a failed build's)."""
    fs, folder = _hadoop_path(spark, location.rstrip("/"))
    if fs.exists(folder):
        for status in fs.listStatus(folder):
            if marker in status.getPath().getName():
                fs.delete(status.getPath(), True)


def _switch(spark: SparkSession, staging: str, path: str, previous: str) -> None:
    """Put the staged table at ``path``: the old one renamed aside, the new one in, old deleted.

    Two renames of folders: on a local disk or HDFS each is atomic, and a reader between them
    finds no table for that instant (a Parquet folder cannot be swapped in one rename over a
    non-empty one). Object stores copy on rename: there the switch is not atomic.
    """
    fs, target = _hadoop_path(spark, path)
    _, new = _hadoop_path(spark, staging)
    _, aside = _hadoop_path(spark, previous)
    had_previous = fs.exists(target)
    if had_previous and not fs.rename(target, aside):
        raise OSError(f"could not move {path} aside to {previous}")
    if not fs.rename(new, target):
        if had_previous:
            fs.rename(aside, target)  # put the previous table back
        raise OSError(f"could not move the new table {staging} to {path}")
    if had_previous:
        fs.delete(aside, True)


def build_features_spark(
    settings: Settings,
    features: FeatureParams,
    table: VelocityTable,
    progress: Callable[[str], None] | None = None,
    location: str | None = None,
) -> PipelineResult:
    """The ``features`` step of a project on the Spark profile (``fraud features build``).

    Reads the project's events as the DuckDB build does (raw tables plus the ingestion
    journals, :func:`~feature_engine.offline.events.read_event_tables`) and hands them to Spark. On
    a cluster whose history lives in object storage, call :func:`build_offline_tables_spark` with
    ``spark.read.parquet(...)`` frames instead.

    Args:
        settings: The project (paths, Spark settings, ``spark_tables_uri``).
        features: ``params.yaml``'s ``features`` section.
        progress: Where to report each table's build time; silent by default.
        table: The velocity declarations the state is built for.
        location: Where to write; ``settings.offline_tables_location`` of the Spark profile
            by default.

    Returns:
        Where each table went, its row count, the wall time and the events it was built from.
    """
    from feature_engine.offline.events import read_event_tables
    from feature_engine.spark.session import spark_session

    spark = spark_session(settings)
    events = read_event_tables(settings.paths.raw_dir, settings.paths.ingested_dir)
    spark_settings = settings.model_copy(update={"feature_profile": "spark"})
    result = build_offline_tables_spark(
        spark,
        spark.createDataFrame(events.transactions),
        spark.createDataFrame(_label_columns(events.labels)),
        spark.createDataFrame(events.customers),
        location or spark_settings.offline_tables_location,
        features,
        table=table,
        progress=progress,
    )
    return result


def _label_columns(labels: pa.Table) -> pa.Table:
    """The label columns the build reads (the pattern is for slice metrics only)."""
    return labels.select(["transaction_id", "merchant_id", "is_fraud", "label_timestamp"]).cast(
        pa.schema(
            [
                ("transaction_id", pa.string()),
                ("merchant_id", pa.string()),
                ("is_fraud", pa.int32()),
                ("label_timestamp", labels.schema.field("label_timestamp").type),
            ]
        )
    )
