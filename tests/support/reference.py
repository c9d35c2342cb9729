"""Brute-force reference of every feature, written straight from the definitions.

Deliberately naive: for each request it scans the whole raw history. It shares no code with
the platform (not even the haversine of ``fraud_platform.geo``), so an error in the platform
cannot hide here.

The velocity features are every row of the service's declaration table (feature_repo.velocity):
the reference iterates the same table, so a new row is covered without touching this file, but
it applies each row's operation itself, from the written definitions. The derived features
(feature_repo.derived) are written out here one by one, from their definitions; a service that
declares a derived feature this file does not define fails loudly (DERIVED below), so a new one
cannot go untested:
- window(row, t): entity e's transactions in [floor(t - window, tile), t), the start rounded
  down to the row's tile (5 min for windows under 12 h, 1 h under 12 days, else 1 day: written
  out here, not imported), strictly before t. No cap: every transaction of the window counts.
- count: how many; sum: in (timestamp, key) order; max: largest (0 when empty); mean: sum /
  count (NaN when empty); distinct_count: distinct values; last: the latest one (NaN if empty).
- amount_to_avg_30d: amount / mean amount of c over the UTC days [day(t) - 30, day(t)); NaN
  (unknown) when there is none.
- amount_no_baseline: the amount when amount_to_avg_30d has no baseline, else 0.
- seconds_since_last_txn: t minus the latest earlier transaction (ties: largest id), capped at
  30 days; NaN when there is none. km_per_hour_from_last_txn: distance to it / max(that, 60 s);
  NaN when there is none.
- distance_from_home_km: from the cardholder's home; NaN for a card without one (unknown).
- is_new_merchant: m has no transaction in any of its rows' windows.
- merchant_fraud_rate_30d: frauds / labels among m's labels whose label_timestamp falls in the
  UTC days [day(t) - 30, day(t)) (so known strictly before t); 0 when none.
  merchant_fraud_rate_7d: the same over the UTC days [day(t) - 7, day(t)).
- merchant_txn_24h_to_30d: m's transactions in [floor(t - 24h, 1h), t) / (its transactions in
  [floor(t - 30d, 1d), t) / 30); NaN when the latter is 0.
- merchant_amount_to_mean_30d: amount / m's mean amount over [floor(t - 30d, 1d), t); NaN when
  it has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from feature_engine.declarations import Aggregation, ServiceTable
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES

HOUR = 3_600_000_000
DAY = 24 * HOUR


@dataclass(frozen=True)
class Request:
    customer_id: str
    merchant_id: str
    t_us: int
    amount: float
    lat: float
    long: float


def _great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    # Spherical law of haversines, written out independently of fraud_platform.geo; the
    # contract's radius (the mean Earth radius, km).
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


def _tile_us(row: Aggregation) -> int:
    """The row's tile: 5 minutes under 12 hours, 1 hour under 12 days, else 1 day."""
    window = row.window.total_seconds()
    seconds = 300 if window < 12 * 3600 else 3600 if window < 12 * 86400 else 86400
    return seconds * 1_000_000


def _window_start(row: Aggregation, t: int) -> int:
    """floor(t - window, tile)."""
    tile = _tile_us(row)
    return (t - int(row.window.total_seconds()) * 1_000_000) // tile * tile


def _aggregate(row: Aggregation, rows: list, t: int) -> float:
    """One declared row over the entity's earlier events (timestamp, key, transaction)."""
    start = _window_start(row, t)
    inside = [x for ts, _, x in sorted(rows, key=lambda r: r[:2]) if start <= ts < t]
    values = [1 if row.column == "transaction" else getattr(x, row.column) for x in inside]
    if row.operation == "count":
        return len(values)
    if row.operation == "distinct_count":
        return len(set(values))
    if row.operation == "sum":
        return sum(values, 0.0)
    if row.operation == "max":
        return max(values, default=0.0)
    if row.operation == "mean":
        return sum(values, 0.0) / len(values) if values else math.nan
    if row.operation == "last":
        return values[-1] if values else math.nan
    raise AssertionError(f"the reference does not know the operation {row.operation!r}")


# Every derived feature this reference defines (Reference.features writes each one out).
DERIVED = frozenset(
    {
        "log_amount", "hour_of_day", "is_night", "seconds_since_last_txn", "amount_to_avg_30d",
        "amount_no_baseline", "distance_from_home_km", "km_per_hour_from_last_txn",
        "merchant_fraud_rate_30d", "is_new_customer", "is_new_merchant",
        "merchant_fraud_rate_7d", "merchant_txn_24h_to_30d", "merchant_amount_to_mean_30d",
        "amount_over_max_24h",  # the test fixture's (tests/support/edge_cases.py)
    }
)  # fmt: skip


