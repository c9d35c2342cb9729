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


def _customer_activity_sql(cap: int) -> str:
    older = "list_sort(flatten(coalesce(list(peers) OVER w_older, [])))"
    older_kept = _sql_top_cap("older_all", cap)
    peers_kept = _sql_top_cap("peers", cap)
    return f"""
    WITH groups AS (
        -- one group per customer and distinct timestamp: all same-second peers together
        SELECT customer_id, ts,
               list_sort(list(struct_pack(ts := ts, tid := tid, amount := amount,
                                          merchant := merchant_id, lat := lat, long := long))) AS peers
        FROM txn GROUP BY customer_id, ts
    ), grouped AS (
        SELECT *, peers[-1] AS latest,
               list_sum(list_transform(peers, lambda x: x.amount)) AS group_sum,
               len(peers) AS group_count, ts // {DAY_US} AS day
        FROM groups
    ), windowed AS (
        SELECT customer_id, ts, day, peers, latest,
               {older} AS older_all,   -- groups in [T - 24h, T), strictly before T
               lag(latest) OVER w_order AS prev,
               sum(group_sum) OVER w_today AS today_sum,
               (sum(group_count) OVER w_today)::BIGINT AS today_count
        FROM grouped
        WINDOW w_older AS (PARTITION BY customer_id ORDER BY ts
                           RANGE BETWEEN {STATE_WINDOW_US} PRECEDING AND 1 PRECEDING),
               w_order AS (PARTITION BY customer_id ORDER BY ts),
               w_today AS (PARTITION BY customer_id, day ORDER BY ts
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ), daily AS (
        SELECT customer_id, day, arg_max(today_sum, ts) AS day_sum,
               arg_max(today_count, ts) AS day_count
        FROM windowed GROUP BY customer_id, day
    ), prior_days AS (
        -- complete days [D(T) - 30, D(T)) before the state's own day
        SELECT customer_id, day,
               coalesce(list(struct_pack(d := day, s := day_sum, c := day_count)) OVER (
                   PARTITION BY customer_id ORDER BY day
                   RANGE BETWEEN {BASELINE_DAYS} PRECEDING AND 1 PRECEDING), []) AS prior
        FROM daily
    ), kept AS (
        SELECT w.*, {older_kept} || {peers_kept} AS arr,
               list_sort(p.prior) || [struct_pack(d := w.day, s := w.today_sum,
                                                  c := w.today_count)] AS buckets
        FROM windowed w JOIN prior_days p USING (customer_id, day)
    )
    SELECT customer_id,
           make_timestamp(ts)::TIMESTAMPTZ AS event_timestamp,
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
           list_transform(buckets, lambda x: x.s) AS c_day_sums,
           list_transform(buckets, lambda x: x.c) AS c_day_counts,
           {cap}::BIGINT AS c_state_cap
    FROM kept
    ORDER BY ts, customer_id
    """


def _merchant_activity_sql(cap: int) -> str:
    older = "list_sort(flatten(coalesce(list(peers) OVER w_older, [])))"
    return f"""
    WITH groups AS (
        SELECT merchant_id, ts, list_sort(list(struct_pack(ts := ts, tid := tid))) AS peers
        FROM txn GROUP BY merchant_id, ts
    ), windowed AS (
        SELECT merchant_id, ts, peers, {older} AS older_all
        FROM groups
        WINDOW w_older AS (PARTITION BY merchant_id ORDER BY ts
                           RANGE BETWEEN {STATE_WINDOW_US} PRECEDING AND 1 PRECEDING)
    ), kept AS (
        SELECT merchant_id, ts,
               {_sql_top_cap("older_all", cap)} || {_sql_top_cap("peers", cap)} AS arr,
               coalesce(lag(ts) OVER (PARTITION BY merchant_id ORDER BY ts), -1) AS prev_ts
        FROM windowed
    )
    SELECT merchant_id, make_timestamp(ts)::TIMESTAMPTZ AS event_timestamp,
           list_transform(arr, lambda x: x.ts) AS m_ts_us,
           list_transform(arr, lambda x: x.tid) AS m_txn_ids,
           ts AS m_latest_ts_us,
           prev_ts AS m_prev_ts_us,
           {cap}::BIGINT AS m_state_cap
    FROM kept ORDER BY ts, merchant_id
    """


