"""Simulated traffic for the drift check: realistic windows of transactions, shifted or not.

The control window must look like the training data *as the online state sees it*: every
velocity feature is computed against the customer's and merchant's state in Redis, which holds
the real transactions at their real times. So a window is not a replay of old transactions
moved in time (the same customers would reappear days after themselves and see gaps of days,
empty 24 h windows and distorted averages); it is **more of the same process, after the data**.

Generated data (:func:`generated_period`): ``data.generate.generate`` is deterministic under
its seed, and its output is the raw table itself, so the continuation of the process is the
data again, moved forward by whole periods (``generate.days``): the same customers with the
same rates, amounts, merchants and hour mix, each continuing from their own state. A window is
the first whole UTC day(s) of that continuation that start at or after both the data end and
the latest event in the prediction log (:func:`continuation_window`); a second run therefore
takes the following days, never a time the online state already holds. Whole days of all
customers because:

- the first N rows of a day are its first hours: ``hour_of_day``/``is_night`` would drift;
- a subset of customers leaves merchants with part of their traffic: ``merchant_txn_count_24h``
  would run low. With ``rows`` below a day's volume that is what happens (with a warning).

The generator's fraud events (card-testing bursts, account takeovers, new-account fraud) are
left out of the
continuation (:func:`drop_fraud_events`): a day holds a handful of whole events, which move
the hour mix and velocity counts of that day by themselves. Each window of a run is the next
day of the process, so the shifted window follows the control as real traffic would.

A second run continues after the first (the online state holds it), so its 24 h and 30-day
windows still contain the first run's *shifted* traffic: its control is not clean. For a clean
rerun, re-materialize the online store and move the prediction log aside.

Imported data (not reproducible by the generator) falls back to replaying the last day's
transactions moved forward by whole days (:func:`last_day`, :func:`sample_customers`,
:func:`retime`); its velocity features are distorted by the re-timing, so its control is not
a clean "no shift".

Shifts (:data:`SHIFTS`), applied to such a base window:

- ``amount``: every amount times :data:`AMOUNT_FACTOR`;
- ``night``: each day's times of day squeezed into 00:00-06:00 UTC (order kept, so the
  same transactions also come four times as close together);
- ``burst``: half the window replaced by card-testing bursts: runs of small amounts at many
  merchants, seconds apart, on the same customers;
- ``none``: the control window.

What each shift is meant to move is :data:`simulation.verdict.EXPECTED_DRIFT`;
:func:`simulation.verdict.judge_window` holds a drift check of a window against it. Sending the
windows to the API and reading back what it logged is :mod:`simulation.client`.

Simulated transactions get ids ``sim-<shift>-<run>-<n>`` so that their rows in the prediction
log can be picked out exactly; customers and merchants are real ones the online store knows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from fraud_platform.contracts import REQUEST_FIELDS

if TYPE_CHECKING:
    from fraud_platform.settings import GenerateParams

Shift = Literal["amount", "night", "burst", "none"]
SHIFTS: tuple[str, ...] = ("amount", "night", "burst", "none")
AMOUNT_FACTOR = 5.0
NIGHT_SQUEEZE = 4  # 24 h of times of day into 6 h
BURST_LENGTH = 20  # transactions per card-testing run
BURST_GAP_SECONDS = (3, 40)  # seconds between two attempts of one run
BURST_AMOUNTS = (0.5, 3.0)  # card testers probe with small amounts
DAY = pd.Timedelta(days=1)


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


def generated_period(
    transactions: pd.DataFrame,
    params: GenerateParams,
    seed: int,
    *,
    n_customers: int | None = None,
) -> int | None:
    """The period length in days when the transactions are exactly the generator's output.

    ``fraud data generate`` may override ``n_customers`` and ``days`` and stores neither, so
    both are inferred (customers from ``n_customers`` or the distinct customers, days from the
    span after ``start_date``; the warm-up before it is not part of the period) and confirmed
    by regenerating with ``seed`` and comparing.

    Args:
        transactions: Raw transactions.
        params: ``params.yaml``'s ``generate`` section.
        seed: The generator's seed (``params.yaml``'s ``seed``).
        n_customers: Customers in the raw customers table, when known.

    Returns:
        ``days`` of the generated period, or ``None`` when the data is not reproducible by the
        generator (imported, or generated with other parameters or another seed).
    """
    from data.generate import generate

    if transactions.empty:
        return None
    times = pd.to_datetime(transactions["timestamp"], utc=True)
    start = pd.Timestamp(params.start_date, tz="UTC")
    if times.min() < start - params.warmup_days * DAY:  # the warm-up precedes the period
        return None
    days = int((times.max() - start) // DAY) + 1
    customers = n_customers or int(transactions["customer_id"].nunique())
    try:
        copy = generate(params, seed, n_customers=customers, days=days)["transactions"]
    except ValueError:
        return None
    if len(copy) != len(transactions):
        return None
    ours = transactions.assign(timestamp=times).sort_values(
        ["timestamp", "transaction_id"], kind="stable"
    )
    for column in ("transaction_id", "customer_id", "merchant_id", "amount"):
        if not np.array_equal(ours[column].to_numpy(), copy[column].to_numpy()):
            return None
    same_times = ours["timestamp"].dt.floor("us").to_numpy() == copy["timestamp"].to_numpy()
    return days if bool(np.all(same_times)) else None


FRAUD_EVENTS = frozenset({"card_testing", "account_takeover", "new_account"})  # bursts


def drop_fraud_events(transactions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The transactions without the generator's fraud events (:data:`FRAUD_EVENTS`).

    A window is a day or so, and a day holds a handful of whole fraud events: one
    card-testing burst of 40 attempts at 2 a.m. is 1.6 % of a day at the default scale and
    moves ``hour_of_day``, ``is_night`` and the velocity counts of that day on its own, so
    the control would pass or fail with the luck of the day. Over the whole period they are
    about 1 % of the reference, below what the tests see in a window of this size.
    ``compromised_merchant`` rows look ordinary by design and stay.

    Args:
        transactions: Raw transactions.
        labels: Raw labels with ``fraud_pattern`` (otherwise nothing is dropped).

    Returns:
        The remaining transactions.
    """
    if not {"transaction_id", "fraud_pattern"} <= set(labels):
        return transactions
    events = labels.loc[labels["fraud_pattern"].isin(FRAUD_EVENTS), "transaction_id"]
    return transactions[~transactions["transaction_id"].isin(events)].reset_index(drop=True)


