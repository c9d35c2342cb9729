"""Synthetic card transactions with four fraud patterns and late-arriving labels.

Legitimate spending: customers live around a handful of US cities, buy mostly from merchants
in their own city during the day, with amounts around a personal typical amount.

Card lifecycles. Cards open throughout time: ``new_card_share`` of them open during the period
(account-open dates in ``customers.created_at``, uniform over the period), the others years
before it. A card spends from the day after it opens. So that the period's first weeks do not
look like a world of new cards, ``warmup_days`` of ordinary spending (no fraud) are generated
before ``start_date``. Warm-up rows are in the raw tables, so the period's features see a full
past, but they are never training rows: every one belongs to a card opened before the data
starts and looks back before the data's start, which the truncated-history rule of
:mod:`training.dataset` drops (for a warm-up of at most the longest feature window, 30 days).

Fraud comes in four shapes, chosen so that each stresses a different kind of feature:

- ``card_testing``: a burst of 10-40 tiny amounts within a few minutes, some in the very same
  second. Short-window velocity counts catch it, provided same-second ties are handled.
- ``account_takeover``: a few large amounts far from home at merchants the customer never
  used, often at night. Distance, amount ratio and hour features catch it.
- ``compromised_merchant``: from a breach date to the end of the period, a busy merchant
  carries fraud, in one of two styles (``compromised_merchant_style``):

  - ``ordinary`` (the default profile): a share (``compromised_merchant_fraud_share``) of the
    merchant's ordinary transactions are labelled fraud, the way a data set that charges a
    breach's losses to its point of compromise would. Such a row is drawn exactly like the
    legitimate rows of the same merchant and period, so no feature can single it out: even an
    oracle that knows every breach ranks all the merchant's later rows alike, and its
    precision on them is that share (``benchmarks/bench_merchant_ceiling.py`` measures the
    ceiling). Merchant-level features can say *that* a merchant is breached, not *which* row.
  - ``cash_out`` (the ``long_history`` profile): the breached merchant's account is used to
    run stolen cards, as when a merchant's payment credentials or terminal are taken over:
    as many new rows as that share of its traffic, each a card new to the merchant (owned,
    open before the breach, never seen there), used once, in bursts of 2-8 within half an hour
    at any hour, for 2-6 times the merchant's median amount. Its ordinary rows stay
    legitimate. This is the shape merchant-level features (traffic and cards against the
    merchant's own baseline, amounts against its mean) and the card's own history can see.
- ``new_account``: ``new_account_fraud_rate`` of the cards opened during the period are opened
  with a stolen identity. Such a card has no legitimate spending at all: its first purchases
  (2-6 within three days of opening) are large, far from the identity's home, mostly at night.
  Only "no history" features and the request itself can catch the first of them.

The first three hit cards only after they opened. Everything is vectorised over transactions;
Python loops only run over the few hundred fraud victims. The same seed gives identical tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.schema import RAW_TABLES
from data.validate import validate_raw
from fraud_platform.geo import haversine_km
from fraud_platform.settings import GenerateParams

Progress = Callable[[str], None]

SECONDS_PER_DAY = 86_400
FAR_FROM_HOME_KM = 500.0
"""Account-takeover transactions happen further than this from the customer's home."""

# (name, lat, long, weight ~ metro population): homes and merchants cluster around these.
CITIES: tuple[tuple[str, float, float, float], ...] = (
    ("new_york", 40.71, -74.01, 8.0),
    ("los_angeles", 34.05, -118.24, 4.0),
    ("chicago", 41.88, -87.63, 3.0),
    ("houston", 29.76, -95.37, 2.3),
    ("phoenix", 33.45, -112.07, 1.6),
    ("philadelphia", 39.95, -75.17, 1.6),
    ("san_antonio", 29.42, -98.49, 1.4),
    ("san_diego", 32.72, -117.16, 1.4),
    ("dallas", 32.78, -96.80, 1.3),
    ("seattle", 47.61, -122.33, 0.8),
    ("denver", 39.74, -104.99, 0.7),
    ("boston", 42.36, -71.06, 0.7),
    ("nashville", 36.16, -86.78, 0.7),
    ("portland", 45.52, -122.68, 0.65),
    ("detroit", 42.33, -83.05, 0.63),
    ("atlanta", 33.75, -84.39, 0.5),
    ("kansas_city", 39.10, -94.58, 0.5),
    ("miami", 25.76, -80.19, 0.45),
    ("minneapolis", 44.98, -93.27, 0.43),
    ("salt_lake_city", 40.76, -111.89, 0.2),
)
CITY_SPREAD_DEG = 0.15  # ~15 km: a metro area, well inside FAR_FROM_HOME_KM

