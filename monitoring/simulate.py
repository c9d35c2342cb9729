"""Simulated traffic for the drift check: replay real transactions, shifted or not, via the API.

The base window is a replay of the **last complete day** of ``data/raw/transactions.parquet``
(all the transactions of a fixed random subset of its customers, about ``rows`` of them),
moved forward by a whole number of days so that it starts after both the data end and the
latest event already in the prediction log. Why this shape:

- a whole day keeps the hour-of-day mix of the reference (the latest N rows would cover a few
  hours and drift on ``hour_of_day`` by construction);
- every transaction of a chosen customer is replayed, in order, so the customer's own
  velocity windows look like the data's; moving by whole days keeps times of day;
- moving past the latest logged event means the online state (updated by the API's push after
  each scored transaction) never sees a replayed transaction earlier than one it already holds.

What remains different from the reference in an unshifted (``none``) replay: merchants see
only the replayed subset of their traffic, so ``merchant_txn_count_24h`` runs lower; that is one
feature out of seventeen, far from the dataset threshold.

Shifts (:data:`SHIFTS`):

- ``amount``: every amount times :data:`AMOUNT_FACTOR`;
- ``night``: each day's times of day squeezed into 00:00-06:00 UTC (order kept, so the
  same transactions also come four times as close together);
- ``burst``: half the window replaced by card-testing bursts: runs of small amounts at many
  merchants, seconds apart, on the same customers;
- ``none``: the control window.

Simulated transactions get ids ``sim-<shift>-<run>-<n>`` so that their rows in the prediction
log can be picked out exactly; customers and merchants are real ones the online store knows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Shift = Literal["amount", "night", "burst", "none"]
SHIFTS: tuple[str, ...] = ("amount", "night", "burst", "none")
AMOUNT_FACTOR = 5.0
NIGHT_SQUEEZE = 4  # 24 h of times of day into 6 h
BURST_LENGTH = 20  # transactions per card-testing run
BURST_GAP_SECONDS = (3, 40)  # seconds between two attempts of one run
BURST_AMOUNTS = (0.5, 3.0)  # card testers probe with small amounts
DAY = pd.Timedelta(days=1)
REQUEST_COLUMNS = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "timestamp",
    "amount",
    "lat",
    "long",
)


class SimulationError(RuntimeError):
    """The simulation cannot run (no data, API unreachable, key rejected); says why."""


# ------------------------------------------------------------------------------- building windows


def last_day(transactions: pd.DataFrame) -> pd.DataFrame:
    """The transactions of the last 24 hours of the data, ``[end - 24h, end]``.

    Args:
        transactions: Raw transactions (``data/schema.py: TRANSACTIONS``).

    Returns:
        Those rows, ordered by ``(timestamp, transaction_id)``.

    Raises:
        SimulationError: If there are no transactions.
    """
    if transactions.empty:
        raise SimulationError("no transactions to replay")
    frame = transactions.assign(timestamp=pd.to_datetime(transactions["timestamp"], utc=True))
    end = frame["timestamp"].max()
    day = frame[frame["timestamp"] >= end - DAY]
    return day.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def sample_customers(day: pd.DataFrame, rows: int, *, seed: int) -> pd.DataFrame:
    """All transactions of a random subset of customers, about ``rows`` in total.

    The subset depends on ``seed`` only, so a control window and a shifted window built with
    the same seed replay the same customers.

    Args:
        day: One day of transactions.
        rows: Target number of transactions (at least one customer is kept).
        seed: Random seed.

    Returns:
        The chosen customers' transactions, in time order.
    """
    customers = day["customer_id"].drop_duplicates().to_numpy()
    order = np.random.default_rng(seed).permutation(len(customers))
    counts = day["customer_id"].value_counts()
    chosen: list[Any] = []
    total = 0
    for i in order:
        if total >= rows:
            break
        chosen.append(customers[i])
        total += int(counts[customers[i]])
    return day[day["customer_id"].isin(chosen)].reset_index(drop=True)


def retime(frame: pd.DataFrame, after: pd.Timestamp) -> pd.DataFrame:
    """Move a window forward by whole days so that it starts after ``after``.

    Args:
        frame: Transactions with a UTC ``timestamp``.
        after: The window's first timestamp ends up strictly later than this.

    Returns:
        A copy with moved timestamps (times of day unchanged).
    """
    start = frame["timestamp"].min()
    days = max(1, int(np.floor((after - start) / DAY)) + 1)
    return frame.assign(timestamp=frame["timestamp"] + days * DAY)


def apply_shift(frame: pd.DataFrame, shift: str, *, seed: int) -> pd.DataFrame:
    """Apply one of :data:`SHIFTS` to a window.

    Args:
        frame: Transactions: ``customer_id``, ``merchant_id``, ``timestamp``, ``amount``,
            ``lat``, ``long``.
        shift: ``amount``, ``night``, ``burst`` or ``none``.
        seed: Random seed for the burst pattern.

    Returns:
        The shifted window, in time order.

    Raises:
        ValueError: For an unknown shift.
    """
    if shift == "none":
        out = frame.copy()
    elif shift == "amount":
        out = frame.assign(amount=(frame["amount"] * AMOUNT_FACTOR).round(2))
    elif shift == "night":
        ts = frame["timestamp"]
        midnight = ts.dt.floor("D")
        out = frame.assign(timestamp=midnight + (ts - midnight) / NIGHT_SQUEEZE)
    elif shift == "burst":
        out = _with_bursts(frame, seed=seed)
    else:
        raise ValueError(f"unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    out["timestamp"] = out["timestamp"].dt.floor("us")  # the raw data's precision
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _with_bursts(frame: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Keep half the window; replace the other half by card-testing runs of its customers."""
    rng = np.random.default_rng(seed)
    n_burst = len(frame) // 2
    keep = frame.iloc[np.sort(rng.choice(len(frame), len(frame) - n_burst, replace=False))]
    merchants = frame["merchant_id"].drop_duplicates().to_numpy()
    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    span = max((end - start).total_seconds(), 1.0)
    runs = []
    for run in range(int(np.ceil(n_burst / BURST_LENGTH))):
        length = min(BURST_LENGTH, n_burst - run * BURST_LENGTH)
        victim = frame.iloc[int(rng.integers(len(frame)))]
        gaps = rng.integers(*BURST_GAP_SECONDS, size=length).cumsum()
        t0 = start + pd.Timedelta(seconds=float(rng.uniform(0, span)))
        runs.append(
            pd.DataFrame(
                {
                    "customer_id": victim["customer_id"],
                    "merchant_id": rng.choice(merchants, size=length),
                    "timestamp": t0 + pd.to_timedelta(gaps, unit="s"),
                    "amount": rng.uniform(*BURST_AMOUNTS, size=length).round(2),
                    "lat": victim["lat"],
                    "long": victim["long"],
                }
            )
        )
    return pd.concat([keep, *runs], ignore_index=True)


