"""Checks on the raw tables, shared by the generator, the importer and the feature pipeline.

Every problem names the file, the row and the column, so a bad input can be fixed without a
debugger. Rows are 0-based data rows for Parquet files and data frames; the importer passes
the CSV line of each row instead, so its messages read ``transactions.csv line 7, column amt:
amount must be > 0, got -3.5``. A check reports the first few problems it finds, not only the
first, and every check runs before the one exception is raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from data.schema import RAW_TABLES
from fraud_platform.ids import ID_RULE, invalid_id_mask

MAX_REPORTED_PROBLEMS = 5
"""How many problems the exception message lists; the rest are counted."""

MAX_ROWS_PER_CHECK = 3
"""How many offending rows one check reports: enough to see a pattern, not a wall of text."""


class RawDataError(ValueError):
    """A raw table or an imported file is malformed; the message names file, row and column.

    Attributes:
        problems: Every problem found (the message lists the first few).
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = [str(problem) for problem in self.problems[:MAX_REPORTED_PROBLEMS]]
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            shown.append(f"... and {hidden} more problem{'s' if hidden > 1 else ''}")
        super().__init__("\n".join(shown))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one place of one file.

    Attributes:
        source: File name shown to the user, e.g. ``transactions.parquet``.
        location: ``row 7`` or ``line 9``; empty when the problem concerns a whole column.
        column: Column name as the user knows it (the source's own name for imports).
        message: What is wrong, with the offending value.
    """

    source: str
    location: str
    column: str
    message: str

    def __str__(self) -> str:
        place = f"{self.source} {self.location}" if self.location else self.source
        column = f", column {self.column}" if self.column else ""
        return f"{place}{column}: {self.message}"


@dataclass(frozen=True)
class Source:
    """How to describe rows and columns of one table in messages.

    Attributes:
        name: File name shown in messages.
        lines: CSV line number of each row, for imports; ``None`` means 0-based data rows.
        columns: Our column name -> the name the user knows (the source's column name).
    """

    name: str
    lines: np.ndarray | None = None
    columns: Mapping[str, str] = field(default_factory=dict)

    def where(self, position: int) -> str:
        """``row N`` or ``line N`` for the row at this 0-based position of the table."""
        if self.lines is None:
            return f"row {position}"
        return f"line {int(self.lines[position])}"

    def column(self, name: str) -> str:
        """The user's name for one of our columns."""
        return self.columns.get(name, name)


def problems_where(
    source: Source, column: str, mask: np.ndarray, describe: pd.Series | np.ndarray, message: str
) -> list[Problem]:
    """A problem for each of the first few rows where ``mask`` holds.

    Args:
        source: How to name the rows and the column.
        column: Our name of the column.
        mask: True at each offending row (position in the table).
        describe: Values to show in the message, aligned with ``mask``.
        message: Text of the problem; ``{value}`` is replaced by the row's value.

    Returns:
        At most ``MAX_ROWS_PER_CHECK`` problems, in row order.
    """
    positions = np.flatnonzero(mask)[:MAX_ROWS_PER_CHECK]
    # Only the few reported values are fetched: converting a whole tz-aware column is slow.
    values = [
        describe.iloc[pos] if isinstance(describe, pd.Series) else describe[pos]
        for pos in positions
    ]
    return [
        Problem(
            source.name,
            source.where(int(pos)),
            source.column(column),
            message.format(value=_show(value)),
        )
        for pos, value in zip(positions, values, strict=True)
    ]


def _show(value: object) -> str:
    """A value as it should appear in a message: short, and quoted when it is text."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return str(pd.Timestamp(value))
    return str(value)


# --------------------------------------------------------------------------- column checks


def check_columns_present(
    df: pd.DataFrame, required: Sequence[str], source: Source
) -> list[Problem]:
    """Problems for every required column the frame lacks."""
    return [
        Problem(source.name, "", source.column(name), "missing column")
        for name in required
        if name not in df.columns
    ]


def check_not_null(df: pd.DataFrame, columns: Sequence[str], source: Source) -> list[Problem]:
    """Problems for missing values (None, NaN, NaT, empty text) in the given columns."""
    problems: list[Problem] = []
    for name in columns:
        values = df[name]
        missing = values.isna().to_numpy()
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            missing |= (values == "").to_numpy(dtype=bool, na_value=False)
        problems += problems_where(source, name, missing, values, "missing value")
    return problems


def check_positive_amount(df: pd.DataFrame, column: str, source: Source) -> list[Problem]:
    """Problems for amounts that are not finite or not strictly positive (nulls are skipped)."""
    values = df[column].to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(values)
    bad_finite = present & ~np.isfinite(values)
    bad_sign = present & np.isfinite(values) & (values <= 0)
    return problems_where(
        source, column, bad_finite, values, "amount must be a finite number, got {value}"
    ) + problems_where(source, column, bad_sign, values, "amount must be > 0, got {value}")


def check_coordinate(df: pd.DataFrame, column: str, limit: float, source: Source) -> list[Problem]:
    """Problems for coordinates outside ``[-limit, limit]`` or not finite (nulls are skipped)."""
    values = df[column].to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(values)
    bad = present & ~(np.isfinite(values) & (np.abs(values) <= limit))
    kind = "latitude" if limit == 90 else "longitude"
    return problems_where(
        source, column, bad, values, f"{kind} must be in [-{limit:g}, {limit:g}], got {{value}}"
    )


def check_ids(df: pd.DataFrame, columns: Sequence[str], source: Source) -> list[Problem]:
    """Problems for ids that break the one id rule (:mod:`fraud_platform.ids`); nulls skipped."""
    problems: list[Problem] = []
    for name in columns:
        values = df[name]
        problems += problems_where(
            source, name, invalid_id_mask(values), values, f"id {{value}} {ID_RULE}"
        )
    return problems


def check_unique(df: pd.DataFrame, column: str, source: Source) -> list[Problem]:
    """Problems for every repeated value after its first occurrence."""
    values = df[column]
    repeated = values.duplicated(keep="first").to_numpy() & values.notna().to_numpy()
    return problems_where(source, column, repeated, values, "duplicate id {value}")


def check_utc_timestamp(df: pd.DataFrame, column: str, source: Source) -> list[Problem]:
    """A problem if the column is not a timezone-aware UTC timestamp."""
    dtype = df[column].dtype
    if isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC":
        return []
    return [Problem(source.name, "", source.column(column), f"must be a UTC timestamp, is {dtype}")]


def check_sorted_by_time(
    df: pd.DataFrame, time_column: str, id_column: str, source: Source
) -> list[Problem]:
    """Problems where rows are not in (timestamp, id) order, which every consumer relies on."""
    # ``.values`` keeps tz-aware timestamps as datetime64; ``to_numpy`` would box each one.
    times = df[time_column].values
    ids = df[id_column].to_numpy()
    if len(times) < 2:
        return []
    earlier_time = times[1:] < times[:-1]
    tie_out_of_order = (times[1:] == times[:-1]) & (ids[1:].astype(str) < ids[:-1].astype(str))
    out_of_order = np.concatenate([[False], earlier_time | tie_out_of_order])
    return problems_where(
        source,
        time_column,
        out_of_order,
        df[time_column],
        "rows out of order: ({value}, id) comes before the previous row's; "
        f"sort by ({time_column}, {id_column})",
    )


def check_known_ids(
    df: pd.DataFrame, column: str, known: pd.Series, known_in: str, source: Source
) -> list[Problem]:
    """Problems for ids that do not appear in ``known`` (the table ``known_in``)."""
    values = df[column]
    unknown = (~values.isin(known)).to_numpy() & values.notna().to_numpy()
    return problems_where(source, column, unknown, values, f"id {{value}} not found in {known_in}")


# --------------------------------------------------------------------------- table checks


def _schema_problems(df: pd.DataFrame, table: str, source: Source) -> list[Problem]:
    return check_columns_present(df, RAW_TABLES[table].names, source)


def validate_transactions(df: pd.DataFrame, source: Source | None = None) -> list[Problem]:
    """Problems of a transactions table (schema, nulls, amounts, coordinates, order, ids).

    Args:
        df: The transactions table.
        source: How to name rows and columns; ``transactions.parquet`` rows by default.

    Returns:
        Every problem found, the first few per check.
    """
    source = source or Source("transactions.parquet")
    problems = _schema_problems(df, "transactions", source)
    if problems:
        return problems
    problems += check_not_null(df, RAW_TABLES["transactions"].names, source)
    problems += check_utc_timestamp(df, "timestamp", source)
    problems += check_positive_amount(df, "amount", source)
    problems += check_coordinate(df, "lat", 90, source)
    problems += check_coordinate(df, "long", 180, source)
    problems += check_ids(df, ["transaction_id", "customer_id", "merchant_id"], source)
    problems += check_unique(df, "transaction_id", source)
    problems += check_sorted_by_time(df, "timestamp", "transaction_id", source)
    return problems


def validate_labels(
    labels: pd.DataFrame, transactions: pd.DataFrame | None = None, source: Source | None = None
) -> list[Problem]:
    """Problems of a labels table, and of its links to the transactions when given.

    Args:
        labels: The labels table.
        transactions: The transactions the labels refer to; enables the id and time checks.
        source: How to name rows and columns; ``labels.parquet`` rows by default.

    Returns:
        Every problem found, the first few per check.
    """
    source = source or Source("labels.parquet")
    problems = _schema_problems(labels, "labels", source)
    if problems:
        return problems
    problems += check_not_null(labels, RAW_TABLES["labels"].names, source)
    problems += check_utc_timestamp(labels, "label_timestamp", source)
    problems += check_ids(labels, ["transaction_id"], source)
    problems += check_unique(labels, "transaction_id", source)
    is_fraud = labels["is_fraud"]
    not_binary = (~is_fraud.isin([0, 1])).to_numpy() & is_fraud.notna().to_numpy()
    problems += problems_where(
        source, "is_fraud", not_binary, is_fraud, "must be 0 or 1, got {value}"
    )
    if transactions is None or "transaction_id" not in transactions.columns:
        return problems
    label_ids, txn_ids = labels["transaction_id"], transactions["transaction_id"]
    # Usual case (generator, importer): one label per transaction, in the same order.
    aligned = len(label_ids) == len(txn_ids) and bool((label_ids.values == txn_ids.values).all())
    if not aligned:
        problems += check_known_ids(labels, "transaction_id", txn_ids, "transactions", source)
    if "timestamp" in transactions.columns:
        if aligned:
            txn_time = transactions["timestamp"].set_axis(labels.index)
        else:
            by_id = transactions.drop_duplicates("transaction_id").set_index("transaction_id")
            txn_time = label_ids.map(by_id["timestamp"])
        # A label known at or before its own transaction would leak the future into training.
        too_early = (labels["label_timestamp"] <= txn_time).to_numpy(dtype=bool, na_value=False)
        problems += problems_where(
            source,
            "label_timestamp",
            too_early,
            labels["label_timestamp"],
            "label_timestamp {value} is not after its transaction's timestamp",
        )
    return problems


def validate_customers(df: pd.DataFrame, source: Source | None = None) -> list[Problem]:
    """Problems of a customers table (schema, nulls, unique ids, home coordinates)."""
    source = source or Source("customers.parquet")
    problems = _schema_problems(df, "customers", source)
    if problems:
        return problems
    problems += check_not_null(df, RAW_TABLES["customers"].names, source)
    problems += check_utc_timestamp(df, "created_at", source)
    problems += check_ids(df, ["customer_id"], source)
    problems += check_unique(df, "customer_id", source)
    problems += check_coordinate(df, "home_lat", 90, source)
    problems += check_coordinate(df, "home_long", 180, source)
    return problems


def validate_merchants(df: pd.DataFrame, source: Source | None = None) -> list[Problem]:
    """Problems of a merchants table (schema, nulls, unique ids, coordinates)."""
    source = source or Source("merchants.parquet")
    problems = _schema_problems(df, "merchants", source)
    if problems:
        return problems
    problems += check_not_null(df, RAW_TABLES["merchants"].names, source)
    problems += check_ids(df, ["merchant_id"], source)
    problems += check_unique(df, "merchant_id", source)
    problems += check_coordinate(df, "lat", 90, source)
    problems += check_coordinate(df, "long", 180, source)
    return problems


def raw_table_problems(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Every problem of the four raw tables, including the links between them.

    Args:
        tables: ``transactions``, ``labels``, ``customers`` and ``merchants`` data frames.

    Returns:
        Every problem found; empty when the tables are fit for the feature pipeline.
    """
    missing = [name for name in RAW_TABLES if name not in tables]
    if missing:
        return [Problem(f"{name}.parquet", "", "", "missing table") for name in missing]
    transactions = tables["transactions"]
    problems = validate_transactions(transactions)
    problems += validate_labels(tables["labels"], transactions)
    problems += validate_customers(tables["customers"])
    problems += validate_merchants(tables["merchants"])
    txn_source = Source("transactions.parquet")
    for column, table in (("customer_id", "customers"), ("merchant_id", "merchants")):
        if column in transactions.columns and column in tables[table].columns:
            problems += check_known_ids(
                transactions, column, tables[table][column], table, txn_source
            )
    return problems


def validate_raw(tables: Mapping[str, pd.DataFrame]) -> None:
    """Check the four raw tables and raise if anything is wrong.

    Args:
        tables: ``transactions``, ``labels``, ``customers`` and ``merchants`` data frames.

    Raises:
        RawDataError: Listing the first few problems, each naming file, row and column.
    """
    problems = raw_table_problems(tables)
    if problems:
        raise RawDataError(problems)


def read_raw_tables(raw_dir: Path, validate: bool = True) -> dict[str, pd.DataFrame]:
    """Read the four raw Parquet tables, checked, as the feature pipeline consumes them.

    Args:
        raw_dir: Folder holding ``transactions.parquet``, ``labels.parquet``, ...
        validate: Run :func:`validate_raw` on what was read.

    Returns:
        Table name -> data frame.

    Raises:
        RawDataError: If a file is missing, has the wrong schema or bad values.
    """
    import pyarrow.parquet as pq

    tables: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name, schema in RAW_TABLES.items():
        path = raw_dir / f"{name}.parquet"
        if not path.exists():
            problems.append(Problem(str(path), "", "", "file not found"))
            continue
        table = pq.read_table(path)
        problems += _arrow_type_problems(table.schema, schema, path.name)
        tables[name] = table.to_pandas()
    if problems:
        raise RawDataError(problems)
    if validate:
        validate_raw(tables)
    return tables


def _arrow_type_problems(actual: pa.Schema, expected: pa.Schema, name: str) -> list[Problem]:
    """Problems for columns whose Parquet type differs from the contract in ``data/schema.py``."""
    problems = []
    for expected_field in expected:
        index = actual.get_field_index(expected_field.name)
        if index < 0:
            problems.append(Problem(name, "", expected_field.name, "missing column"))
        elif not actual.field(index).type.equals(expected_field.type):
            problems.append(
                Problem(
                    name,
                    "",
                    expected_field.name,
                    f"type must be {expected_field.type}, is {actual.field(index).type}",
                )
            )
    return problems
