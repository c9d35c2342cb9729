"""Brute-force reference of every feature, written straight from the definitions.

Deliberately naive: for each request it scans the whole raw history. It shares no code with
the platform (not even the haversine of ``fraud_platform.geo``), so an error in the platform
cannot hide here.

Definitions (README "Feature semantics"), for a request of customer c at merchant m, time t:
- window(c, t): the `cap` most recent (by timestamp, then transaction id) of c's transactions
  in [t - 24h, t), strictly before t. 24 h features aggregate it; 1 h features aggregate its
  members inside [t - 1h, t). With fewer than `cap` transactions a day, that is all of them.
- amount_to_avg_30d: amount / mean amount of c over the UTC days [day(t) - 30, day(t)); NaN
  (unknown) when there is none.
- amount_no_baseline: the amount when amount_to_avg_30d has no baseline, else 0.
- seconds_since_last_txn: t minus the latest earlier transaction (ties: largest id), capped at
  30 days; NaN when there is none. km_per_hour_from_last_txn: distance to it / max(that, 60 s);
  NaN when there is none.
- distance_from_home_km: from the cardholder's home; NaN for a card without one (unknown).
- merchant_txn_count_24h: like txn_count_24h over m's transactions, with the merchant cap.
- merchant_fraud_rate_30d: frauds / labels among m's labels whose label_timestamp falls in the
  UTC days [day(t) - 30, day(t)) (so known strictly before t); 0 when none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

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


def _window(rows: list[tuple[int, str]], t: int, cap: int) -> list[tuple[int, str]]:
    """The `cap` most recent (timestamp, id) of the rows in [t - 24h, t)."""
    return sorted(r for r in rows if t - DAY <= r[0] < t)[-cap:]


class Reference:
    """Answers feature requests from raw tables by brute force."""

    def __init__(
        self,
        transactions: pd.DataFrame,
        labels: pd.DataFrame,
        customers: pd.DataFrame,
        cap: int,
        merchant_cap: int,
    ) -> None:
        tx = transactions.copy()
        tx["t_us"] = tx["timestamp"].dt.as_unit("us").astype("int64")
        self.tx = list(tx.itertuples(index=False))
        lab = labels.merge(transactions[["transaction_id", "merchant_id"]], on="transaction_id")
        lab["l_us"] = lab["label_timestamp"].dt.as_unit("us").astype("int64")
        self.labels = list(lab.itertuples(index=False))
        self.homes = {r.customer_id: (r.home_lat, r.home_long) for r in customers.itertuples()}
        self.cap = cap
        self.merchant_cap = merchant_cap

    def features(self, q: Request) -> dict[str, float]:
        t = q.t_us
        mine = [x for x in self.tx if x.customer_id == q.customer_id and x.t_us < t]
        by_id = {x.transaction_id: x for x in mine}
        w24 = [
            by_id[tid]
            for _, tid in _window([(x.t_us, x.transaction_id) for x in mine], t, self.cap)
        ]
        w1h = [x for x in w24 if t - HOUR <= x.t_us < t]

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
            (x.t_us, x.transaction_id)
            for x in self.tx
            if x.merchant_id == q.merchant_id and x.t_us < t
        ]
        merchant_24h = _window(theirs, t, self.merchant_cap)
        known = [
            lab.is_fraud
            for lab in self.labels
            if lab.merchant_id == q.merchant_id and today - 30 <= lab.l_us // DAY < today
        ]
        hour = (t // HOUR) % 24
        return {
            "log_amount": math.log1p(q.amount),
            "hour_of_day": hour,
            "is_night": int(hour < 6),
            "txn_count_1h": len(w1h),
            "txn_count_24h": len(w24),
            "amount_sum_1h": sum(x.amount for x in w1h),
            "amount_sum_24h": sum(x.amount for x in w24),
            "amount_max_24h": max((x.amount for x in w24), default=0.0),
            "distinct_merchants_24h": len({x.merchant_id for x in w24}),
            "seconds_since_last_txn": gap,
            "amount_to_avg_30d": amount_to_avg,
            "amount_no_baseline": 0.0 if month else q.amount,
            "distance_from_home_km": from_home,
            "km_per_hour_from_last_txn": speed,
            "merchant_txn_count_24h": len(merchant_24h),
            "merchant_fraud_rate_30d": sum(known) / len(known) if known else 0.0,
            "is_new_customer": int(not mine),
            "is_new_merchant": int(not merchant_24h),
        }


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
