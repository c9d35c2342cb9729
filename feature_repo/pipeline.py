"""Feature pipeline: raw transactions and labels -> the offline state tables Feast reads.

One DuckDB pass, no per-row Python. Every table has one row per entity and distinct event
time, holding the state *as of* that time (see :mod:`feature_repo.logic` for the definition
and why). The SQL sticks to window functions over ``RANGE`` frames and list aggregates, which
Spark SQL accepts too (``collect_list``/``flatten``/``slice``), so the same logic can move to
Feast's Spark offline store when the history outgrows one machine.

``merge_transaction`` in :mod:`feature_repo.logic` is the online, one-at-a-time twin of the
customer and merchant queries; ``tests/features`` checks they produce identical state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from feature_repo.logic import BASELINE_DAYS, DAY_US, STATE_WINDOW_US

OFFLINE_TABLES = (
    "customer_activity",
    "merchant_activity",
    "merchant_label_stats",
    "customer_profile",
)


@dataclass(frozen=True)
class PipelineResult:
    """What the pipeline wrote: table name -> (path, rows), and how long it took."""

    tables: dict[str, tuple[Path, int]]
    seconds: float


def _sql_top_cap(list_expr: str, cap: int) -> str:
    """SQL for the last ``cap`` elements of a sorted list (the largest keys)."""
    return f"list_slice({list_expr}, greatest(len({list_expr}) - {cap} + 1, 1), len({list_expr}))"


def _older_sql(entity: str, fields: str, cap: int) -> str:
    """SQL: per entity and distinct timestamp T, top_cap of the transactions in [T - 24h, T).

    A RANGE frame ending ``1 PRECEDING`` (microseconds) holds exactly the transactions strictly
    before T within 24 h; all peers at T share it, so one of them (the first) is kept.
    """
    return f"""
        SELECT {entity}, ts,
               {_sql_top_cap("list_sort(coalesce(window_list, []))", cap)} AS older_kept
        FROM (
            SELECT {entity}, ts,
                   list(struct_pack({fields})) OVER (
                       PARTITION BY {entity} ORDER BY ts
                       RANGE BETWEEN {STATE_WINDOW_US} PRECEDING AND 1 PRECEDING) AS window_list,
                   row_number() OVER (PARTITION BY {entity}, ts ORDER BY tid) AS peer_rank
            FROM txn
        )
        WHERE peer_rank = 1
    """


def _day_buckets_sql(groups: str, entity: str, a_type: str) -> list[str]:
    """SQL statements: per (entity, ts) of ``groups``, daily buckets (d, a, b) as of ts.

    ``groups`` has one row per customer and distinct event time with ``day`` and per-event sums
    ``a`` and ``b``. The result ``<groups>_buckets`` holds the complete days
    ``[day - 30, day)`` plus the running total of the event's own day up to and including ts.
    Sums run in ts order (window frames), so the floating-point result is deterministic.
    """
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
                       RANGE BETWEEN {BASELINE_DAYS} PRECEDING AND 1 PRECEDING), []) AS prior
            FROM (SELECT {entity}, day, arg_max(today_a, ts) AS a, arg_max(today_b, ts) AS b
                  FROM {groups}_running GROUP BY {entity}, day)""",
        f"""CREATE TEMP TABLE {groups}_buckets AS
            SELECT r.{entity}, r.ts,
                   list_sort(p.prior) || [struct_pack(d := r.day, a := r.today_a, b := r.today_b)]
                   AS buckets
            FROM {groups}_running r JOIN {groups}_prior p USING ({entity}, day)""",
    ]


def _customer_activity_sql(cap: int) -> tuple[list[str], str]:
    fields = (
        "ts := ts, tid := tid, amount := amount, merchant := merchant_id, lat := lat, long := long"
    )
    setup = [
        # One group per customer and distinct timestamp: all same-second peers together.
        f"""CREATE TEMP TABLE c_groups AS
            SELECT customer_id, ts, ts // {DAY_US} AS day, peers, peers[-1] AS latest,
                   list_sum(list_transform(peers, lambda x: x.amount)) AS a, len(peers) AS b
            FROM (SELECT customer_id, ts, list_sort(list(struct_pack({fields}))) AS peers
                  FROM txn GROUP BY customer_id, ts)""",
        f"CREATE TEMP TABLE c_older AS {_older_sql('customer_id', fields, cap)}",
        *_day_buckets_sql("c_groups", "customer_id", "DOUBLE"),
    ]
    select = f"""
    SELECT g.customer_id,
           make_timestamp(g.ts)::TIMESTAMPTZ AS event_timestamp,
           o.older_kept || {_sql_top_cap("g.peers", cap)} AS arr,
           g.latest,
           lag(g.latest) OVER (PARTITION BY g.customer_id ORDER BY g.ts) AS prev,
           b.buckets
    FROM c_groups g
    JOIN c_older o USING (customer_id, ts)
    JOIN c_groups_buckets b USING (customer_id, ts)
    """
    final = f"""
    SELECT customer_id, event_timestamp,
           list_transform(arr, lambda x: x.ts) AS c_ts_us,
           list_transform(arr, lambda x: x.tid) AS c_txn_ids,
           list_transform(arr, lambda x: x.amount) AS c_amounts,
           list_transform(arr, lambda x: x.merchant) AS c_merchant_ids,
           latest.ts AS c_latest_ts_us,
           latest.tid AS c_latest_txn_id,
           latest.lat AS c_latest_lat,
           latest.long AS c_latest_long,
           coalesce(prev.ts, -1) AS c_prev_ts_us,
           coalesce(prev.tid, '') AS c_prev_txn_id,
           coalesce(prev.lat, 0.0) AS c_prev_lat,
           coalesce(prev.long, 0.0) AS c_prev_long,
           list_transform(buckets, lambda x: x.d) AS c_day_numbers,
           list_transform(buckets, lambda x: x.a) AS c_day_sums,
           list_transform(buckets, lambda x: x.b) AS c_day_counts,
           {cap}::BIGINT AS c_state_cap
    FROM ({select})
    """
    return setup, final