_MERCHANT_LABELS_SQL = f"""
WITH groups AS (
    -- labels arriving at the same instant for one merchant form one state row
    SELECT t.merchant_id, l.label_ts AS ts, l.label_ts // {DAY_US} AS day,
           count(*) AS n_labels, sum(l.is_fraud)::BIGINT AS n_frauds
    FROM lab l JOIN txn t USING (tid)
    GROUP BY t.merchant_id, l.label_ts
), cumulative AS (
    SELECT *, sum(n_labels) OVER w_today AS today_labels, sum(n_frauds) OVER w_today AS today_frauds
    FROM groups
    WINDOW w_today AS (PARTITION BY merchant_id, day ORDER BY ts
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), daily AS (
    SELECT merchant_id, day, sum(n_labels)::BIGINT AS labels, sum(n_frauds)::BIGINT AS frauds
    FROM groups GROUP BY merchant_id, day
), prior_days AS (
    SELECT merchant_id, day,
           coalesce(list(struct_pack(d := day, n := labels, f := frauds)) OVER (
               PARTITION BY merchant_id ORDER BY day
               RANGE BETWEEN {BASELINE_DAYS} PRECEDING AND 1 PRECEDING), []) AS prior
    FROM daily
), buckets AS (
    SELECT c.merchant_id, c.ts,
           list_sort(p.prior) || [struct_pack(d := c.day, n := c.today_labels::BIGINT,
                                              f := c.today_frauds::BIGINT)] AS b
    FROM cumulative c JOIN prior_days p USING (merchant_id, day)
)
SELECT merchant_id, make_timestamp(ts)::TIMESTAMPTZ AS event_timestamp,
       ts AS ml_latest_ts_us,
       list_transform(b, lambda x: x.d) AS ml_day_numbers,
       list_transform(b, lambda x: x.n) AS ml_day_labels,
       list_transform(b, lambda x: x.f) AS ml_day_frauds
FROM buckets ORDER BY ts, merchant_id
"""

_CUSTOMER_PROFILE_SQL = """
-- the home is known from account creation; never later than the first transaction
SELECT c.customer_id,
       least(c.created_at, coalesce(f.first_ts, c.created_at)) AS event_timestamp,
       c.home_lat, c.home_long
FROM cust c
LEFT JOIN (SELECT customer_id, make_timestamp(min(ts))::TIMESTAMPTZ AS first_ts FROM txn GROUP BY 1) f
USING (customer_id)
ORDER BY event_timestamp, customer_id
"""


def build_offline_tables(
    raw_dir: Path,
    out_dir: Path,
    state_cap: int,
    merchant_state_cap: int,
    threads: int | None = None,
) -> PipelineResult:
    """Build every offline feature table from the raw tables, atomically.

    Args:
        raw_dir: Folder with ``transactions``, ``labels`` and ``customers`` Parquet files.
        out_dir: Folder to write the tables into (created if missing).
        state_cap: Customer state cap (``features.state_cap``).
        merchant_state_cap: Merchant state cap (``features.merchant_state_cap``).
        threads: DuckDB threads; all cores by default.

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
        "merchant_label_stats": _MERCHANT_LABELS_SQL,
        "customer_profile": _CUSTOMER_PROFILE_SQL,
    }
    written: dict[str, tuple[Path, int]] = {}
    staged: list[tuple[Path, Path]] = []
    for name, sql in queries.items():
        final = out_dir / f"{name}.parquet"
        tmp = out_dir / f".{name}.parquet.tmp"
        con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT PARQUET, COMPRESSION ZSTD)")
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}')").fetchone()
        staged.append((tmp, final))
        written[name] = (final, int(rows[0]) if rows else 0)
    for tmp, final in staged:  # all or nothing: replace only once every table is written
        os.replace(tmp, final)
    con.close()
    return PipelineResult(tables=written, seconds=time.perf_counter() - started)