# Category -> multiplier of the customer's typical amount.
CATEGORIES: dict[str, float] = {
    "grocery": 1.0,
    "gas_transport": 0.8,
    "restaurant": 0.7,
    "retail": 1.3,
    "online_shopping": 1.2,
    "travel": 3.0,
    "entertainment": 0.9,
    "health": 1.1,
    "home": 1.5,
    "personal_care": 0.6,
}

# Relative frequency of each UTC hour of the day for legitimate spending: mostly daytime.
HOUR_WEIGHTS = np.array(
    [0.5, 0.3, 0.2, 0.2, 0.2, 0.4, 1, 2, 3, 4, 5, 5.5, 6, 5.5, 5, 5, 5, 5.5, 6, 5.5, 4.5, 3.5, 2, 1]
)
LOCAL_SHARE = 0.9  # share of legitimate purchases made at merchants of the home city
TYPICAL_AMOUNT_MEDIAN = 40.0
TYPICAL_AMOUNT_SIGMA = 0.6  # spread of typical amounts between customers (log scale)
PURCHASE_AMOUNT_SIGMA = 0.5  # spread of one customer's amounts around their typical (log scale)
MERCHANT_POPULARITY_SIGMA = 1.2
LEGIT_LABEL_JITTER_DAYS = 2.0  # legitimate labels mature over a couple of days, not all at once

CARD_TESTING_TXNS = (10, 40)
CARD_TESTING_AMOUNT = (0.5, 5.0)
CARD_TESTING_SPAN_SECONDS = 240
ACCOUNT_TAKEOVER_TXNS = (3, 8)
ACCOUNT_TAKEOVER_NIGHT_SHARE = 0.75  # fraudsters in another time zone: mostly 0-5h UTC
CARD_TESTING_BURSTS = (1, 2)  # a leaked card is often tested more than once
COMPROMISE_START_SHARE = (0.1, 0.5)  # when the breach starts, as a share of the period
CASH_OUT_BURST_TXNS = (2, 8)  # stolen cards run through a breached merchant in one go
CASH_OUT_SPAN_SECONDS = 1_800  # a burst's purchases fall within half an hour
CASH_OUT_AMOUNT_FACTOR = (2.0, 6.0)  # x the merchant's median ordinary amount
OLD_CARD_AGE_DAYS = (30, 1500)  # cards opened before the warm-up: this long before it
NEW_ACCOUNT_TXNS = (2, 6)
NEW_ACCOUNT_SPAN_SECONDS = 3 * SECONDS_PER_DAY  # the stolen identity is used at once
NEW_ACCOUNT_FIRST_DELAY_SECONDS = (600, 12 * 3600)  # opening -> first fraudulent purchase
NEW_ACCOUNT_AMOUNT_MEDIAN = 1_200.0  # first purchases are big: electronics, gift cards
NEW_ACCOUNT_AMOUNT_SIGMA = 0.6
NEW_ACCOUNT_NIGHT_SHARE = 0.6


def distances_km(lat: float, long: float, lats: np.ndarray, longs: np.ndarray) -> np.ndarray:
    """Great-circle km from one point to many: the platform's one haversine, fraud_platform.geo."""
    return np.fromiter(
        (haversine_km(lat, long, a, b) for a, b in zip(lats.tolist(), longs.tolist(), strict=True)),
        dtype=float,
        count=len(lats),
    )


