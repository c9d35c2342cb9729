"""The velocity features: one row each, a windowed aggregation of a card's or a merchant's events.

Add a feature by adding a row (then ``fraud features build``, ``apply``, ``materialize`` and a
retrain), and serve it from a new service version in :mod:`feature_repo.services`: every path
derives from the rows (the stored state, the offline build, the online fold, the request-time
evaluation, the Feast views, the reference of the tests, the documentation's table).

A row is ``Aggregation(name, entity, column, operation, window, description)``: ``operation``
(count, sum, max, mean, distinct_count, last) over ``column`` of the entity's transactions in the
sawtooth window ``[floor(t - window, tile), t)``, strictly before the request time t; the tile is
5 minutes for windows under 12 hours, 1 hour under 12 days, 1 day beyond. The exact semantics
are in :mod:`feature_engine.declarations`.
"""

from __future__ import annotations

from feature_engine.declarations import DAY, HOUR, MONTH, WEEK, Aggregation, VelocityTable

# The one table. Order matters only for the model's column order (customer rows first).
VELOCITY = VelocityTable(
    "velocity_v1",
    (
        Aggregation(
            "txn_count_1h", "customer", "transaction", "count", HOUR,
            "the card's transactions in the last hour",
        ),
        Aggregation(
            "txn_count_24h", "customer", "transaction", "count", DAY,
            "the card's transactions in the last 24 hours",
        ),
        Aggregation(
            "amount_sum_1h", "customer", "amount", "sum", HOUR,
            "the card's spending in the last hour",
        ),
        Aggregation(
            "amount_sum_24h", "customer", "amount", "sum", DAY,
            "the card's spending in the last 24 hours",
        ),
        Aggregation(
            "amount_max_24h", "customer", "amount", "max", DAY,
            "the card's largest amount in the last 24 hours",
        ),
        Aggregation(
            "distinct_merchants_24h", "customer", "merchant_id", "distinct_count", DAY,
            "merchants the card paid in the last 24 hours",
        ),
        Aggregation(
            "merchant_txn_count_24h", "merchant", "transaction", "count", DAY,
            "the merchant's transactions in the last 24 hours (all cards)",
        ),
    )
)  # fmt: skip

# Version 2: v1's rows plus longer windows and more merchant rows. v1 stays servable beside it.
VELOCITY_V2 = VELOCITY.with_rows(
    "velocity_v2",
    Aggregation(
        "txn_count_7d", "customer", "transaction", "count", WEEK,
        "the card's transactions in the last 7 days",
    ),
    Aggregation(
        "amount_sum_7d", "customer", "amount", "sum", WEEK,
        "the card's spending in the last 7 days",
    ),
    Aggregation(
        "distinct_merchants_7d", "customer", "merchant_id", "distinct_count", WEEK,
        "merchants the card paid in the last 7 days",
    ),
    Aggregation(
        "amount_mean_30d", "customer", "amount", "mean", MONTH,
        "the card's mean amount over the last 30 days (rolling, daily tiles)",
    ),
    Aggregation(
        "merchant_txn_count_1h", "merchant", "transaction", "count", HOUR,
        "the merchant's transactions in the last hour (all cards)",
    ),
    Aggregation(
        "merchant_amount_sum_24h", "merchant", "amount", "sum", DAY,
        "the merchant's takings in the last 24 hours (all cards)",
    ),
    # The merchant's own baseline, so a breach shows as a change against it before its
    # chargebacks arrive (feature_repo/derived.py compares the short windows with these).
    Aggregation(
        "merchant_txn_count_30d", "merchant", "transaction", "count", MONTH,
        "the merchant's transactions in the last 30 days (all cards, daily tiles)",
    ),
    Aggregation(
        "merchant_amount_mean_30d", "merchant", "amount", "mean", MONTH,
        "the merchant's mean amount over the last 30 days (all cards, daily tiles)",
    ),
    Aggregation(
        "merchant_distinct_customers_1h", "merchant", "customer_id", "distinct_count", HOUR,
        "cards that paid the merchant in the last hour",
    ),
)  # fmt: skip