def simulated_window(
    transactions: pd.DataFrame,
    *,
    rows: int,
    shift: str,
    after: pd.Timestamp | None = None,
    run_tag: str,
    seed: int = 0,
) -> pd.DataFrame:
    """Build one window of simulated traffic (see the module docstring).

    Args:
        transactions: Raw transactions to replay from.
        rows: About this many transactions.
        shift: One of :data:`SHIFTS`.
        after: The window starts after this time (and after the data end); the data end if
            ``None``.
        run_tag: Goes into the transaction ids, to tell runs apart.
        seed: Seed of the customer subset and the burst pattern.

    Returns:
        Requests as rows: ``transaction_id``, ``customer_id``, ``merchant_id``, ``timestamp``,
        ``amount``, ``lat``, ``long``, in time order.
    """
    day = last_day(transactions)
    anchor = day["timestamp"].max()
    if after is not None:
        after = pd.Timestamp(after)
        after = after.tz_localize("UTC") if after.tzinfo is None else after
        anchor = max(anchor, after)
    # Shift first, then move: the night squeeze can move a time earlier within its day.
    window = apply_shift(sample_customers(day, rows, seed=seed), shift, seed=seed)
    window = retime(window, anchor)
    ids = [f"sim-{shift}-{run_tag}-{i:06d}" for i in range(len(window))]
    return window.assign(transaction_id=ids)[list(REQUEST_COLUMNS)]


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


def log_files(folder: Path, *, modified_since: float | None = None) -> list[Path]:
    """The prediction log's files (``predictions-*.parquet``), in name order.

    Args:
        folder: The prediction log folder.
        modified_since: Only files modified at or after this POSIX time.

    Returns:
        Their paths.
    """
    files = sorted(folder.glob("predictions-*.parquet"))
    if modified_since is not None:
        files = [f for f in files if f.stat().st_mtime >= modified_since]
    return files


def read_prediction_log(
    folder: Path, *, columns: Sequence[str] | None = None, modified_since: float | None = None
) -> pd.DataFrame:
    """All rows of the prediction log, in file-name order.

    The API writes each file under a hidden name and renames it into place, so a file that
    matches ``predictions-*.parquet`` is complete.

    Args:
        folder: The prediction log folder.
        columns: Read only these columns.
        modified_since: Only files modified at or after this POSIX time.

    Returns:
        The concatenated rows; an empty frame when there are no files.
    """
    frames = [
        pd.read_parquet(f, columns=list(columns) if columns else None)
        for f in log_files(folder, modified_since=modified_since)
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def latest_logged_event(folder: Path) -> pd.Timestamp | None:
    """Latest event time in the prediction log, or ``None`` without one."""
    log = read_prediction_log(folder, columns=["timestamp"])
    if log.empty:
        return None
    latest = pd.to_datetime(log["timestamp"], utc=True).max()
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

    The API buffers the log and writes a file every ``prediction_log_rotate_rows`` rows or
    every ``SERVING_LOG_ROTATE_SECONDS`` seconds (300 by default), so rows may take a while.

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
        if "transaction_id" in log:
            rows = log[log["transaction_id"].isin(wanted)].drop_duplicates(
                "transaction_id", keep="last"
            )
        else:
            rows = pd.DataFrame()
        if len(rows) >= len(wanted) or time.monotonic() >= deadline:
            return rows.reset_index(drop=True)
        time.sleep(poll)


def utc_run_tag(now: datetime | None = None) -> str:
    """A compact UTC time stamp for transaction ids."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