@dataclass
class _Population:
    """Customers and merchants as plain arrays, indexed by position."""

    home_lat: np.ndarray
    home_long: np.ndarray
    home_city: np.ndarray
    typical_amount: np.ndarray
    activity: np.ndarray  # multiplier of the mean transaction rate
    opened_s: np.ndarray  # account-open time, seconds since the period start (< 0: before)
    stolen_identity: np.ndarray  # bool: opened by a fraudster (new_account), no legit spending
    merchant_lat: np.ndarray
    merchant_long: np.ndarray
    merchant_city: np.ndarray
    merchant_category: np.ndarray  # index into CATEGORIES
    merchant_popularity: np.ndarray


@dataclass
class _Transactions:
    """Transactions as parallel arrays, before ids and sorting."""

    customer: np.ndarray
    merchant: np.ndarray
    second: np.ndarray  # seconds since the period start
    amount: np.ndarray
    pattern: np.ndarray  # index into PATTERN_NAMES

    def __len__(self) -> int:
        return len(self.customer)


PATTERN_NAMES = ("none", "card_testing", "account_takeover", "compromised_merchant", "new_account")
_LEGIT, _CARD_TESTING, _ACCOUNT_TAKEOVER, _COMPROMISED, _NEW_ACCOUNT = range(5)


