"""Helpers of the data tests: sizes, a reference distance, Kaggle-schema CSV writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

SMALL_CUSTOMERS = 400
SMALL_DAYS = 14
SMALL_SEED = 7

KAGGLE_COLUMNS = [
    "trans_date_trans_time",
    "cc_num",
    "merchant",
    "category",
    "amt",
    "first",
    "last",
    "gender",
    "street",
    "city",
    "state",
    "zip",
    "lat",
    "long",
    "city_pop",
    "job",
    "dob",
    "trans_num",
    "unix_time",
    "merch_lat",
    "merch_long",
    "is_fraud",
]


def haversine_km(
    lat1: ArrayLike, long1: ArrayLike, lat2: ArrayLike, long2: ArrayLike
) -> np.ndarray:
    """Reference great-circle distance, written independently of fraud_platform.geo.

    The feature contract's Earth radius (6,371.0088 km), the one the generator now uses too.
    """
    phi1, lambda1, phi2, lambda2 = (
        np.radians(np.asarray(v, dtype=float)) for v in (lat1, long1, lat2, long2)
    )
    a = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin((lambda2 - lambda1) / 2) ** 2
    )
    return np.asarray(2 * 6371.0088 * np.arcsin(np.sqrt(a)))


def kaggle_frame(tables: dict[str, pd.DataFrame], n_rows: int | None = None) -> pd.DataFrame:
    """Our raw tables rendered in the Kaggle credit-card fraud schema (one row per transaction)."""
    txns = tables["transactions"] if n_rows is None else tables["transactions"].head(n_rows)
    rows = (
        txns.merge(tables["labels"], on="transaction_id")
        .merge(tables["customers"], on="customer_id")
        .merge(tables["merchants"][["merchant_id", "category"]], on="merchant_id")
    )
    n = len(rows)
    return pd.DataFrame(
        {
            "trans_date_trans_time": rows["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "cc_num": rows["customer_id"],
            "merchant": rows["merchant_id"],
            "category": rows["category"],
            "amt": rows["amount"],
            "first": "Jane",
            "last": "Doe",
            "gender": "F",
            "street": "1 Main St, Apt 2",  # a quoted comma, as in the real file
            "city": "Springfield",
            "state": "IL",
            "zip": "62701",
            "lat": rows["home_lat"],
            "long": rows["home_long"],
            "city_pop": 1000,
            "job": "Engineer",
            "dob": "1980-01-01",
            "trans_num": rows["transaction_id"],
            "unix_time": rows["timestamp"].astype("int64") // 1_000_000,
            "merch_lat": rows["lat"],
            "merch_long": rows["long"],
            "is_fraud": rows["is_fraud"].astype(int),
        },
        index=pd.RangeIndex(n),
    )[KAGGLE_COLUMNS]


def write_kaggle_csv(frame: pd.DataFrame, path: Path, index_column: bool = True) -> Path:
    """Write a Kaggle-schema frame; ``index_column`` adds the unnamed leading index column."""
    frame.to_csv(path, index=index_column)
    return path
