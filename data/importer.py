"""Turn an external transactions CSV into the four raw tables of ``data/schema.py``.

The Kaggle credit-card fraud data set (``fraudTrain.csv``/``fraudTest.csv``) is read as is;
any other CSV is read through a mapping from our column names to the source's. Every value
is checked before anything is built, and problems name the file, the CSV line and the
source's own column name, e.g. ``transactions.csv line 7, column amt: amount must be > 0``.
Nothing is written here: the caller writes the result with :func:`data.generate.write_tables`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from data.schema import TRANSACTIONS
from data.validate import (
    Problem,
    RawDataError,
    Source,
    check_coordinate,
    check_ids,
    check_not_null,
    check_positive_amount,
    check_unique,
    problems_where,
    validate_raw,
)

REQUIRED_FIELDS = (*TRANSACTIONS.names, "is_fraud")
OPTIONAL_FIELDS = ("label_timestamp", "home_lat", "home_long", "category")

KAGGLE_MAPPING: dict[str, str] = {
    "transaction_id": "trans_num",
    "customer_id": "cc_num",
    "merchant_id": "merchant",
    "timestamp": "trans_date_trans_time",
    "amount": "amt",
    "lat": "merch_lat",  # where the transaction happened
    "long": "merch_long",
    "is_fraud": "is_fraud",
    "home_lat": "lat",  # the cardholder's address
    "home_long": "long",
    "category": "category",
}
"""Our field -> column of the Kaggle credit-card fraud CSV (the default mapping)."""

UNKNOWN_CATEGORY = "unknown"
FIRST_DATA_LINE = 2  # line 1 is the header


def load_mapping(mapping: Mapping[str, str] | Path | str | None) -> tuple[dict[str, str], str]:
    """Resolve a column mapping and check its keys.

    Args:
        mapping: A dict, a YAML/JSON file mapping our field names to source column names,
            or ``None`` for the Kaggle credit-card fraud schema.

    Returns:
        The mapping, and a name for it to use in messages.

    Raises:
        RawDataError: If the file cannot be read, is not a flat mapping of text to text, lacks
            a required field or names an unknown one.
    """
    if mapping is None:
        return dict(KAGGLE_MAPPING), "kaggle mapping"
    if isinstance(mapping, str | Path):
        import yaml  # JSON is a subset of YAML: one loader reads both

        path = Path(mapping)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RawDataError([Problem(str(path), "", "", f"cannot read mapping: {exc}")]) from exc
        name = str(path)
    else:
        loaded, name = mapping, "mapping"
    if not isinstance(loaded, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str | int) for key, value in loaded.items()
    ):
        raise RawDataError(
            [Problem(name, "", "", "mapping must map our field names to source column names")]
        )
    resolved = {str(key): str(value) for key, value in loaded.items()}
    known = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    problems = [
        Problem(name, "", field, "required field not mapped")
        for field in REQUIRED_FIELDS
        if field not in resolved
    ]
    problems += [
        Problem(name, "", field, f"unknown field; known fields: {', '.join(sorted(known))}")
        for field in resolved
        if field not in known
    ]
    if problems:
        raise RawDataError(problems)
    return resolved, name


def import_csv(
    path: Path | str,
    mapping: Mapping[str, str] | Path | str | None = None,
    chargeback_delay_days: float = 30.0,
) -> dict[str, pd.DataFrame]:
    """Read an external transactions CSV into the four raw tables.

    The cardholder's home comes from the mapped ``home_lat``/``home_long`` (their first
    row), else from the location of their first transaction. A merchant's location is the
    mean of its transactions' locations; its category the first one seen. Without a
    ``label_timestamp`` column every label becomes known ``chargeback_delay_days`` after
    its transaction; ``fraud_pattern`` is ``unknown`` for fraud and ``none`` otherwise. There
    are no account-open dates: ``created_at`` is the data's first timestamp for every card.

    Args:
        path: The CSV file (comma-separated, header on line 1; an unnamed leading index
            column, as in the Kaggle files, is ignored).
        mapping: Our field name -> source column (dict or YAML/JSON file); ``None`` reads
            the Kaggle credit-card fraud schema.
        chargeback_delay_days: Delay until a label is known, for data without label times.

    Returns:
        ``transactions``, ``labels``, ``customers`` and ``merchants`` data frames with the
        schemas of ``data/schema.py``, transactions sorted by (timestamp, transaction_id).

    Raises:
        RawDataError: Naming file, CSV line and column of the first few bad values.
        FileNotFoundError: If the CSV does not exist.
    """
    path = Path(path)
    if chargeback_delay_days <= 0:
        raise ValueError(f"chargeback_delay_days must be > 0, got {chargeback_delay_days}")
    columns, _ = load_mapping(mapping)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    # Text first: every value is parsed below where a failure can name its line.
    needed = set(columns.values())
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,  # keeps row positions in step with CSV lines
            usecols=lambda name: name in needed,  # the Kaggle file has a dozen unused columns
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RawDataError([Problem(path.name, "", "", f"not a readable CSV: {exc}")]) from exc
    source = Source(
        path.name,
        # Line of each data row; assumes no quoted field spans lines, true of such exports.
        lines=np.arange(len(raw)) + FIRST_DATA_LINE,
        columns=columns,
    )
    missing = [
        Problem(path.name, "line 1", column, f"missing column (mapped from {field})")
        for field, column in columns.items()
        if column not in raw.columns
    ]
    if missing:
        raise RawDataError(missing)

    flat = pd.DataFrame({field: raw[column] for field, column in columns.items()})
    problems = check_not_null(flat, list(columns), source)
    if problems:
        raise RawDataError(problems)
    flat, problems = _parse(flat, source)
    problems += check_positive_amount(flat, "amount", source)
    for field, limit in (("lat", 90), ("long", 180), ("home_lat", 90), ("home_long", 180)):
        if field in flat.columns:
            problems += check_coordinate(flat, field, limit, source)
    problems += check_ids(flat, ["transaction_id", "customer_id", "merchant_id"], source)
    problems += check_unique(flat, "transaction_id", source)
    if "label_timestamp" in flat.columns:
        too_early = (flat["label_timestamp"] <= flat["timestamp"]).to_numpy(dtype=bool)
        problems += problems_where(
            source,
            "label_timestamp",
            too_early,
            flat["label_timestamp"],
            "label time {value} is not after the transaction's time",
        )
    if problems:
        raise RawDataError(problems)

    tables = _build_tables(flat, chargeback_delay_days)
    validate_raw(tables)  # the contract every consumer relies on, checked once more
    return tables


def _to_float(text: pd.Series) -> pd.Series:
    """Exact decimal -> float64 parsing; NaN where the text is not a number.

    ``pd.to_numeric`` can be one unit in the last place off, so coordinates would not
    survive a CSV round trip; ``astype`` parses exactly but fails as a whole on bad text.
    """
    try:
        return text.astype(np.float64)
    except ValueError:
        coerced = pd.to_numeric(text, errors="coerce")
        good = coerced.notna()
        coerced[good] = text[good].astype(np.float64)
        return coerced.astype(np.float64)


def _parse(flat: pd.DataFrame, source: Source) -> tuple[pd.DataFrame, list[Problem]]:
    """Parse text columns into numbers and UTC timestamps; problems for what does not parse."""
    parsed = flat.copy()
    problems: list[Problem] = []
    for field in ("amount", "lat", "long", "home_lat", "home_long"):
        if field in flat.columns:
            parsed[field] = _to_float(flat[field])
            bad = parsed[field].isna().to_numpy()
            problems += problems_where(source, field, bad, flat[field], "not a number: {value}")
    for field in ("timestamp", "label_timestamp"):
        if field in flat.columns:
            # Naive times are taken as UTC; times with an offset are converted to UTC.
            parsed[field] = pd.to_datetime(
                flat[field], format="ISO8601", utc=True, errors="coerce"
            ).astype("datetime64[us, UTC]")
            bad = parsed[field].isna().to_numpy()
            problems += problems_where(
                source, field, bad, flat[field], "cannot parse timestamp {value}"
            )
    is_fraud = pd.to_numeric(flat["is_fraud"], errors="coerce")
    bad = ~is_fraud.isin([0, 1]).to_numpy()
    problems += problems_where(
        source, "is_fraud", bad, flat["is_fraud"], "must be 0 or 1, got {value}"
    )
    parsed["is_fraud"] = is_fraud.fillna(0).astype(np.int8)
    return parsed, problems


def _build_tables(flat: pd.DataFrame, chargeback_delay_days: float) -> dict[str, pd.DataFrame]:
    """The four raw tables from parsed, checked rows."""
    rows = flat.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)
    transactions = rows[
        ["transaction_id", "customer_id", "merchant_id", "timestamp", "amount", "lat", "long"]
    ].astype({"amount": np.float64, "lat": np.float64, "long": np.float64})

    if "label_timestamp" in rows.columns:
        label_timestamp = rows["label_timestamp"]
    else:
        label_timestamp = rows["timestamp"] + pd.to_timedelta(chargeback_delay_days, unit="D")
    labels = pd.DataFrame(
        {
            "transaction_id": rows["transaction_id"],
            "is_fraud": rows["is_fraud"].astype(np.int8),
            "label_timestamp": label_timestamp,
            # The source says fraud or not, never how: the pattern of its fraud is unknown.
            "fraud_pattern": np.where(rows["is_fraud"] == 1, "unknown", "none").astype(object),
        }
    )

    # Rows are in time order, so "first" is each customer's earliest transaction.
    home_lat = "home_lat" if "home_lat" in rows.columns else "lat"
    home_long = "home_long" if "home_long" in rows.columns else "long"
    first = rows.groupby("customer_id", sort=True).first().reset_index()
    customers = pd.DataFrame(
        {
            "customer_id": first["customer_id"].astype(object),
            "home_lat": first[home_lat].astype(np.float64),
            "home_long": first[home_long].astype(np.float64),
            # No account opening date in such exports, and a card seen early may be older than
            # the file: "not known to have opened after the data's start" (the truncated-history
            # rule of training/dataset.py then keeps only rows whose lookback is inside the file).
            "created_at": rows["timestamp"].min(),
        }
    )

    by_merchant = rows.groupby("merchant_id", sort=True)
    location = by_merchant[["lat", "long"]].mean()
    if "category" in rows.columns:
        category = by_merchant["category"].first().to_numpy()
    else:
        category = np.full(len(location), UNKNOWN_CATEGORY)
    merchants = pd.DataFrame(
        {
            "merchant_id": location.index.astype(object),
            "category": category.astype(object),
            "lat": location["lat"].to_numpy(dtype=np.float64),
            "long": location["long"].to_numpy(dtype=np.float64),
        }
    )
    return {
        "transactions": transactions,
        "labels": labels,
        "customers": customers,
        "merchants": merchants,
    }


KAGGLE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # trans_date_trans_time in fraudTrain.csv


def to_kaggle_frame(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Raw tables as rows of the Kaggle credit-card CSV: the inverse of :func:`import_csv`.

    Only the mapped columns (:data:`KAGGLE_MAPPING`) are written; :func:`import_csv` reads the
    result back into the same transactions. Tests and benchmarks use it to make Kaggle-schema
    files of any size from generated data.

    Args:
        tables: ``transactions``, ``labels``, ``customers``, ``merchants`` (data/schema.py).

    Returns:
        One row per labeled transaction, in transaction order.
    """
    rows = tables["transactions"].merge(
        tables["labels"][["transaction_id", "is_fraud"]], on="transaction_id"
    )
    homes = tables["customers"].set_index("customer_id")
    categories = tables["merchants"].set_index("merchant_id")["category"]
    fields = {
        **{name: rows[name] for name in rows.columns},
        "timestamp": rows["timestamp"].dt.strftime(KAGGLE_TIME_FORMAT),
        "home_lat": rows["customer_id"].map(homes["home_lat"]),
        "home_long": rows["customer_id"].map(homes["home_long"]),
        "category": rows["merchant_id"].map(categories),
    }
    return pd.DataFrame({column: fields[field] for field, column in KAGGLE_MAPPING.items()})