def _open_times(
    rng: np.random.Generator, n_customers: int, params: GenerateParams, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Account-open times (seconds since the period start) and the stolen-identity cards.

    ``new_card_share`` of the cards (a fixed count, like :func:`_count_hit`) open at a uniform
    time of the period; the others ``OLD_CARD_AGE_DAYS`` before the warm-up starts. Of the new
    ones, ``new_account_fraud_rate`` are opened with a stolen identity.
    """
    n_new = round(params.new_card_share * n_customers)
    new = rng.permutation(n_customers)[:n_new]
    opened = -(
        params.warmup_days * SECONDS_PER_DAY
        + rng.integers(
            OLD_CARD_AGE_DAYS[0] * SECONDS_PER_DAY,
            OLD_CARD_AGE_DAYS[1] * SECONDS_PER_DAY,
            n_customers,
        )
    )
    opened[new] = rng.integers(0, days * SECONDS_PER_DAY, n_new)
    stolen = np.zeros(n_customers, dtype=bool)
    stolen[new[: _count_hit(params.new_account_fraud_rate, n_new)]] = True
    return opened, stolen


def _population(
    rng: np.random.Generator, n_customers: int, params: GenerateParams, days: int
) -> _Population:
    n_merchants = params.n_merchants
    city_lat = np.array([city[1] for city in CITIES])
    city_long = np.array([city[2] for city in CITIES])
    city_p = np.array([city[3] for city in CITIES])
    city_p = city_p / city_p.sum()

    home_city = rng.choice(len(CITIES), size=n_customers, p=city_p)
    opened, stolen = _open_times(rng, n_customers, params, days)
    # Every city gets a merchant first (when there are enough), so locals can shop locally.
    n_seeded = min(n_merchants, len(CITIES))
    merchant_city = np.concatenate(
        [np.arange(n_seeded), rng.choice(len(CITIES), size=n_merchants - n_seeded, p=city_p)]
    )
    return _Population(
        home_lat=city_lat[home_city] + rng.normal(0, CITY_SPREAD_DEG, n_customers),
        home_long=city_long[home_city] + rng.normal(0, CITY_SPREAD_DEG, n_customers),
        home_city=home_city,
        typical_amount=rng.lognormal(
            np.log(TYPICAL_AMOUNT_MEDIAN), TYPICAL_AMOUNT_SIGMA, n_customers
        ),
        activity=rng.gamma(shape=2.0, scale=0.5, size=n_customers),
        opened_s=opened,
        stolen_identity=stolen,
        merchant_lat=city_lat[merchant_city] + rng.normal(0, CITY_SPREAD_DEG, n_merchants),
        merchant_long=city_long[merchant_city] + rng.normal(0, CITY_SPREAD_DEG, n_merchants),
        merchant_city=merchant_city,
        merchant_category=rng.integers(0, len(CATEGORIES), n_merchants),
        merchant_popularity=rng.lognormal(0.0, MERCHANT_POPULARITY_SIGMA, n_merchants),
    )


def _legit_transactions(
    rng: np.random.Generator, pop: _Population, txns_per_day: float, days: int, warmup_days: int
) -> _Transactions:
    """Ordinary spending from the warm-up's start (or the day after the card opened) to the end."""
    # Whole days a card spends on: from the later of the warm-up's first day and the day after
    # it opened; a stolen-identity card has no legitimate owner, so no legitimate spending.
    first_day = np.maximum(-warmup_days, pop.opened_s // SECONDS_PER_DAY + 1)
    active_days = np.where(pop.stolen_identity, 0, np.maximum(days - first_day, 0))
    counts = rng.poisson(txns_per_day * active_days * pop.activity)
    customer = np.repeat(np.arange(len(counts)), counts)
    n = len(customer)

    # Merchant: popularity-weighted, from the home city most of the time.
    merchant = np.empty(n, dtype=np.int64)
    popularity = pop.merchant_popularity
    local = rng.random(n) < LOCAL_SHARE
    customer_city = pop.home_city[customer]
    for city in range(len(CITIES)):
        in_city = np.flatnonzero(pop.merchant_city == city)
        rows = np.flatnonzero(local & (customer_city == city))
        if len(in_city) == 0:
            local[rows] = False  # no merchant there: shop anywhere instead
            continue
        weights = popularity[in_city] / popularity[in_city].sum()
        merchant[rows] = in_city[rng.choice(len(in_city), size=len(rows), p=weights)]
    away = np.flatnonzero(~local)
    merchant[away] = rng.choice(len(popularity), size=len(away), p=popularity / popularity.sum())

    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    day = first_day[customer] + (rng.random(n) * active_days[customer]).astype(np.int64)
    second = day * SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, n)
    category_factor = np.array(list(CATEGORIES.values()))[pop.merchant_category[merchant]]
    amount = pop.typical_amount[customer] * category_factor
    amount = amount * rng.lognormal(0.0, PURCHASE_AMOUNT_SIGMA, n)
    amount = np.maximum(np.round(amount, 2), 0.5)
    return _Transactions(customer, merchant, second, amount, np.full(n, _LEGIT, dtype=np.int8))


def _count_hit(rate: float, population: int) -> int:
    """How many of ``population`` a rate hits: the rounded expectation, at least one if > 0.

    A fixed count instead of a binomial draw keeps the fraud rate of small data sets stable.
    """
    if rate <= 0:
        return 0
    return min(population, max(1, round(rate * population)))


def _card_testing(
    rng: np.random.Generator, victims: np.ndarray, pop: _Population, days: int
) -> _Transactions:
    parts: list[_Transactions] = []
    n_merchants = len(pop.merchant_popularity)
    n_bursts = rng.integers(CARD_TESTING_BURSTS[0], CARD_TESTING_BURSTS[1] + 1, len(victims))
    last_start = days * SECONDS_PER_DAY - CARD_TESTING_SPAN_SECONDS
    for victim in np.repeat(victims, n_bursts):
        if pop.opened_s[victim] >= last_start - 1:
            continue  # opened in the period's last minutes: no time left to test it
        n = int(rng.integers(CARD_TESTING_TXNS[0], CARD_TESTING_TXNS[1] + 1))
        # A card is tested once it exists: after it opened, inside the period.
        start = int(rng.integers(max(0, pop.opened_s[victim]), last_start))
        offsets = np.sort(rng.integers(0, CARD_TESTING_SPAN_SECONDS, n))
        offsets[1] = offsets[0]  # scripts fire in parallel: at least one same-second tie
        merchants = rng.choice(
            n_merchants, size=min(n_merchants, int(rng.integers(1, 4))), replace=False
        )
        parts.append(
            _Transactions(
                customer=np.full(n, victim),
                merchant=rng.choice(merchants, size=n),
                second=start + offsets,
                amount=np.round(rng.uniform(*CARD_TESTING_AMOUNT, n), 2),
                pattern=np.full(n, _CARD_TESTING, dtype=np.int8),
            )
        )
    return _concat(parts)


def _account_takeover(
    rng: np.random.Generator,
    victims: np.ndarray,
    pop: _Population,
    legit: _Transactions,
    days: int,
) -> _Transactions:
    parts: list[_Transactions] = []
    # Which merchants each victim already used, via one sort instead of a scan per victim.
    order = np.argsort(legit.customer, kind="stable")
    bounds = np.searchsorted(legit.customer[order], [victims, victims + 1])
    for victim, lo, hi in zip(victims, bounds[0], bounds[1], strict=True):
        used = np.unique(legit.merchant[order[lo:hi]])
        distance = distances_km(
            pop.home_lat[victim], pop.home_long[victim], pop.merchant_lat, pop.merchant_long
        )
        candidates = np.setdiff1d(np.flatnonzero(distance > FAR_FROM_HOME_KM), used)
        if len(candidates) == 0:
            continue  # too few merchants to find a strange, far one: spare this customer
        # Taken over once it exists: from the day after it opened, inside the period.
        earliest = max(0, int(pop.opened_s[victim] // SECONDS_PER_DAY) + 1)
        if earliest >= max(1, days - 1):
            continue  # opened too late in the period to be taken over in it
        n = int(rng.integers(ACCOUNT_TAKEOVER_TXNS[0], ACCOUNT_TAKEOVER_TXNS[1] + 1))
        first_day = int(rng.integers(earliest, max(1, days - 1)))
        day = np.minimum(first_day + rng.integers(0, 2, n), days - 1)
        night = rng.random(n) < ACCOUNT_TAKEOVER_NIGHT_SHARE
        hour = np.where(night, rng.integers(0, 6, n), rng.integers(6, 24, n))
        typical = pop.typical_amount[victim]
        merchants = rng.choice(
            candidates, size=min(len(candidates), int(rng.integers(1, 4))), replace=False
        )
        parts.append(
            _Transactions(
                customer=np.full(n, victim),
                merchant=rng.choice(merchants, size=n),
                second=day * SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, n),
                amount=np.round(typical * rng.uniform(5, 15, n) + rng.uniform(200, 800, n), 2),
                pattern=np.full(n, _ACCOUNT_TAKEOVER, dtype=np.int8),
            )
        )
    return _concat(parts)


def _new_accounts(rng: np.random.Generator, pop: _Population, days: int) -> _Transactions:
    """The stolen-identity cards' purchases: big, far from home, soon after opening."""
    parts: list[_Transactions] = []
    end = days * SECONDS_PER_DAY
    for victim in np.flatnonzero(pop.stolen_identity):
        distance = distances_km(
            pop.home_lat[victim], pop.home_long[victim], pop.merchant_lat, pop.merchant_long
        )
        candidates = np.flatnonzero(distance > FAR_FROM_HOME_KM)
        if len(candidates) == 0:
            continue  # too few merchants to find a far one
        n = int(rng.integers(NEW_ACCOUNT_TXNS[0], NEW_ACCOUNT_TXNS[1] + 1))
        first = pop.opened_s[victim] + int(rng.integers(*NEW_ACCOUNT_FIRST_DELAY_SECONDS))
        second = first + np.sort(rng.integers(0, NEW_ACCOUNT_SPAN_SECONDS, n))
        second[0] = first
        # Fraudsters in another time zone: most purchases move to 0-5h UTC of their day.
        night = rng.random(n) < NEW_ACCOUNT_NIGHT_SHARE
        day_start = second // SECONDS_PER_DAY * SECONDS_PER_DAY
        night_second = day_start + rng.integers(0, 6 * 3600, n)
        second = np.where(night & (night_second > pop.opened_s[victim]), night_second, second)
        second = np.sort(second[second < end])
        if len(second) == 0:
            continue  # opened too close to the end of the period
        merchants = rng.choice(
            candidates, size=min(len(candidates), int(rng.integers(1, 4))), replace=False
        )
        amount = rng.lognormal(np.log(NEW_ACCOUNT_AMOUNT_MEDIAN), NEW_ACCOUNT_AMOUNT_SIGMA, n)
        parts.append(
            _Transactions(
                customer=np.full(len(second), victim),
                merchant=rng.choice(merchants, size=len(second)),
                second=second,
                amount=np.round(amount[: len(second)], 2),
                pattern=np.full(len(second), _NEW_ACCOUNT, dtype=np.int8),
            )
        )
    return _concat(parts)


def _compromise_merchants(
    rng: np.random.Generator,
    legit: _Transactions,
    pop: _Population,
    params: GenerateParams,
    days: int,
) -> tuple[np.ndarray, _Transactions, dict[int, float]]:
    """The breached merchants' fraud from each one's breach date on, in the configured style.

    ``ordinary``: a share of the merchant's ordinary rows from the breach on are made fraud.
    ``cash_out``: as many new rows as that share would make are stolen cards run through the
    merchant (:func:`_cash_out`); its ordinary rows stay legitimate.

    Returns:
        The patterns of ``legit``, the cash-out rows (empty for ``ordinary``), and each breached
        merchant's breach start (seconds since the period start), by merchant index.
    """
    pattern = legit.pattern.copy()
    n_merchants = len(pop.merchant_popularity)
    count = _count_hit(params.compromised_merchant_rate, n_merchants)
    breaches: dict[int, float] = {}
    parts: list[_Transactions] = []
    if count == 0 or params.compromised_merchant_fraud_share == 0:
        return pattern, _concat(parts), breaches
    # Breaches hit busy merchants more often: draw them by popularity.
    weights = pop.merchant_popularity / pop.merchant_popularity.sum()
    compromised = rng.choice(n_merchants, size=count, replace=False, p=weights)
    period = days * SECONDS_PER_DAY
    for merchant in compromised:
        start = rng.uniform(*COMPROMISE_START_SHARE) * period
        breaches[int(merchant)] = start
        during = np.flatnonzero(
            (legit.merchant == merchant) & (legit.second >= start) & (pattern == _LEGIT)
        )
        hit = during[rng.random(len(during)) < params.compromised_merchant_fraud_share]
        if params.compromised_merchant_style == "ordinary":
            pattern[hit] = _COMPROMISED
        else:
            parts.append(_cash_out(rng, legit, pop, int(merchant), start, len(hit), days))
    return pattern, _concat(parts), breaches


def _cash_out(
    rng: np.random.Generator,
    legit: _Transactions,
    pop: _Population,
    merchant: int,
    start: float,
    count: int,
    days: int,
) -> _Transactions:
    """``count`` purchases of stolen cards run through a breached merchant from ``start`` on.

    Cards new to the merchant (owned cards, open before the breach, that never paid there),
    each used once, in bursts of ``CASH_OUT_BURST_TXNS`` within ``CASH_OUT_SPAN_SECONDS`` at
    any hour (a script does not sleep), for ``CASH_OUT_AMOUNT_FACTOR`` times the merchant's
    median ordinary amount.
    """
    at_merchant = legit.merchant == merchant
    regulars = np.unique(legit.customer[at_merchant])
    pool = np.setdiff1d(np.flatnonzero(~pop.stolen_identity & (pop.opened_s < start)), regulars)
    end = days * SECONDS_PER_DAY
    if count == 0 or len(pool) == 0 or not at_merchant.any():
        return _concat([])
    sizes: list[int] = []
    while sum(sizes) < count:
        sizes.append(int(rng.integers(CASH_OUT_BURST_TXNS[0], CASH_OUT_BURST_TXNS[1] + 1)))
    sizes[-1] -= sum(sizes) - count
    first = int(np.ceil(start))
    burst_start = rng.integers(first, max(first + 1, end - CASH_OUT_SPAN_SECONDS), len(sizes))
    second = np.repeat(burst_start, sizes) + rng.integers(0, CASH_OUT_SPAN_SECONDS, count)
    median = float(np.median(legit.amount[at_merchant]))
    return _Transactions(
        customer=rng.choice(pool, size=count, replace=count > len(pool)),
        merchant=np.full(count, merchant),
        second=np.minimum(second, end - 1).astype(np.int64),
        amount=np.round(median * rng.uniform(*CASH_OUT_AMOUNT_FACTOR, count), 2),
        pattern=np.full(count, _COMPROMISED, dtype=np.int8),
    )


def _concat(parts: list[_Transactions]) -> _Transactions:
    if not parts:
        empty = np.array([], dtype=np.int64)
        return _Transactions(
            empty, empty, empty, np.array([], dtype=float), np.array([], dtype=np.int8)
        )
    return _Transactions(
        customer=np.concatenate([p.customer for p in parts]),
        merchant=np.concatenate([p.merchant for p in parts]),
        second=np.concatenate([p.second for p in parts]),
        amount=np.concatenate([p.amount for p in parts]),
        pattern=np.concatenate([p.pattern for p in parts]),
    )


def _ids(prefix: str, n: int, min_width: int) -> np.ndarray:
    """Zero-padded ids (``t0000001``): fixed width, so text order is numeric order."""
    width = max(min_width, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width)).astype(object)


def _utc(start: pd.Timestamp, seconds: np.ndarray) -> pd.Series:
    """UTC timestamps at microsecond resolution, ``seconds`` after ``start``."""
    micros = start.value // 1000 + seconds.astype(np.int64) * 1_000_000
    return pd.Series(micros.astype("datetime64[us]")).dt.tz_localize("UTC")


def generate(
    params: GenerateParams,
    seed: int,
    *,
    n_customers: int | None = None,
    days: int | None = None,
    progress: Progress | None = None,
    breaches: dict[str, pd.Timestamp] | None = None,
) -> dict[str, pd.DataFrame]:
    """Generate the four raw tables: transactions, labels, customers and merchants.

    Args:
        params: Sizes, fraud rates and label delays (``params.yaml``'s ``generate``).
        seed: Seed of the random generator; the same seed gives identical tables.
        n_customers: Override of ``params.n_customers`` (for benchmarks and tests).
        days: Override of ``params.days``.
        progress: Called with a short message after each stage, e.g. ``print``.
        breaches: When given, filled with each compromised merchant's id -> its breach start
            (UTC): what no table says, for measuring what the data allows
            (``benchmarks/bench_merchant_ceiling.py``).

    Returns:
        Table name -> data frame with exactly the columns of ``data/schema.py``;
        transactions and labels sorted by (timestamp, transaction_id).
    """
    report = progress or (lambda message: None)
    n_customers = params.n_customers if n_customers is None else n_customers
    days = params.days if days is None else days
    if n_customers <= 0 or days <= 0:
        raise ValueError(f"n_customers and days must be > 0, got {n_customers} and {days}")
    start = pd.Timestamp(params.start_date, tz="UTC")
    rng = np.random.default_rng(seed)

    pop = _population(rng, n_customers, params, days)
    n_new = int((pop.opened_s >= 0).sum())
    report(
        f"{n_customers} customers ({n_new} opened during the period, "
        f"{int(pop.stolen_identity.sum())} with a stolen identity), {params.n_merchants} merchants"
    )
    legit = _legit_transactions(
        rng, pop, params.txns_per_customer_per_day, days, params.warmup_days
    )
    warmup_rows = int((legit.second < 0).sum())
    report(
        f"{len(legit):,} legitimate transactions over {days} days "
        f"plus {params.warmup_days} warm-up days ({warmup_rows:,} rows)"
    )

    # Card testing and account takeover hit different customers, so each keeps its signature;
    # cards opened by a fraudster are not someone else's victims.
    n_owned = n_customers - int(pop.stolen_identity.sum())
    n_testing = _count_hit(params.card_testing_rate, n_owned)
    n_takeover = min(_count_hit(params.account_takeover_rate, n_owned), n_owned - n_testing)
    victims = rng.permutation(np.flatnonzero(~pop.stolen_identity))[: n_testing + n_takeover]
    testing = _card_testing(rng, np.sort(victims[:n_testing]), pop, days)
    takeover = _account_takeover(rng, np.sort(victims[n_testing:]), pop, legit, days)
    new_account = _new_accounts(rng, pop, days)
    legit.pattern, cash_out, breached = _compromise_merchants(rng, legit, pop, params, days)
    txns = _concat([legit, testing, takeover, new_account, *([cash_out] if len(cash_out) else [])])
    report(
        f"fraud patterns: {len(testing)} card-testing, {len(takeover)} account-takeover, "
        f"{len(new_account)} new-account rows; {len(breached)} breached merchants "
        f"({params.compromised_merchant_style}"
        + (f", {len(cash_out)} cash-out rows)" if len(cash_out) else ")")
    )

    # A stable sort keeps the generation order among same-second rows, so ids are reproducible.
    order = np.argsort(txns.second, kind="stable")
    customer, merchant = txns.customer[order], txns.merchant[order]
    second, pattern = txns.second[order], txns.pattern[order]
    is_fraud = (pattern != _LEGIT).astype(np.int8)
    timestamp = _utc(start, second)
    customer_ids = _ids("c", n_customers, 5)
    merchant_ids = _ids("m", params.n_merchants, 4)
    transaction_ids = _ids("t", len(txns), 7)
    if breaches is not None:
        # Whole seconds: a row at or after this second is at or after the (fractional) start.
        breaches.update(
            {str(merchant_ids[m]): _utc(start, np.ceil([s]))[0] for m, s in breached.items()}
        )

    transactions = pd.DataFrame(
        {
            "transaction_id": transaction_ids,
            "customer_id": customer_ids[customer],
            "merchant_id": merchant_ids[merchant],
            "timestamp": timestamp,
            "amount": txns.amount[order].astype(np.float64),
            "lat": pop.merchant_lat[merchant],
            "long": pop.merchant_long[merchant],
        }
    )
    labels = pd.DataFrame(
        {
            "transaction_id": transaction_ids,
            "is_fraud": is_fraud,
            "label_timestamp": _utc(start, second + _label_delay_seconds(rng, is_fraud, params)),
            "fraud_pattern": np.array(PATTERN_NAMES, dtype=object)[pattern],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "home_lat": pop.home_lat,
            "home_long": pop.home_long,
            "created_at": _utc(start, pop.opened_s),  # the account-open date
        }
    )
    merchants = pd.DataFrame(
        {
            "merchant_id": merchant_ids,
            "category": np.array(list(CATEGORIES), dtype=object)[pop.merchant_category],
            "lat": pop.merchant_lat,
            "long": pop.merchant_long,
        }
    )
    report(f"{len(transactions):,} transactions, fraud rate {is_fraud.mean():.2%}")
    return {
        "transactions": transactions,
        "labels": labels,
        "customers": customers,
        "merchants": merchants,
    }


def _label_delay_seconds(
    rng: np.random.Generator, is_fraud: np.ndarray, params: GenerateParams
) -> np.ndarray:
    """Whole seconds until each label is known: a chargeback for fraud, maturity otherwise."""
    n = len(is_fraud)
    chargeback_days = rng.uniform(
        params.chargeback_delay_days_min, params.chargeback_delay_days_max, n
    )
    mature_days = params.legit_label_delay_days + rng.uniform(0, LEGIT_LABEL_JITTER_DAYS, n)
    delay_days = np.where(is_fraud == 1, chargeback_days, mature_days)
    # At least one second: a label is never known at its transaction's own instant.
    return np.maximum(np.round(delay_days * SECONDS_PER_DAY), 1).astype(np.int64)


def write_tables(tables: Mapping[str, pd.DataFrame], raw_dir: Path) -> dict[str, Path]:
    """Write the four raw tables as Parquet, all or nothing.

    Each table is validated and converted to its exact schema of ``data/schema.py`` and
    written to a temporary file in ``raw_dir``; only when all four are written are they
    moved into place with ``os.replace``, so readers never see a half-written set.

    Args:
        tables: ``transactions``, ``labels``, ``customers`` and ``merchants`` data frames.
        raw_dir: Destination folder; created if missing.

    Returns:
        Table name -> path written.

    Raises:
        RawDataError: If the tables break the contract; nothing is written then.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    validate_raw(tables)
    raw_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged: dict[str, tuple[Path, Path]] = {}
    try:
        for name, schema in RAW_TABLES.items():
            table = pa.Table.from_pandas(
                tables[name][schema.names], schema=schema, preserve_index=False
            )
            # Pandas metadata would make the file schema differ from the contract.
            table = table.replace_schema_metadata(None)
            final = raw_dir / f"{name}.parquet"
            temporary = raw_dir / f".{name}.parquet.{token}.tmp"
            staged[name] = (temporary, final)
            pq.write_table(table, temporary)
            if not pq.read_schema(temporary).equals(schema):
                raise RuntimeError(f"{temporary}: written schema differs from data/schema.py")
    except BaseException:
        for temporary, _ in staged.values():
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged.values():
        os.replace(temporary, final)
    return {name: final for name, (_, final) in staged.items()}