def _merchant_activity_sql(cap: int) -> tuple[list[str], str]:
    setup = [
        f"CREATE TEMP TABLE m_older AS {_older_sql('merchant_id', 'ts := ts, tid := tid', cap)}"
    ]
    final = f"""
    SELECT merchant_id, make_timestamp(ts)::TIMESTAMPTZ AS event_timestamp,
           list_transform(arr, lambda x: x.ts) AS m_ts_us,
           list_transform(arr, lambda x: x.tid) AS m_txn_ids,
           ts AS m_latest_ts_us,
           {cap}::BIGINT AS m_state_cap
    FROM (
        SELECT merchant_id, ts, o.older_kept || {_sql_top_cap("g.peers", cap)} AS arr
        FROM (SELECT merchant_id, ts, list_sort(list(struct_pack(ts := ts, tid := tid))) AS peers
              FROM txn GROUP BY merchant_id, ts) g
        JOIN m_older o USING (merchant_id, ts)
    )
    """
    return setup, final


def _merchant_labels_sql() -> tuple[list[str], str]:
    """Daily snapshots of each merchant's label buckets, one row per merchant and UTC midnight.

    The row at midnight D holds the complete label days [D - 30, D): exactly what a request on
    day D uses, and all of it known before D. Rows are dense (every day from the merchant's
    first label day + 1 to its last + 31), so with a one-day ttl the point-in-time join has a
    single candidate per entity row; after the last row every bucket is out of range anyway.
    """
    setup = [
        f"""CREATE TEMP TABLE ml_daily AS
            SELECT t.merchant_id, l.label_ts // {DAY_US} AS day,
                   count(*)::BIGINT AS labels, sum(l.is_fraud)::BIGINT AS frauds
            FROM lab l JOIN txn t USING (tid)
            GROUP BY t.merchant_id, l.label_ts // {DAY_US}""",
        f"""CREATE TEMP TABLE ml_snapshot_days AS
            SELECT merchant_id, unnest(range(min(day) + 1, max(day) + {BASELINE_DAYS + 2})) AS day
            FROM ml_daily GROUP BY merchant_id""",
    ]
    final = f"""
    SELECT s.merchant_id,
           make_timestamp(s.day * {DAY_US})::TIMESTAMPTZ AS event_timestamp,
           s.day * {DAY_US} AS ml_latest_ts_us,
           coalesce(list(d.day ORDER BY d.day) FILTER (WHERE d.day IS NOT NULL), [])
               AS ml_day_numbers,
           coalesce(list(d.labels ORDER BY d.day) FILTER (WHERE d.day IS NOT NULL), [])
               AS ml_day_labels,
           coalesce(list(d.frauds ORDER BY d.day) FILTER (WHERE d.day IS NOT NULL), [])
               AS ml_day_frauds
    FROM ml_snapshot_days s
    LEFT JOIN ml_daily d
      ON d.merchant_id = s.merchant_id AND d.day >= s.day - {BASELINE_DAYS} AND d.day < s.day
    GROUP BY s.merchant_id, s.day
    """
    return setup, final


def _customer_profile_sql() -> tuple[list[str], str]:
    # The home is known from account creation; never later than the first transaction.
    final = """
    SELECT c.customer_id,
           least(c.created_at, coalesce(f.first_ts, c.created_at)) AS event_timestamp,
           c.home_lat, c.home_long
    FROM cust c
    LEFT JOIN (SELECT customer_id, make_timestamp(min(ts))::TIMESTAMPTZ AS first_ts
               FROM txn GROUP BY 1) f USING (customer_id)
    ORDER BY event_timestamp, customer_id
    """
    return [], final


def build_offline_tables(
    raw_dir: Path,
    out_dir: Path,
    state_cap: int,
    merchant_state_cap: int,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Build every offline feature table from the raw tables, atomically.

    Args:
        raw_dir: Folder with ``transactions``, ``labels`` and ``customers`` Parquet files.
        out_dir: Folder to write the tables into (created if missing).
        state_cap: Customer state cap (``features.state_cap``).
        merchant_state_cap: Merchant state cap (``features.merchant_state_cap``).
        threads: DuckDB threads; all cores by default.
        progress: Where to report each table's build time; silent by default.

    Returns:
        Where each table went, its row count and the wall time.
    """
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TEMP TABLE txn AS SELECT transaction_id AS tid, customer_id, merchant_id, "
        "epoch_us(timestamp) AS ts, amount, lat, long FROM read_parquet(?)",
        [str(raw_dir / "transactions.parquet")],
    )
    con.execute(
        "CREATE TEMP TABLE lab AS SELECT transaction_id AS tid, is_fraud::INTEGER AS is_fraud, "
        "epoch_us(label_timestamp) AS label_ts FROM read_parquet(?)",
        [str(raw_dir / "labels.parquet")],
    )
    con.execute(
        "CREATE TEMP TABLE cust AS SELECT * FROM read_parquet(?)",
        [str(raw_dir / "customers.parquet")],
    )
    queries = {
        "customer_activity": _customer_activity_sql(state_cap),
        "merchant_activity": _merchant_activity_sql(merchant_state_cap),
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
        staged.append((tmp, final))
        written[name] = (final, int(rows[0]) if rows else 0)
    for tmp, final in staged:  # all or nothing: replace only once every table is written
        os.replace(tmp, final)
    con.close()
    return PipelineResult(tables=written, seconds=time.perf_counter() - started)
