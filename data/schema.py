"""Schemas of the raw tables under ``data/raw/``: the contract between data and features.

Every producer (the synthetic generator, the importer) writes exactly these columns and
types; every consumer (the feature pipeline, training) reads them. Timestamps are UTC,
microsecond precision; transactions are sorted by (timestamp, transaction_id).
"""

from __future__ import annotations

import pyarrow as pa

from fraud_platform.contracts import (
    AMOUNT,
    CUSTOMER_ID,
    LABEL,
    LABEL_TIMESTAMP,
    LAT,
    LONG,
    MERCHANT_ID,
    TIMESTAMP,
    TRANSACTION_ID,
)

UTC_MICROS = pa.timestamp("us", tz="UTC")

# Column names shared with the other steps come from fraud_platform.contracts; a scoring request
# carries exactly a transaction's fields (contracts.REQUEST_FIELDS, checked in tests/unit/data).
TRANSACTIONS = pa.schema(
    [
        (TRANSACTION_ID, pa.string()),
        (CUSTOMER_ID, pa.string()),
        (MERCHANT_ID, pa.string()),
        (TIMESTAMP, UTC_MICROS),
        (AMOUNT, pa.float64()),
        (LAT, pa.float64()),  # where the transaction happened
        (LONG, pa.float64()),
    ]
)

LABELS = pa.schema(
    [
        (TRANSACTION_ID, pa.string()),
        (LABEL, pa.int8()),
        (LABEL_TIMESTAMP, UTC_MICROS),  # when the label became known (after the transaction)
        ("fraud_pattern", pa.string()),  # none | unknown | one of FRAUD_PATTERNS below
    ]
)

CUSTOMERS = pa.schema(
    [
        (CUSTOMER_ID, pa.string()),
        ("home_lat", pa.float64()),
        ("home_long", pa.float64()),
        ("created_at", UTC_MICROS),
    ]
)

MERCHANTS = pa.schema(
    [
        (MERCHANT_ID, pa.string()),
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

FRAUD_PATTERNS = ("card_testing", "account_takeover", "compromised_merchant", "new_account")