class Reference:
    """Answers feature requests from raw tables by brute force."""

    def __init__(
        self,
        transactions: pd.DataFrame,
        labels: pd.DataFrame,
        customers: pd.DataFrame,
        service: ServiceTable = SERVICE_TABLES[FEATURE_SERVICE_NAME],
    ) -> None:
        tx = transactions.copy()
        tx["t_us"] = tx["timestamp"].dt.as_unit("us").astype("int64")
        self.tx = list(tx.itertuples(index=False))
        lab = labels.merge(transactions[["transaction_id", "merchant_id"]], on="transaction_id")
        lab["l_us"] = lab["label_timestamp"].dt.as_unit("us").astype("int64")
        self.labels = list(lab.itertuples(index=False))
        self.homes = {r.customer_id: (r.home_lat, r.home_long) for r in customers.itertuples()}
        self.table = service.velocity
        self.derived = [feature.name for feature in service.derived]
        unknown = sorted(set(self.derived) - DERIVED)
        if unknown:
            raise AssertionError(f"the reference does not define the derived features {unknown}")

    def _velocity(self, entity: str, rows: list[tuple[int, str, object]], t: int) -> tuple:
        """(feature -> value for the entity's declared rows, its events in any row's window)."""
        rows_of = self.table.of(entity)
        earliest = min(_window_start(r, t) for r in rows_of)
        in_any = [r for r in rows if earliest <= r[0] < t]
        return {r.name: _aggregate(r, rows, t) for r in rows_of}, in_any

    def features(self, q: Request) -> dict[str, float]:
        t = q.t_us
        mine = [x for x in self.tx if x.customer_id == q.customer_id and x.t_us < t]
        card, _ = self._velocity("customer", [(x.t_us, x.transaction_id, x) for x in mine], t)

        today = t // DAY
        month = [x.amount for x in mine if today - 30 <= x.t_us // DAY < today]
        amount_to_avg = q.amount / (sum(month) / len(month)) if month else math.nan

        if mine:
            last = max(mine, key=lambda x: (x.t_us, x.transaction_id))
            gap = min((t - last.t_us) / 1e6, 30 * 86400.0)
            speed = _great_circle_km(last.lat, last.long, q.lat, q.long) / max(gap, 60.0) * 3600
        else:
            gap = speed = math.nan  # no history: unknown, not "30 days ago, right here"

        home = self.homes.get(q.customer_id)
        from_home = _great_circle_km(home[0], home[1], q.lat, q.long) if home else math.nan

        theirs = [
            (x.t_us, f"{x.customer_id}\x1f{x.transaction_id}", x)
            for x in self.tx
            if x.merchant_id == q.merchant_id and x.t_us < t
        ]
        merchant, merchant_members = self._velocity("merchant", theirs, t)
        known = [
            lab.is_fraud
            for lab in self.labels
            if lab.merchant_id == q.merchant_id and today - 30 <= lab.l_us // DAY < today
        ]
        known_7d = [
            lab.is_fraud
            for lab in self.labels
            if lab.merchant_id == q.merchant_id and today - 7 <= lab.l_us // DAY < today
        ]
        # The merchant against its own month, written out from the raw rows (not the table's).
        month_start = (t - 30 * DAY) // DAY * DAY
        day_start = (t - DAY) // HOUR * HOUR
        month_amounts = [x.amount for ts, _, x in theirs if month_start <= ts < t]
        day_count = sum(1 for ts, _, _ in theirs if day_start <= ts < t)
        month_mean = sum(month_amounts, 0.0) / len(month_amounts) if month_amounts else math.nan
        hour = (t // HOUR) % 24
        derived = {
            "log_amount": math.log1p(q.amount),
            "hour_of_day": hour,
            "is_night": int(hour < 6),
            "seconds_since_last_txn": gap,
            "amount_to_avg_30d": amount_to_avg,
            "amount_no_baseline": 0.0 if month else q.amount,
            "distance_from_home_km": from_home,
            "km_per_hour_from_last_txn": speed,
            "merchant_fraud_rate_30d": sum(known) / len(known) if known else 0.0,
            "is_new_customer": int(not mine),
            "is_new_merchant": int(not merchant_members),
            "merchant_fraud_rate_7d": sum(known_7d) / len(known_7d) if known_7d else 0.0,
            "merchant_txn_24h_to_30d": (
                day_count / (len(month_amounts) / 30) if month_amounts else math.nan
            ),
            "merchant_amount_to_mean_30d": (
                q.amount / month_mean if month_amounts and month_mean > 0 else math.nan
            ),
        }
        if "amount_over_max_24h" in self.derived:
            day_start = (t - DAY) // HOUR * HOUR  # [floor(t - 24h, 1h), t)
            largest = max((x.amount for x in mine if x.t_us >= day_start), default=0.0)
            derived["amount_over_max_24h"] = q.amount / largest if largest > 0 else math.nan
        return {**card, **merchant, **{name: derived[name] for name in self.derived}}


def requests_frame(requests: Sequence[Request]) -> pd.DataFrame:
    """Requests as raw-schema transaction rows (ids ``q0``, ``q1``...): an entity dataframe."""
    return pd.DataFrame(
        {
            "transaction_id": [f"q{i}" for i in range(len(requests))],
            "customer_id": [q.customer_id for q in requests],
            "merchant_id": [q.merchant_id for q in requests],
            "timestamp": pd.to_datetime([q.t_us for q in requests], unit="us", utc=True),
            "amount": [q.amount for q in requests],
            "lat": [q.lat for q in requests],
            "long": [q.long for q in requests],
        }
    )


def mismatches(
    expected: dict[str, float], actual: dict[str, float], rel: float = 1e-9
) -> list[str]:
    """Names (with both values) of the features that differ: counts exactly, floats to `rel`.

    An unknown value (NaN) matches only an unknown one (NaN, or null through Feast).
    """
    bad = []
    for name, want in expected.items():
        got = actual[name]
        if isinstance(want, float) and math.isnan(want):
            ok = got is None or (isinstance(got, float) and math.isnan(got))
        elif isinstance(want, int) and not isinstance(want, bool):
            ok = got is not None and int(got) == want and float(got) == float(want)
        else:
            ok = got is not None and math.isclose(
                float(got), float(want), rel_tol=rel, abs_tol=1e-9
            )
        if not ok:
            bad.append(f"{name}: expected {want!r}, got {got!r}")
    return bad
