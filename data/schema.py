"""Schemas of the raw tables under ``data/raw/``: the contract between data and features.

Every producer (the synthetic generator, the importer) writes exactly these columns and
types; every consumer (the feature pipeline, training) reads them. Timestamps are UTC,
microsecond precision; transactions are sorted by (timestamp, transaction_id).
"""

from __future__ import annotations

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")

TRANSACTIONS = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("customer_id", pa.string()),
        ("merchant_id", pa.string()),
        ("timestamp", UTC_MICROS),
        ("amount", pa.float64()),
        ("lat", pa.float64()),  # where the transaction happened
        ("long", pa.float64()),
    ]
)

LABELS = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("is_fraud", pa.int8()),
        ("label_timestamp", UTC_MICROS),  # when the label became known (after the transaction)
        ("fraud_pattern", pa.string()),  # none | card_testing | account_takeover | ... | unknown
    ]
)

CUSTOMERS = pa.schema(
    [
        ("customer_id", pa.string()),
        ("home_lat", pa.float64()),
        ("home_long", pa.float64()),
        ("created_at", UTC_MICROS),
    ]
)

MERCHANTS = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("category", pa.string()),
        ("lat", pa.float64()),
        ("long", pa.float64()),
    ]
)

RAW_TABLES: dict[str, pa.Schema] = {
    "transactions": TRANSACTIONS,
    "labels": LABELS,
    "customers": CUSTOMERS,
    "merchants": MERCHANTS,
}

FRAUD_PATTERNS = ("card_testing", "account_takeover", "compromised_merchant")
