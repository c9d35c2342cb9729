"""Feature pipeline: raw transactions and labels -> the offline state tables Feast reads.

One DuckDB pass, no per-row Python. Every table has one row per entity and distinct event
time, holding the state *as of* that time (see :mod:`feature_repo.logic` for the definition
and why). The SQL sticks to window functions over ``RANGE`` frames and list aggregates, which
Spark SQL accepts too (``collect_list``/``flatten``/``slice``), so the same logic can move to
Feast's Spark offline store when the history outgrows one machine.

``merge_transaction`` in :mod:`feature_repo.logic` is the online, one-at-a-time twin of the
customer and merchant queries; ``tests/unit/features/test_logic.py`` checks they produce
identical state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from feature_repo.aggregations import VELOCITY, VelocityTable
from feature_repo.events import EventTables, read_event_tables
from feature_repo.latest_rows import latest_rows_path, write_latest_rows
from feature_repo.logic import BASELINE_DAYS, DAY_US, LABEL_STATE_DAYS, event_array_fields
from fraud_platform.contracts import EVENT_TIMESTAMP
from fraud_platform.settings import FeatureParams, Paths

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


def _sql_top_cap(list_expr: str, cap: int) -> str:
    """SQL for the last ``cap`` elements of a sorted list (the largest keys)."""
    return f"list_slice({list_expr}, greatest(len({list_expr}) - {cap} + 1, 1), len({list_expr}))"


def _arrays_sql(entity: str, fields: str, cap: int, lateness: int, window: int, table: str) -> str:
    """SQL: per entity and distinct timestamp T, the state arrays as of T, and the anchor.

    ``older`` = top_cap of the transactions in ``[T - S - L, T - L)`` (S: the entity's longest
    declared window), ``recent`` = all of
    ``[T - L, T]`` (both sorted by (ts, key)); ``anchor`` = the latest transaction before
    ``T - L``. RANGE
    frames count microseconds: ``1 PRECEDING`` ends just before a time, and ``CURRENT ROW``
    includes the same-second peers. Peers at T share every frame, so one row per T is kept.
    """
    older_end = lateness + 1
    window_start = window + lateness
    return f"""
        SELECT {entity}, ts,
               {_sql_top_cap("list_sort(coalesce(older, []))", cap)} AS older,
               list_sort(recent) AS recent,
               anchor
        FROM (
            SELECT {entity}, ts,
                   list(struct_pack({fields})) OVER (
                       w RANGE BETWEEN {window_start} PRECEDING AND {older_end} PRECEDING) AS older,
                   list(struct_pack({fields})) OVER (
                       w RANGE BETWEEN {lateness} PRECEDING AND CURRENT ROW) AS recent,
                   max(struct_pack({fields})) OVER (
                       w RANGE BETWEEN UNBOUNDED PRECEDING AND {older_end} PRECEDING) AS anchor,
                   row_number() OVER (PARTITION BY {entity}, ts ORDER BY tid) AS peer_rank
            FROM {table}
            WINDOW w AS (PARTITION BY {entity} ORDER BY ts)
        )
        WHERE peer_rank = 1
    """


def _day_buckets_sql(groups: str, entity: str, a_type: str, lateness: int) -> list[str]:
    """SQL statements: per (entity, ts) of ``groups``, daily buckets (d, a, b) as of ts.

    ``groups`` has one row per customer and distinct event time with ``day`` and per-event sums
    ``a`` and ``b``. The result ``<groups>_buckets`` holds the complete days
    ``[day(ts - L) - 30, day)`` plus the running total of the event's own day up to and
    including ts: what a request at any t >= ts - L needs. Sums run in ts order (window
    frames), so the floating-point result is deterministic.
    """
    lateness_days = -(-lateness // DAY_US)
    return [
        f"""CREATE TEMP TABLE {groups}_running AS
            SELECT {entity}, ts, day,
                   (sum(a) OVER w)::{a_type} AS today_a, (sum(b) OVER w)::BIGINT AS today_b
            FROM {groups}
            WINDOW w AS (PARTITION BY {entity}, day ORDER BY ts
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""",
        f"""CREATE TEMP TABLE {groups}_prior AS
            SELECT {entity}, day,
                   coalesce(list(struct_pack(d := day, a := a, b := b)) OVER (
                       PARTITION BY {entity} ORDER BY day
                       RANGE BETWEEN {BASELINE_DAYS + lateness_days} PRECEDING AND 1 PRECEDING),
                       []) AS prior
            FROM (SELECT {entity}, day, arg_max(today_a, ts) AS a, arg_max(today_b, ts) AS b
                  FROM {groups}_running GROUP BY {entity}, day)""",
        f"""CREATE TEMP TABLE {groups}_buckets AS
            SELECT r.{entity}, r.ts,
                   list_filter(list_sort(p.prior),
                               lambda x: x.d >= (r.ts - {lateness}) // {DAY_US} - {BASELINE_DAYS})
                   || [struct_pack(d := r.day, a := r.today_a, b := r.today_b)] AS buckets
            FROM {groups}_running r JOIN {groups}_prior p USING ({entity}, day)""",
    ]


def _struct_fields(entity: str, table: VelocityTable, *extra: str) -> str:
    """``struct_pack`` fields of an entity's events: time, key, the declared columns, extras."""
    return ", ".join(f"{name} := {name}" for name in ("ts", "tid", *table.columns(entity), *extra))


def _event_arrays_sql(entity: str, table: VelocityTable) -> str:
    """SQL select items: the state's event arrays (names from ``logic.event_array_fields``)."""
    names = [name for name, _ in event_array_fields(entity, table)]
    sources = ["ts", "tid", *table.columns(entity)]
    return ",\n           ".join(
        f"list_transform(older || recent, lambda x: x.{source}) AS {name}"
        for source, name in zip(sources, names, strict=True)
    )


def _customer_activity_sql(cap: int, lateness: int, table: VelocityTable) -> tuple[list[str], str]:
    fields = _struct_fields("customer", table, "lat", "long")
    window = table.state_window_us("customer")
    setup = [
        # One group per customer and distinct timestamp: all same-second peers together.
        f"""CREATE TEMP TABLE c_groups AS
            SELECT customer_id, ts, ts // {DAY_US} AS day,
                   sum(amount ORDER BY tid) AS a, count(*) AS b
            FROM txn GROUP BY customer_id, ts""",
        "CREATE TEMP TABLE c_arrays AS "
        + _arrays_sql("customer_id", fields, cap, lateness, window, "txn"),
        *_day_buckets_sql("c_groups", "customer_id", "DOUBLE", lateness),
    ]
    final = f"""
    SELECT customer_id, make_timestamp(ts)::TIMESTAMPTZ AS event_timestamp,
           {_event_arrays_sql("customer", table)},
           list_transform(recent, lambda x: x.lat) AS c_recent_lats,
           list_transform(recent, lambda x: x.long) AS c_recent_longs,
           ts AS c_latest_ts_us,
           coalesce(anchor.ts, -1) AS c_anchor_ts_us,
           coalesce(anchor.tid, '') AS c_anchor_txn_id,
           coalesce(anchor.lat, 0.0) AS c_anchor_lat,
           coalesce(anchor.long, 0.0) AS c_anchor_long,
           list_transform(buckets, lambda x: x.d) AS c_day_numbers,
           list_transform(buckets, lambda x: x.a) AS c_day_sums,
           list_transform(buckets, lambda x: x.b) AS c_day_counts,
           {cap}::BIGINT AS c_state_cap,
           {lateness}::BIGINT AS c_lateness_us
    FROM c_arrays JOIN c_groups_buckets USING (customer_id, ts)
    """
    return setup, final


def _merchant_activity_sql(cap: int, lateness: int, table: VelocityTable) -> tuple[list[str], str]:
    # A merchant tells transactions apart by (card, transaction id): merchant_event_key.
    columns = "".join(f", {column}" for column in table.columns("merchant"))
    setup = [
        f"""CREATE TEMP TABLE m_txn AS
           SELECT merchant_id, ts, customer_id || chr(31) || tid AS tid{columns} FROM txn""",
        "CREATE TEMP TABLE m_arrays AS "
        + _arrays_sql(
            "merchant_id",
            _struct_fields("merchant", table),
            cap,
            lateness,
            table.state_window_us("merchant"),
            "m_txn",
        ),
    ]
    final = f"""
    SELECT merchant_id, make_timestamp(ts)::TIMESTAMPTZ AS event_timestamp,
           {_event_arrays_sql("merchant", table)},
           ts AS m_latest_ts_us,
           {cap}::BIGINT AS m_state_cap,
           {lateness}::BIGINT AS m_lateness_us
    FROM m_arrays
    """
    return setup, final


def _merchant_labels_sql() -> tuple[list[str], str]:
    """Per merchant and UTC day with label arrivals, the label state as of that day's last label.

    The row of day D is stamped with the last label time of D and holds the label-arrival days
    ``[D - 30, D]``: all a request on a day >= D needs, since the on-demand view uses the 30
    complete days before the request's day. The point-in-time join at t picks the last label day
    at or before t, so every label it counts arrived before t. Each merchant's *last* row keeps
    ``[D - LABEL_STATE_DAYS, D]`` instead: exactly what :func:`~feature_repo.logic.merge_label`
    gives after folding every label, and what ``feast materialize`` loads into Redis. Rows are
    sparse (days with labels only) and never expire.
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
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    table: VelocityTable = VELOCITY,
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
    lateness = features.max_lateness_seconds * 1_000_000
    queries = {
        "customer_activity": _customer_activity_sql(features.state_cap, lateness, table),
        "merchant_activity": _merchant_activity_sql(features.merchant_state_cap, lateness, table),
        "merchant_label_stats": _merchant_labels_sql(),
        "customer_profile": _customer_profile_sql(),
    }
    written: dict[str, tuple[Path, int]] = {}
    staged: list[tuple[Path, Path]] = []
    for name, (setup, sql) in queries.items():
        step_started = time.perf_counter()
        for statement in setup:
            con.execute(statement)
        final = out_dir / f"{name}.parquet"
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
    progress: Callable[[str], None] | None = None,
    threads: int | None = None,
    out_dir: Path | None = None,
    table: VelocityTable = VELOCITY,
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
        table: The velocity declarations (:data:`~feature_repo.aggregations.VELOCITY`).

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
        threads=threads,
        progress=progress,
        table=table,
    )


def latest_state_time(features_dir: Path) -> datetime:
    """The latest event or label time in the offline tables: "now" as far as the data knows.

    Materializing up to this time loads every entity's state as of the end of the data, so a
    request timestamped at data time (a replay, a backfill, a demo) sees what training saw;
    materializing to wall-clock now would add nothing, since no row is newer.

    Raises:
        FileNotFoundError: If the offline tables have not been built.
    """
    paths = [features_dir / f"{name}.parquet" for name in OFFLINE_TABLES]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(f"offline tables not built (run `fraud features build`): {missing}")
    row = duckdb.execute(
        "SELECT max(event_timestamp) FROM read_parquet(?)", [[str(p) for p in paths]]
    ).fetchone()
    if row is None or row[0] is None:
        raise FileNotFoundError(f"offline tables under {features_dir} hold no rows")
    latest: datetime = row[0]
    return latest.astimezone(UTC) if latest.tzinfo else latest.replace(tzinfo=UTC)