def continuation_window(
    transactions: pd.DataFrame,
    *,
    period_days: int,
    after: pd.Timestamp | None = None,
    rows: int | None = None,
    seed: int = 0,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Whole days of the generating process continued after the data (see the module docstring).

    The continuation of a generated period is the period again, moved forward by whole periods:
    day ``d`` (counted from the data start) is the data's day ``d % period_days`` moved by
    ``d // period_days`` periods. The window is the first day after both the data end and
    ``after``, plus following days until it holds at least ``rows`` transactions.

    Args:
        transactions: The generator's raw transactions (:func:`generated_period` says so).
        period_days: The generated period's length in days.
        after: The window starts on a UTC day after this one (the latest event the online state
            may hold); the data end if ``None`` or earlier.
        rows: At least this many transactions, in whole days; one whole day if ``None``. Fewer
            than one day's volume keeps whole days of a random subset of customers, which
            leaves merchants with part of their traffic (a note says so).
        seed: Seed of that customer subset.
        notes: Caveats about the window are appended here.

    Returns:
        The transactions (raw columns, original ids), in ``(timestamp, transaction_id)`` order.

    Raises:
        SimulationError: If there are no transactions.
    """
    if transactions.empty:
        raise SimulationError("no transactions to continue")
    frame = transactions.assign(timestamp=pd.to_datetime(transactions["timestamp"], utc=True))
    anchor = frame["timestamp"].max()
    # The period is the data's last period_days days: the generator's warm-up before it (no
    # fraud, no card opening) has negative day numbers and is never continued.
    start = anchor.floor("D") - (period_days - 1) * DAY
    if after is not None:
        after = pd.Timestamp(after)
        anchor = max(anchor, after.tz_localize("UTC") if after.tzinfo is None else after)
    day_of = ((frame["timestamp"] - start) // DAY).astype(int)
    day = max(period_days, int((anchor - start) // DAY) + 1)
    parts: list[pd.DataFrame] = []
    total = 0
    while not parts or (rows is not None and total < rows):
        source = frame[day_of == day % period_days]
        moved = source.assign(
            timestamp=source["timestamp"] + (day // period_days) * period_days * DAY
        )
        parts.append(moved)
        total += len(moved)
        day += 1
        if len(parts) > 10 * period_days:  # an empty period: nothing to accumulate
            break
    window = pd.concat(parts, ignore_index=True).sort_values(
        ["timestamp", "transaction_id"], kind="stable"
    )
    if rows is not None and len(parts) == 1 and rows < len(window):
        if notes is not None:
            notes.append(
                f"--rows {rows} is less than one day of traffic ({len(window)} transactions): "
                "replaying a subset of customers, so merchant_txn_count_24h runs low; "
                "leave --rows out for a whole day"
            )
        window = sample_customers(window, rows, seed=seed)
    return window.reset_index(drop=True)


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


DEFAULT_REPLAY_ROWS = 1000  # window size of the fallback replay when no --rows is given


def base_window(
    transactions: pd.DataFrame,
    *,
    rows: int | None,
    after: pd.Timestamp | None = None,
    seed: int = 0,
    period_days: int | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """The unshifted transactions a run's windows are built from.

    Args:
        transactions: Raw transactions to continue (generated data) or replay (imported).
        rows: About this many transactions; one whole day of the continuation if ``None``
            (:data:`DEFAULT_REPLAY_ROWS` for a replay).
        after: The latest event the online state may hold (continuation only: the window is
            the first whole day after it).
        seed: Seed of a customer subset.
        period_days: The generated period (:func:`generated_period`): continue the process
            (:func:`continuation_window`); ``None`` samples customers of the last day, to be
            moved forward by :func:`simulated_window`.
        notes: Caveats about the window are appended here.

    Returns:
        Raw transactions (original ids), in time order.
    """
    if period_days is not None:
        return continuation_window(
            transactions, period_days=period_days, after=after, rows=rows, seed=seed, notes=notes
        )
    day = last_day(transactions)
    return sample_customers(day, DEFAULT_REPLAY_ROWS if rows is None else rows, seed=seed)


def simulated_window(
    transactions: pd.DataFrame,
    *,
    rows: int | None,
    shift: str,
    after: pd.Timestamp | None = None,
    run_tag: str,
    seed: int = 0,
    period_days: int | None = None,
    notes: list[str] | None = None,
    base: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Build one window of simulated traffic (see the module docstring).

    The shift is applied to the base window, which is then moved forward by whole days when it
    does not start after ``after`` and the data end. Passing the control window's ``base`` to
    the shifted one makes both the very same transactions, the shifted ones a day later: what
    the data happened to hold that day (a fraud burst at night, say) is in both, and only what
    the shift touches differs.

    Args:
        transactions: Raw transactions to continue (generated data) or replay (imported).
        rows: About this many transactions (see :func:`base_window`).
        shift: One of :data:`SHIFTS`.
        after: The window starts after this time (and after the data end); the data end if
            ``None``.
        run_tag: Goes into the transaction ids, to tell runs apart.
        seed: Seed of the customer subset and the burst pattern.
        period_days: The generated period, from :func:`generated_period`: continue the process.
            ``None`` replays the last day moved by whole days.
        notes: Caveats about the window are appended here.
        base: The unshifted transactions (:func:`base_window`); built here if ``None``.

    Returns:
        Requests as rows: ``transaction_id``, ``customer_id``, ``merchant_id``, ``timestamp``,
        ``amount``, ``lat``, ``long``, in time order.
    """
    if base is None:
        base = base_window(
            transactions, rows=rows, after=after, seed=seed, period_days=period_days, notes=notes
        )
    anchor = pd.to_datetime(transactions["timestamp"], utc=True).max()
    if after is not None:
        after = pd.Timestamp(after)
        anchor = max(anchor, after.tz_localize("UTC") if after.tzinfo is None else after)
    # Shift first, then move: the night squeeze can move a time earlier within its day.
    window = apply_shift(base, shift, seed=seed)
    if window["timestamp"].min() <= anchor:
        window = retime(window, anchor)
    ids = [f"sim-{shift}-{run_tag}-{i:06d}" for i in range(len(window))]
    return window.assign(transaction_id=ids)[list(REQUEST_FIELDS)]


def utc_run_tag(now: datetime | None = None) -> str:
    """A compact UTC time stamp for transaction ids."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
