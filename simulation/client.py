"""The simulation as an HTTP client of the scoring API, and a reader of what it logged.

:func:`send_window` posts each simulated transaction to ``POST /predict`` in time order;
:func:`wait_for_logged` and :func:`latest_logged_event` read the prediction log back through
its one reader (:func:`fraud_platform.contracts.read_prediction_log`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_platform.contracts import TIMESTAMP, TRANSACTION_ID, read_prediction_log
from simulation.traffic import SimulationError


def to_request(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """One ``POST /predict`` body from a window row."""
    ts = pd.Timestamp(row["timestamp"]).tz_convert("UTC")
    return {
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "customer_id": str(row["customer_id"]),
        "merchant_id": str(row["merchant_id"]),
        "amount": float(row["amount"]),
        "lat": float(row["lat"]),
        "long": float(row["long"]),
        "transaction_id": str(row["transaction_id"]),
    }


# ----------------------------------------------------------------------------------- sending


@dataclass
class SendResult:
    """What happened to the requests of one window.

    Attributes:
        sent: Requests sent.
        ok: Answered with 2xx.
        errors: The first few failures, as ``status: body`` strings.
        failed: Requests that failed.
        seconds: Wall time.
    """

    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def send_window(
    client: Any,
    window: pd.DataFrame,
    *,
    api_key: str | None = None,
    progress: Callable[[Sequence[Any]], Any] | None = None,
    max_errors: int = 5,
) -> SendResult:
    """POST every row of the window to ``/predict``, one at a time, in time order.

    One at a time on purpose: the API ingests each scored transaction into the customer's
    online state, and a card-testing run only looks like one if each attempt sees the last.

    Args:
        client: An ``httpx.Client`` (or Starlette ``TestClient``) with the API's base URL.
        window: Rows from :func:`simulated_window`.
        api_key: Sent as ``X-API-Key`` when given.
        progress: Wraps the iteration (e.g. ``rich.progress.track``).
        max_errors: How many failure messages to keep.

    Returns:
        Counts of sent, answered and failed requests.

    Raises:
        SimulationError: If the API cannot be reached or rejects the key.
    """
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    result = SendResult()
    started = time.perf_counter()
    records = window.to_dict("records")
    for row in progress(records) if progress else records:
        try:
            response = client.post("/predict", json=to_request(row), headers=headers)
        except httpx.TransportError as exc:
            raise SimulationError(f"cannot reach the API at {client.base_url}: {exc}") from exc
        result.sent += 1
        if response.status_code in (401, 403):
            raise SimulationError(
                f"the API rejected the key (HTTP {response.status_code}); pass --api-key"
            )
        if response.is_success:
            result.ok += 1
        else:
            result.failed += 1
            if len(result.errors) < max_errors:
                result.errors.append(f"{response.status_code}: {response.text[:300]}")
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------ prediction log


def latest_logged_event(folder: Path) -> pd.Timestamp | None:
    """Latest event time in the prediction log, or ``None`` without one."""
    log = read_prediction_log(folder, columns=[TIMESTAMP])
    if log.empty:
        return None
    latest = pd.to_datetime(log[TIMESTAMP], utc=True).max()
    return None if pd.isna(latest) else latest


def wait_for_logged(
    folder: Path,
    transaction_ids: Sequence[str],
    *,
    timeout: float,
    sent_after: float | None = None,
    poll: float = 1.0,
) -> pd.DataFrame:
    """The prediction log rows of the given transactions, waiting for the log to catch up.

    The API writes each row before it answers, so rows are there at once; the wait covers an
    API that logs to another folder or has not answered yet.

    Args:
        folder: The prediction log folder.
        transaction_ids: Ids that were sent.
        timeout: Seconds to wait for all of them to appear.
        sent_after: POSIX time the first request was sent; older files are not read.
        poll: Seconds between two reads.

    Returns:
        Their rows (possibly fewer than asked for when the timeout passed).
    """
    wanted = set(transaction_ids)
    deadline = time.monotonic() + timeout
    since = None if sent_after is None else sent_after - 1.0  # coarse file-system clocks
    while True:
        log = read_prediction_log(folder, modified_since=since)
        if TRANSACTION_ID in log:
            rows = log[log[TRANSACTION_ID].isin(wanted)].drop_duplicates(
                TRANSACTION_ID, keep="last"
            )
        else:
            rows = pd.DataFrame()
        if len(rows) >= len(wanted) or time.monotonic() >= deadline:
            return rows.reset_index(drop=True)
        time.sleep(poll)
