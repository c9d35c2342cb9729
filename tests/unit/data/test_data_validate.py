"""Raw-table checks: every kind of problem is found and named by file, row and column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.generate import write_tables
from data.validate import RawDataError, raw_table_problems, read_raw_tables, validate_raw

Tables = dict[str, pd.DataFrame]


def _copy(tables: Tables) -> Tables:
    return {name: frame.copy() for name, frame in tables.items()}


def _set(table: str, row: int, column: str, value: object) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables[table].loc[row, column] = value

    return change


def _swap_rows(tables: Tables) -> None:
    txns = tables["transactions"]
    # Put a later row before an earlier one (the ids move with their rows).
    order = list(range(len(txns)))
    order[4], order[30] = order[30], order[4]
    tables["transactions"] = txns.iloc[order].reset_index(drop=True)
    tables["labels"] = tables["labels"].iloc[order].reset_index(drop=True)


def _duplicate_id(tables: Tables) -> None:
    tables["transactions"].loc[6, "transaction_id"] = tables["transactions"].loc[
        5, "transaction_id"
    ]


def _label_before_transaction(tables: Tables) -> None:
    labels = tables["labels"]
    labels.loc[8, "label_timestamp"] = tables["transactions"].loc[8, "timestamp"]


def _unknown_label_id(tables: Tables) -> None:
    tables["labels"].loc[9, "transaction_id"] = "t_not_there"


def _drop_amount(tables: Tables) -> None:
    tables["transactions"] = tables["transactions"].drop(columns="amount")


CASES = [
    pytest.param(
        _set("transactions", 3, "amount", -3.5),
        "transactions.parquet row 3, column amount: amount must be > 0, got -3.5",
        id="negative-amount",
    ),
    pytest.param(
        _set("transactions", 3, "amount", 0.0),
        "row 3, column amount: amount must be > 0",
        id="zero-amount",
    ),
    pytest.param(
        _set("transactions", 2, "amount", np.inf),
        "row 2, column amount: amount must be a finite",
        id="infinite-amount",
    ),
    pytest.param(
        _set("transactions", 2, "amount", np.nan),
        "row 2, column amount: missing value",
        id="null-amount",
    ),
    pytest.param(
        _set("transactions", 5, "lat", 91.0),
        "transactions.parquet row 5, column lat: latitude",
        id="lat-range",
    ),
    pytest.param(
        _set("transactions", 5, "long", -181.0),
        "transactions.parquet row 5, column long: longitude",
        id="long-range",
    ),
    pytest.param(
        _set("customers", 1, "home_lat", -95.0),
        "customers.parquet row 1, column home_lat",
        id="home-lat-range",
    ),
    pytest.param(
        _set("merchants", 2, "long", 200.0),
        "merchants.parquet row 2, column long",
        id="merchant-long-range",
    ),
    pytest.param(
        _set("transactions", 7, "customer_id", None),
        "row 7, column customer_id: missing value",
        id="null-customer",
    ),
    pytest.param(
        _set("transactions", 7, "merchant_id", "m_nowhere"),
        "row 7, column merchant_id: id 'm_nowhere' not found in merchants",
        id="unknown-merchant",
    ),
    pytest.param(
        _swap_rows,
        "transactions.parquet row 5, column timestamp: rows out of order",
        id="out-of-order",
    ),
    pytest.param(
        _duplicate_id,
        "transactions.parquet row 6, column transaction_id: duplicate id",
        id="duplicate-id",
    ),
    pytest.param(
        _label_before_transaction,
        "labels.parquet row 8, column label_timestamp",
        id="label-not-after",
    ),
    pytest.param(
        _unknown_label_id,
        "labels.parquet row 9, column transaction_id: id 't_not_there' not found",
        id="unknown-label-id",
    ),
    pytest.param(
        _set("labels", 4, "is_fraud", 3),
        "labels.parquet row 4, column is_fraud: must be 0 or 1",
        id="label-not-binary",
    ),
    pytest.param(
        _drop_amount, "transactions.parquet, column amount: missing column", id="missing-column"
    ),
]


def test_generated_tables_have_no_problems(small_tables: Tables) -> None:
    assert raw_table_problems(small_tables) == []
    validate_raw(small_tables)


@pytest.mark.parametrize(("change", "expected"), CASES)
def test_each_problem_is_named_by_file_row_and_column(
    small_tables: Tables, change: Callable[[Tables], None], expected: str
) -> None:
    tables = _copy(small_tables)
    change(tables)
    with pytest.raises(RawDataError) as caught:
        validate_raw(tables)
    assert expected in str(caught.value)


def test_several_problems_are_reported_not_only_the_first(small_tables: Tables) -> None:
    tables = _copy(small_tables)
    tables["transactions"].loc[[3, 10], "amount"] = -1.0
    tables["transactions"].loc[12, "lat"] = 100.0
    tables["merchants"].loc[0, "lat"] = -100.0
    with pytest.raises(RawDataError) as caught:
        validate_raw(tables)
    message = str(caught.value)
    for place in (
        "row 3, column amount",
        "row 10, column amount",
        "row 12, column lat",
        "merchants.parquet row 0, column lat",
    ):
        assert place in message
    assert len(caught.value.problems) == 4


def test_a_long_list_of_problems_is_cut_short(small_tables: Tables) -> None:
    tables = _copy(small_tables)
    tables["transactions"]["amount"] = -1.0
    tables["transactions"]["lat"] = 100.0
    tables["transactions"]["long"] = 200.0
    with pytest.raises(RawDataError) as caught:
        validate_raw(tables)
    lines = str(caught.value).splitlines()
    assert "more problems" in lines[-1]
    assert len(lines) < len(caught.value.problems) + 1


def test_missing_table_is_named(small_tables: Tables) -> None:
    tables = _copy(small_tables)
    del tables["merchants"]
    with pytest.raises(RawDataError, match=r"merchants\.parquet: missing table"):
        validate_raw(tables)


def test_read_raw_tables_round_trips_written_tables(small_tables: Tables, tmp_path: Path) -> None:
    write_tables(small_tables, tmp_path)
    read = read_raw_tables(tmp_path)
    for name, frame in small_tables.items():
        pd.testing.assert_frame_equal(read[name], frame, check_dtype=False)
        assert list(read[name].dtypes) == list(frame.dtypes)


def test_read_raw_tables_names_missing_file_and_wrong_type(
    small_tables: Tables, tmp_path: Path
) -> None:
    write_tables(small_tables, tmp_path)
    (tmp_path / "labels.parquet").unlink()
    merchants = pq.read_table(tmp_path / "merchants.parquet")
    merchants = merchants.set_column(
        2, "lat", pa.array([str(v) for v in merchants["lat"].to_pylist()])
    )
    pq.write_table(merchants, tmp_path / "merchants.parquet")
    with pytest.raises(RawDataError) as caught:
        read_raw_tables(tmp_path)
    message = str(caught.value)
    assert "labels.parquet: file not found" in message
    assert "merchants.parquet, column lat: type must be double, is string" in message


def test_naive_timestamps_are_rejected(small_tables: Tables) -> None:
    tables = _copy(small_tables)
    tables["customers"]["created_at"] = tables["customers"]["created_at"].dt.tz_localize(None)
    with pytest.raises(RawDataError, match="column created_at: must be a UTC timestamp"):
        validate_raw(tables)


def test_a_scoring_request_carries_exactly_a_raw_transactions_fields() -> None:
    """The API's request, the prediction log's request part and the raw table agree (contracts)."""
    from data.schema import LABELS, TRANSACTIONS
    from fraud_platform.contracts import (
        LABEL,
        LABEL_TIMESTAMP,
        PREDICTION_LOG_REQUEST,
        REQUEST_FIELDS,
        SCORED_AT,
    )
    from serving.schemas import TransactionIn

    assert tuple(TRANSACTIONS.names) == REQUEST_FIELDS
    assert set(TransactionIn.model_fields) == set(REQUEST_FIELDS)
    assert list(PREDICTION_LOG_REQUEST) == [*REQUEST_FIELDS, SCORED_AT]
    assert {LABEL, LABEL_TIMESTAMP} <= set(LABELS.names)
