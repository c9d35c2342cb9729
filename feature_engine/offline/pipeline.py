"""Feature pipeline: raw transactions and labels -> the offline state tables Feast reads.

The velocity states (``customer_activity``, ``merchant_activity``) fold each card's and each
merchant's history, in time order, with the very code the online fold uses
(``logic.CustomerStateBuilder`` and ``tiles.EntityState``), and emit the state after each
5-minute tile with events: so the batch and the online state cannot disagree by construction,
and the tests check the remaining claim, that the fold gives the same state in any order. The
per-entity fold is a plain function of sorted events (:func:`fold_activity`), the shape
Spark's ``groupBy(...).applyInArrow`` runs: the Spark profile (:mod:`feature_engine.spark.pipeline`)
calls the same function on each entity's group.

The label and home tables are DuckDB SQL. Every table holds, per entity, its state *as of* each
of its rows' times (see :mod:`feature_engine.state.request` for the definition and why).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from feature_engine.declarations import FINEST_TILE_US, MICROS_PER_SECOND, VelocityTable
from feature_engine.offline.events import EventTables, read_event_tables
from feature_engine.offline.latest_rows import latest_rows_path, parquet_source, write_latest_rows
from feature_engine.state.fields import (
    BASELINE_DAYS,
    DAY_US,
    LABEL_STATE_DAYS,
    activity_layout,
    state_fields,
)
from feature_engine.state.fold import CustomerStateBuilder, Transaction, merchant_event
from feature_engine.state.tiles import EntityState
from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.settings import FeatureParams, Paths, table_location

OFFLINE_TABLES = (
    "customer_activity",
    "merchant_activity",
    "merchant_label_stats",
    "customer_profile",
)
# Join key of the feature view reading each table (feature_repo/definitions.py): the latest-rows
# sidecar records it, and the offline store reads the sidecar only for a view with that key.
TABLE_JOIN_KEYS = {
    "customer_activity": "customer_id",
    "merchant_activity": "merchant_id",
    "merchant_label_stats": "merchant_id",
    "customer_profile": "customer_id",
}


@dataclass(frozen=True)
class PipelineResult:
    """What the pipeline wrote: table name -> (path, rows), how long it took, from how much.

    Attributes:
        tables: Table name -> (path, rows).
        seconds: Wall time.
        transactions: Transactions the state was built from (raw plus ingested online).
        labels: Labels the label state was built from.
    """

    tables: dict[str, tuple[Path, int]]
    seconds: float
    transactions: int = 0
    labels: int = 0


ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "int64[]": pa.list_(pa.int64()),
    "float64[]": pa.list_(pa.float64()),
    "string[]": pa.list_(pa.string()),
}


def _activity_table(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    features: FeatureParams,
    table: VelocityTable,
) -> pa.Table:
    """An entity's velocity state as of each of its 5-minute tiles with events (DuckDB side).

    DuckDB only sorts the events; :func:`fold_activity` (the Spark build's fold too) does the
    rest.
    """
    key = "customer_id" if entity == "customer" else "merchant_id"
    events = con.sql(
        f"SELECT {key} AS entity_id, {', '.join(TRANSACTION_COLUMNS)} "
        f"FROM txn ORDER BY {key}, ts, tid"
    ).to_arrow_table()
    return fold_activity(events, entity, features, table)


def fold_activity(
    events: pa.Table, entity: str, features: FeatureParams, table: VelocityTable
) -> pa.Table:
    """Fold sorted events into an entity's velocity state, one row per 5-minute tile with events.

    The one implementation of the offline state build, whatever the engine: the DuckDB
    pipeline calls it on every entity at once, the Spark profile
    (:mod:`feature_engine.spark.pipeline`) on each entity's group through
    ``groupBy(...).applyInArrow``. Each entity's history is folded in time order with the one
    implementation of the state (``CustomerStateBuilder`` / ``EntityState``, the online fold's
    own), and after the last event of each 5-minute tile the state is emitted as one row,
    stamped with the tile's *first* event time. The point-in-time join at t then picks a state
    whose latest event T is less than 5 minutes after t: within the lateness L, so the
    on-demand view's strict ``< t`` filter on the raw region gives exactly the state as of t.
    A heavy entity gets at most 288 rows a day, however many events it has.

    Args:
        events: Columns ``entity_id`` (the customer or merchant id) and
            :data:`TRANSACTION_COLUMNS`, sorted by ``(entity_id, ts, tid)``; ``ts`` in
            microseconds since the epoch.
        entity: ``customer`` or ``merchant``.
        features: ``params.yaml``'s ``features`` (lateness, distinct-value cap).
        table: The velocity declarations (which columns the state keeps, how far back).

    Returns:
        The ``customer_activity`` or ``merchant_activity`` rows of these entities, in input
        order: join key, ``event_timestamp`` (µs, UTC), then the view's state fields.
    """
    key = "customer_id" if entity == "customer" else "merchant_id"
    view = "customer_activity" if entity == "customer" else "merchant_activity"
    names = [name for name, _ in state_fields(table)[view]]
    lateness = features.max_lateness_seconds * MICROS_PER_SECOND
    cap = features.distinct_values_cap
    layout = activity_layout(entity, table)
    columns = {name: events.column(name).to_pylist() for name in events.column_names}
    out: dict[str, list[Any]] = {name: [] for name in (key, EVENT_TIMESTAMP, *names)}
    appends = [(name, out[name].append) for name in names]
    entity_ids, stamps = out[key], out[EVENT_TIMESTAMP]
    ids = columns["entity_id"]
    n = len(ids)
    i = 0
    while i < n:
        entity_id = ids[i]
        if entity == "customer":
            builder = CustomerStateBuilder(lateness, cap, table)
            add, emit = builder.add, builder.fields
        else:
            velocity = EntityState(layout, lateness, cap)
            add = functools.partial(_add_to_merchant, velocity)
            emit = velocity.to_fields
        while i < n and ids[i] == entity_id:
            tile = columns["ts"][i] // FINEST_TILE_US
            first_ts = columns["ts"][i]
            while i < n and ids[i] == entity_id and columns["ts"][i] // FINEST_TILE_US == tile:
                add(Transaction(*(columns[c][i] for c in TRANSACTION_COLUMNS)))
                i += 1
            state = emit()
            entity_ids.append(entity_id)
            stamps.append(first_ts)
            for name, append in appends:
                append(state[name])
    state_columns = {
        name: pa.array(out[name], arrow_type)
        for name, arrow_type in activity_arrow_fields(entity, table)
    }
    return pa.table(
        {
            key: pa.array(entity_ids, pa.string()),
            EVENT_TIMESTAMP: pa.array(stamps, pa.timestamp("us", tz="UTC")),
            **state_columns,
        }
    )


def activity_arrow_fields(entity: str, table: VelocityTable) -> list[tuple[str, pa.DataType]]:
    """The state fields of an entity's activity table with their Arrow types, in order."""
    view = "customer_activity" if entity == "customer" else "merchant_activity"
    return [(name, ARROW_TYPES[kind]) for name, kind in state_fields(table)[view]]


def _add_to_merchant(velocity: EntityState, txn: Transaction) -> bool:
    return velocity.add(merchant_event(txn, velocity.layout)) != "duplicate"


# Transaction's fields, in order, as the txn table's columns.
TRANSACTION_COLUMNS = ("tid", "customer_id", "merchant_id", "ts", "amount", "lat", "long")


def _merchant_labels_sql() -> tuple[list[str], str]:
    """Per merchant and UTC day with label arrivals, the label state as of that day's last label.

    The row of day D is stamped with the last label time of D and holds the label-arrival days
    ``[D - 30, D]``: all a request on a day >= D needs, since the on-demand view uses the 30
    complete days before the request's day. The point-in-time join at t picks the last label day
    at or before t, so every label it counts arrived before t. Each merchant's *last* row keeps
    ``[D - LABEL_STATE_DAYS, D]`` instead: exactly what
    :func:`~feature_engine.state.fold.merge_label` gives after folding every label, and what ``feast
    materialize`` loads into Redis. Rows are sparse (days with labels only) and never expire.
    """
    setup = [
        f"""CREATE TEMP TABLE ml_daily AS
            SELECT merchant_id, label_ts // {DAY_US} AS day,
                   count(*)::BIGINT AS labels, sum(is_fraud)::BIGINT AS frauds,
                   max(label_ts) AS last_label_ts
            FROM lab
            GROUP BY merchant_id, label_ts // {DAY_US}"""
    ]
    final = f"""
    SELECT merchant_id,
           make_timestamp(last_label_ts)::TIMESTAMPTZ AS event_timestamp,
           last_label_ts AS ml_latest_ts_us,
           list_transform(kept, lambda x: x.d) AS ml_day_numbers,
           list_transform(kept, lambda x: x.n) AS ml_day_labels,
           list_transform(kept, lambda x: x.f) AS ml_day_frauds,
           complete_from AS ml_complete_from_day
    FROM (
        SELECT *, list_filter(buckets, lambda x: x.d >= complete_from) AS kept
        FROM (
            SELECT merchant_id, last_label_ts,
                   day - CASE WHEN day = max(day) OVER (PARTITION BY merchant_id)
                              THEN {LABEL_STATE_DAYS} ELSE {BASELINE_DAYS} END AS complete_from,
                   list_sort(list(struct_pack(d := day, n := labels, f := frauds)) OVER (
                       PARTITION BY merchant_id ORDER BY day
                       RANGE BETWEEN {LABEL_STATE_DAYS} PRECEDING AND CURRENT ROW)) AS buckets
            FROM ml_daily
        )
    )
    """
    return setup, final


def _customer_profile_sql() -> tuple[list[str], str]:
    # The customers table is master data (the bank's record of its cardholders), not an event
    # stream: every home is dated no later than the data's first transaction, even for a card
    # opened during the period. So any materialization of the data loads every known home, and
    # the offline join at any t sees the same one: a card opened after the last materialize has
    # its home online too (the bank would push it at account opening; there is no such push
    # here), and no transaction of a card precedes its opening, so nothing is learnt early.
    final = """
    SELECT c.customer_id,
           least(c.created_at, coalesce(f.first_ts, c.created_at)) AS event_timestamp,
           c.home_lat, c.home_long
    FROM cust c
    CROSS JOIN (SELECT make_timestamp(min(ts))::TIMESTAMPTZ AS first_ts FROM txn) f
    ORDER BY event_timestamp, customer_id
    """
    return [], final


def build_offline_tables(
    events: EventTables,
    out_dir: Path,
    features: FeatureParams,
    table: VelocityTable,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Build every offline feature table from the events, atomically.

    Args:
        events: Raw data plus what was ingested online (``read_event_tables``).
        out_dir: Folder to write the tables into (created if missing).
        features: ``params.yaml``'s ``features`` (state caps, lateness).
        threads: DuckDB threads; all cores by default.
        progress: Where to report each table's build time; silent by default.
        table: The velocity declarations (which columns the event arrays keep, how far back).

    Returns:
        Where each table went, its row count and the wall time.
    """
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.register("events_transactions", events.transactions)
    con.register("events_labels", events.labels)
    con.register("events_customers", events.customers)
    con.execute(
        "CREATE TEMP TABLE txn AS SELECT transaction_id AS tid, customer_id, merchant_id, "
        "epoch_us(timestamp) AS ts, amount, lat, long FROM events_transactions"
    )
    con.execute(
        "CREATE TEMP TABLE lab AS SELECT transaction_id AS tid, merchant_id, "
        "is_fraud::INTEGER AS is_fraud, epoch_us(label_timestamp) AS label_ts FROM events_labels"
    )
    con.execute("CREATE TEMP TABLE cust AS SELECT * FROM events_customers")
    # The velocity states fold each entity's history with the online fold's own code; labels
    # and homes are plain SQL.
    built = {"customer_activity": "customer", "merchant_activity": "merchant"}
    queries = {
        **{name: ([], f"SELECT * FROM {name}_built") for name in built},
        "merchant_label_stats": _merchant_labels_sql(),
        "customer_profile": _customer_profile_sql(),
    }
    written: dict[str, tuple[Path, int]] = {}
    staged: list[tuple[Path, Path]] = []
    for name, (setup, sql) in queries.items():
        step_started = time.perf_counter()
        if name in built:
            con.register(f"{name}_built", _activity_table(con, built[name], features, table))
        for statement in setup:
            con.execute(statement)
        final = Path(table_location(out_dir, name))
        tmp = out_dir / f".{name}.parquet.tmp"
        con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT PARQUET)")
        if progress:
            progress(f"  {name}: {time.perf_counter() - step_started:.1f} s")
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}')").fetchone()
        # What `feast materialize` loads: the latest row per entity, kept beside the table so
        # that materializing does not rescan the whole state history (latest_rows.py).
        latest = latest_rows_path(final)
        latest_tmp = out_dir / f".{latest.name}.tmp"
        write_latest_rows(tmp, [TABLE_JOIN_KEYS[name]], EVENT_TIMESTAMP, out=latest_tmp, con=con)
        staged += [(tmp, final), (latest_tmp, latest)]
        written[name] = (final, int(rows[0]) if rows else 0)
    for tmp, final in staged:  # all or nothing: replace only once every table is written
        os.replace(tmp, final)
    con.close()
    return PipelineResult(
        tables=written,
        seconds=time.perf_counter() - started,
        transactions=events.transactions.num_rows,
        labels=events.labels.num_rows,
    )


def build_features(
    paths: Paths,
    features: FeatureParams,
    table: VelocityTable,
    progress: Callable[[str], None] | None = None,
    threads: int | None = None,
    out_dir: Path | None = None,
) -> PipelineResult:
    """The ``features`` step of a project: its raw data plus its ingested events -> its tables.

    The one recipe the CLI, the consistency monitor's shadow build, the tests and the
    benchmarks use.

    Args:
        paths: The project's paths (raw data, ingestion journals, offline tables).
        features: ``params.yaml``'s ``features`` section (the state caps).
        progress: Where to report each table's build time; silent by default.
        threads: DuckDB threads; all cores by default.
        out_dir: Where to write the tables; the project's ``data/features`` by default (the
            consistency monitor builds into a shadow root instead).
        table: The velocity rows the state is built for: every row of every service
            (``feature_repo.services.STATE_VELOCITY``).

    Returns:
        Where each table went, its row count, the wall time and the events it was built from.
    """
    events = read_event_tables(paths.raw_dir, paths.ingested_dir)
    if progress and (events.ingested_transactions or events.ingested_labels):
        progress(
            f"  + {events.ingested_transactions:,} transactions and {events.ingested_labels:,} "
            f"labels ingested online ({paths.ingested_dir})"
        )
    return build_offline_tables(
        events,
        out_dir or paths.features_dir,
        features,
        table,
        threads=threads,
        progress=progress,
    )


def latest_state_time(location: Path | str) -> datetime:
    """The latest event or label time in the offline tables: "now" as far as the data knows.

    Materializing up to this time loads every entity's state as of the end of the data, so a
    request timestamped at data time (a replay, a backfill, a demo) sees what training saw;
    materializing to wall-clock now would add nothing, since no row is newer.

    Args:
        location: The local folder of the tables (``Paths.features_dir``, or the Spark
            profile's ``Settings.offline_tables_location`` when local); each table a file or a
            folder of part files (:func:`~fraud_platform.settings.table_location`).

    Raises:
        FileNotFoundError: If the offline tables have not been built.
    """
    paths = [Path(table_location(location, name)) for name in OFFLINE_TABLES]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(f"offline tables not built (run `fraud features build`): {missing}")
    files = [parquet_source(path) for path in paths]  # a Spark-built table: its part files
    row = duckdb.execute("SELECT max(event_timestamp) FROM read_parquet(?)", [files]).fetchone()
    if row is None or row[0] is None:
        raise FileNotFoundError(f"offline tables under {location} hold no rows")
    latest: datetime = row[0]
    return latest.astimezone(UTC) if latest.tzinfo else latest.replace(tzinfo=UTC)
