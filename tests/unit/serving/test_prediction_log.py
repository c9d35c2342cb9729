"""The prediction log's one writer: the contract's record, in the OS before the answer."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from fraud_platform import contracts as c
from serving.prediction_log import PredictionLog, prediction_record

FEATURES = {"txn_count_1h": "int64", "merchant_fraud_rate_30d": "float64"}
AT = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
MODEL = {"name": "fraud-detector", "version": "7", "run_id": "abc"}


def _record(i: int, rate: float | None = 0.25) -> dict:
    request = {
        c.TRANSACTION_ID: f"t{i}",
        c.CUSTOMER_ID: "c 1",
        c.MERCHANT_ID: "fraud_Kirlin and Sons",
        c.TIMESTAMP: AT,
        c.AMOUNT: 12.5,
        c.LAT: 40.7,
        c.LONG: -73.9,
    }
    return prediction_record(
        request,
        AT,
        {"txn_count_1h": i, "merchant_fraud_rate_30d": rate},
        probability=0.3,
        prediction=c.LEGIT,
        threshold=0.9,
        model=MODEL,
        cold_start=i == 0,
    )


def _log(folder: Path, failures: list[int]) -> PredictionLog:
    log = PredictionLog(
        folder,
        FEATURES,
        rotate_rows=2,
        rotate_seconds=60,
        fsync_seconds=60,
        count_failure=lambda: failures.append(1),
    )
    log.start()
    return log


def test_the_record_is_the_contracts_columns_in_order() -> None:
    record = _record(3)
    assert list(record) == list(c.prediction_log_columns(FEATURES))
    assert record["model_version"] == "7" and record["cold_start"] is False


def test_appended_rows_are_readable_at_once_and_after_rotation(tmp_path: Path) -> None:
    failures: list[int] = []
    log = _log(tmp_path, failures)
    assert log.append_many([_record(0), _record(1, rate=None)])
    assert log.append_many([_record(2)])  # the segment rotated after two rows
    live = c.read_prediction_log(tmp_path)  # before any close: the open segments
    assert live[c.TRANSACTION_ID].tolist() == ["t0", "t1", "t2"]
    log.close()
    assert not list(tmp_path.glob("*.jsonl"))  # a clean stop compacts every segment
    rows = c.read_prediction_log(tmp_path)
    assert rows[c.TRANSACTION_ID].tolist() == ["t0", "t1", "t2"]
    assert rows[c.MERCHANT_ID].iloc[0] == "fraud_Kirlin and Sons"
    assert str(rows[c.TIMESTAMP].dt.tz) == "UTC" and rows[c.TIMESTAMP].iloc[0] == pd.Timestamp(AT)
    assert math.isnan(rows["merchant_fraud_rate_30d"].iloc[1])  # unknown: null, not 0
    assert rows["cold_start"].tolist() == [True, False, False]
    assert failures == []


def test_a_bad_record_is_counted_not_raised(tmp_path: Path) -> None:
    failures: list[int] = []
    log = _log(tmp_path, failures)
    bad = _record(0) | {"txn_count_1h": 2.5}  # an int column cannot take 2.5
    assert log.append_many([_record(1), bad]) is False
    assert failures == [1, 1]  # both rows of the request counted
    log.close()
    assert log.append_many([_record(2)]) is False  # closed: refused, counted, not raised
    assert failures == [1, 1, 1]
