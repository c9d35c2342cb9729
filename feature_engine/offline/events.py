"""Every event the features are computed from: raw data plus what was ingested online.

Two sources feed the state: the raw tables under ``data/raw`` (generated or imported, DVC
tracked), and the events the API took in since: each scored transaction, and each label posted
to ``POST /labels``. The API appends those to two journals under ``data/ingested``
(:mod:`fraud_platform.journal`: one ``os.write`` per request, before the answer, so a crash of
the API loses none) *before* folding them into Redis. :func:`read_event_tables` is the one
union of both sources, and everything downstream reads it: the offline feature build, the
rebuild of the online state, training and the consistency monitor. So the online state can be
rebuilt exactly from durable files, and training sees what the API saw.

Duplicates: a transaction is identified by (customer, transaction id), since two cards may reuse
one id; a retried ingestion of the same one keeps the first. A label is identified by its
transaction id, first wins (``POST /labels`` is idempotent by transaction id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from data.schema import LABELS, TRANSACTIONS

if TYPE_CHECKING:
    import pandas as pd

    from fraud_platform.journal import Journal

TRANSACTIONS_JOURNAL = "transactions"
LABELS_JOURNAL = "labels"

_JOURNAL_TYPES = {
    pa.string(): "string",
    pa.float64(): "float64",
    pa.int8(): "int64",
    pa.int64(): "int64",
    pa.timestamp("us", tz="UTC"): "timestamp",
}
# Journal columns: the raw schemas', plus the label's merchant (the label of a transaction the
# API scored has no raw row to join the merchant from).
TRANSACTION_COLUMNS = {f.name: _JOURNAL_TYPES[f.type] for f in TRANSACTIONS}
LABEL_COLUMNS = {
    "transaction_id": "string",
    "merchant_id": "string",
    **{f.name: _JOURNAL_TYPES[f.type] for f in LABELS if f.name != "transaction_id"},
}
LABELS_WITH_MERCHANT = pa.schema([*LABELS, pa.field("merchant_id", pa.string())])


@dataclass(frozen=True)
class EventTables:
    """Transactions, labels (with their merchant) and customers, as Arrow tables.

    Attributes:
        transactions: Raw schema, sorted by (timestamp, transaction_id), raw rows first.
        labels: Raw label schema plus ``merchant_id``.
        customers: The raw customers table (homes of known cardholders).
        ingested_transactions: How many transactions came from the online journal.
        ingested_labels: How many labels came from the online journal.
    """

    transactions: pa.Table
    labels: pa.Table
    customers: pa.Table
    ingested_transactions: int = 0
    ingested_labels: int = 0

    def labeled_transactions(self) -> pd.DataFrame:
        """Transactions with a label: the raw columns plus ``is_fraud`` and ``fraud_pattern``.

        The pattern (``none``, ``unknown`` for imported fraud, or the generator's pattern) is
        for slice metrics only: no feature reads it.
        """
        import duckdb  # not at the top: the API imports this module (journals)

        con = duckdb.connect()
        con.register("txn", self.transactions)
        con.register("lab", self.labels)
        return con.execute(
            """SELECT t.*, l.is_fraud, l.fraud_pattern FROM txn t
               JOIN lab l ON l.transaction_id = t.transaction_id
                         AND l.merchant_id = t.merchant_id
               ORDER BY t.timestamp, t.transaction_id"""
        ).df()


def open_journals(ingested_dir: Path, fsync_seconds: float = 1.0) -> tuple[Journal, Journal]:
    """The API's two ingestion journals, opened (dead writers' segments recovered).

    Returns:
        ``(transactions, labels)``; close both on shutdown.
    """
    from fraud_platform.journal import Journal

    transactions = Journal(
        ingested_dir, TRANSACTIONS_JOURNAL, TRANSACTION_COLUMNS, fsync_seconds=fsync_seconds
    )
    labels = Journal(ingested_dir, LABELS_JOURNAL, LABEL_COLUMNS, fsync_seconds=fsync_seconds)
    return transactions.open(), labels.open()


def _journal(ingested_dir: Path | None, name: str, schema: pa.Schema) -> pa.Table:
    if ingested_dir is None or not ingested_dir.is_dir():
        return schema.empty_table()
    from fraud_platform.journal import read_journal

    table = read_journal(ingested_dir, name)
    if table.num_rows == 0:
        return schema.empty_table()
    return table.select(schema.names).cast(schema)


def _arrow(con: Any, sql: str) -> pa.Table:
    table: pa.Table = con.sql(sql).to_arrow_table()
    return table


def read_event_tables(raw_dir: Path, ingested_dir: Path | None = None) -> EventTables:
    """The raw tables united with the events ingested online (see the module docstring).

    Args:
        raw_dir: Folder of the raw Parquet tables.
        ingested_dir: Folder of the ingestion journals; raw data only when ``None`` or empty.

    Returns:
        The united, de-duplicated tables.

    Raises:
        FileNotFoundError: If a raw table is missing.
    """
    raw_txn = pq.read_table(raw_dir / "transactions.parquet", schema=TRANSACTIONS)
    raw_labels = pq.read_table(raw_dir / "labels.parquet", schema=LABELS)
    customers = pq.read_table(raw_dir / "customers.parquet")
    new_txn = _journal(ingested_dir, TRANSACTIONS_JOURNAL, TRANSACTIONS)
    new_labels = _journal(ingested_dir, LABELS_JOURNAL, LABELS_WITH_MERCHANT)
    if new_txn.num_rows == 0 and new_labels.num_rows == 0:
        import duckdb  # not at the top: the API imports this module (journals)

        con = duckdb.connect()
        con.register("raw_txn", raw_txn)
        con.register("raw_labels", raw_labels)
        labels = _arrow(
            con,
            """SELECT l.*, t.merchant_id FROM raw_labels l
               JOIN raw_txn t USING (transaction_id)""",
        )
        return EventTables(raw_txn, labels.cast(LABELS_WITH_MERCHANT), customers)
    import duckdb  # not at the top: the API imports this module (journals)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Journal order (segment, then line) decides between duplicates: first wins.
    new_txn = new_txn.append_column("seq", pa.array(range(new_txn.num_rows), pa.int64()))
    new_labels = new_labels.append_column("seq", pa.array(range(new_labels.num_rows), pa.int64()))
    for name, table in (
        ("raw_txn", raw_txn),
        ("raw_labels", raw_labels),
        ("new_txn", new_txn),
        ("new_labels", new_labels),
    ):
        con.register(name, table)
    columns = ", ".join(TRANSACTIONS.names)
    transactions = _arrow(
        con,
        f"""SELECT {columns} FROM (
                SELECT *, 0 AS src, 0 AS seq FROM raw_txn
                UNION ALL BY NAME
                SELECT *, 1 AS src FROM new_txn)
            QUALIFY row_number() OVER (
                PARTITION BY customer_id, transaction_id ORDER BY src, seq) = 1
            ORDER BY timestamp, transaction_id""",
    )
    label_columns = ", ".join(LABELS_WITH_MERCHANT.names)
    labels = _arrow(
        con,
        f"""SELECT {label_columns} FROM (
                SELECT l.*, t.merchant_id, 0 AS src, 0 AS seq
                FROM raw_labels l JOIN raw_txn t USING (transaction_id)
                UNION ALL BY NAME
                SELECT *, 1 AS src FROM new_labels)
            QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY src, seq) = 1""",
    )
    return EventTables(
        transactions.cast(TRANSACTIONS),
        labels.cast(LABELS_WITH_MERCHANT),
        customers,
        ingested_transactions=new_txn.num_rows,
        ingested_labels=new_labels.num_rows,
    )


def journals_newer_than(ingested_dir: Path, built: Path) -> bool:
    """Whether events were ingested online after ``built`` (an offline table) was written."""
    from fraud_platform.journal import segment_files

    if not ingested_dir.is_dir():
        return False
    since = built.stat().st_mtime if built.exists() else 0.0
    return any(
        segment_files(ingested_dir, name, modified_since=since)
        for name in (TRANSACTIONS_JOURNAL, LABELS_JOURNAL)
    )


def materialized_label_ids(
    raw_dir: Path, ingested_dir: Path | None, end_us: int
) -> list[tuple[str, str]]:
    """``(merchant_id, transaction_id)`` of every label a materialize up to ``end_us`` loaded.

    These are the labels the offline tables count (raw and posted online, one per transaction
    id, first wins: :func:`read_event_tables`) that had arrived by the end time, each in its
    merchant's last label state: its arrival day no more than ``LABEL_STATE_DAYS`` before the
    merchant's latest label by then (an older one has left every bucket, so folding it again
    changes nothing and needs no mark). After a rebuild each gets its idempotency mark, so a
    label posted again (``POST /labels``) or folded again (``fraud features ingest-labels``)
    is not counted a second time.

    Args:
        raw_dir: Folder of the raw Parquet tables.
        ingested_dir: Folder of the ingestion journals.
        end_us: The materialize's end time (µs since the epoch, UTC).

    Returns:
        The pairs, in no particular order.
    """
    import duckdb  # not at the top: the API imports this module (journals)

    from feature_engine.state.fields import DAY_US, LABEL_STATE_DAYS

    labels = read_event_tables(raw_dir, ingested_dir).labels
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("lab", labels)
    rows = con.execute(
        """WITH arrived AS (
               SELECT merchant_id, transaction_id, epoch_us(label_timestamp) AS ts FROM lab
               WHERE epoch_us(label_timestamp) <= $end)
           SELECT merchant_id, transaction_id FROM arrived
           QUALIFY ts // $day >= max(ts) OVER (PARTITION BY merchant_id) // $day - $keep""",
        {"end": end_us, "day": DAY_US, "keep": LABEL_STATE_DAYS},
    ).fetchall()
    return [(str(m), str(t)) for m, t in rows]
