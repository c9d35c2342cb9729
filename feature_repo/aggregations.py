"""The velocity features, declared once as data: :data:`VELOCITY`, one row per aggregation.

Add a feature here and every path derives it: the stored state's columns and window
(:mod:`feature_repo.logic`), the offline state build (:mod:`feature_repo.pipeline`), the online
fold (``logic.merge_transaction``), the request-time evaluation (``logic.features_for_request``),
the Feast views and service (:mod:`feature_repo.definitions`), the drift expectations of the
simulator (``simulation/verdict.py``), the brute-force reference of the tests
(``tests/support/reference.py``) and the README's feature table (:func:`markdown_table`, checked
by ``tests/unit/features/test_aggregations.py``).

Exact semantics of a row ``(name, entity, column, operation, window)`` for a request of card
*c* at merchant *m* at time *t* (UTC, microseconds), with the row's tile ``g``
(:func:`tile_for`, Chronon's rule: 5 minutes for windows under 12 hours, 1 hour under 12 days,
1 day beyond):

- the *entity's events*: *c*'s transactions for ``customer`` rows, *m*'s for ``merchant`` rows;
- the row's window is *sawtooth*: ``[floor(t - window, g), t)``, the start rounded down to a
  multiple of ``g`` (UTC, from the epoch), the end exact. It covers between ``window`` and
  ``window + g``. Strictly earlier: the scored transaction and its same-second peers are never
  counted. There is no cap: every event of the window counts, at any volume;
- the row's value: ``operation`` over ``column`` of the entity's events in that window.

Why sawtooth: an exact start would need every raw event of the window at request time (the start
moves with t), so the read would grow with the entity's volume. Rounding the start to the tile
lets the state keep whole tiles of partial aggregates (count, sum, max, last) for everything
older than the lateness region, and raw events only for the last ``max_lateness`` (where a late
request may put its exact end): the read is bounded by the tile count plus the events of one
lateness region, whatever the volume (:mod:`feature_repo.tiles`).

``distinct_count`` keeps, for the part of the window older than the raw events, each value's
latest time; at most ``features.distinct_values_cap`` values (the most recent) are kept, so a
window with more distinct values than that before its raw events counts a lower bound.

Operations (:data:`OPERATIONS`), and the value of an empty window:

========================  ============================================  ==============
operation                 value                                         empty window
========================  ============================================  ==============
``count``                 number of events                              0
``sum``                   sum of ``column``, in (timestamp, id) order   0.0
``max``                   largest ``column``                            0.0
``mean``                  ``sum / count``                               unknown (NaN)
``distinct_count``        number of distinct ``column`` values          0
``last``                  ``column`` of the latest event                unknown (NaN)
========================  ============================================  ==============

This module is pure data and arithmetic: no I/O, no Feast, nothing imported from the platform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

Entity = Literal["customer", "merchant"]
Operation = Literal["count", "sum", "max", "mean", "distinct_count", "last"]

MICROS_PER_SECOND = 1_000_000
# The columns an aggregation may read, per entity: what a transaction carries besides its
# time and id. ``transaction`` means "the event itself" (for ``count``).
ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": ("transaction", "amount", "merchant_id"),
    "merchant": ("transaction", "amount", "customer_id"),
}
# Stored column kind per input column (the state arrays' Feast value types).
COLUMN_KINDS = {"amount": "float64[]", "merchant_id": "string[]", "customer_id": "string[]"}
# Operation -> (output type, value of an empty window).
OPERATIONS: dict[str, tuple[type, float | int]] = {
    "count": (int, 0),
    "sum": (float, 0.0),
    "max": (float, 0.0),
    "mean": (float, math.nan),
    "distinct_count": (int, 0),
    "last": (float, math.nan),
}
# Operations that need a column (all but count, which counts events).
_NEED_COLUMN = frozenset(OPERATIONS) - {"count"}

# Tile sizes, Chronon's rule (its "hop" sizes): a window's start is rounded down to its tile.
TILE_5_MINUTES = timedelta(minutes=5)
TILE_HOUR = timedelta(hours=1)
TILE_DAY = timedelta(days=1)
TILE_LABELS = {TILE_5_MINUTES: "5m", TILE_HOUR: "1h", TILE_DAY: "1d"}
# The finest tile: the raw region starts on it and the offline state has one row per entity and
# 5-minute tile with events (feature_repo/pipeline.py), so the lateness must be at least this.
FINEST_TILE_US = int(TILE_5_MINUTES.total_seconds()) * MICROS_PER_SECOND
# What a tile of partial aggregates keeps, per operation over ``amount`` (count: always kept).
TILE_METRICS: dict[str, tuple[str, ...]] = {
    "count": (),
    "sum": ("amount_sum",),
    "mean": ("amount_sum",),
    "max": ("amount_max",),
    "last": ("amount_last",),
    "distinct_count": (),  # kept as value -> latest time instead (VelocityTable.distinct_columns)
}


def tile_for(window: timedelta) -> timedelta:
    """The tile a window's start is rounded down to: 5 min under 12 h, 1 h under 12 d, else 1 d."""
    if window < timedelta(hours=12):
        return TILE_5_MINUTES
    if window < timedelta(days=12):
        return TILE_HOUR
    return TILE_DAY


@dataclass(frozen=True)
class Aggregation:
    """One velocity feature: an operation over a column of an entity's events in a window.

    Attributes:
        name: The feature's name (the model's column).
        entity: ``customer`` (the card) or ``merchant``.
        column: The input column: ``transaction`` (count events), ``amount``, ``merchant_id``
            (customer rows) or ``customer_id`` (merchant rows).
        operation: One of :data:`OPERATIONS`.
        window: The window length: the feature aggregates ``[t - window, t)``.
        description: One line for the README's feature table.
    """

    name: str
    entity: Entity
    column: str
    operation: Operation
    window: timedelta
    description: str

    def __post_init__(self) -> None:
        if self.entity not in ENTITY_COLUMNS:
            raise ValueError(f"{self.name}: unknown entity {self.entity!r}")
        if self.column not in ENTITY_COLUMNS[self.entity]:
            raise ValueError(
                f"{self.name}: a {self.entity} aggregation reads one of "
                f"{ENTITY_COLUMNS[self.entity]}, not {self.column!r}"
            )
        if self.operation not in OPERATIONS:
            raise ValueError(f"{self.name}: unknown operation {self.operation!r}")
        if self.operation in _NEED_COLUMN and self.column == "transaction":
            raise ValueError(f"{self.name}: {self.operation} needs a column, not 'transaction'")
        if self.operation in ("sum", "max", "mean") and self.column != "amount":
            raise ValueError(f"{self.name}: {self.operation} needs a numeric column (amount)")
        if self.window <= timedelta(0) or self.window % timedelta(seconds=1):
            raise ValueError(f"{self.name}: the window must be a positive whole number of seconds")

    @cached_property
    def window_us(self) -> int:
        """The window length in microseconds."""
        return int(self.window.total_seconds()) * MICROS_PER_SECOND

    @cached_property
    def tile_us(self) -> int:
        """The row's tile in microseconds: its window starts at ``floor(t - window, tile)``."""
        return int(tile_for(self.window).total_seconds()) * MICROS_PER_SECOND

    def window_start_us(self, t_us: int) -> int:
        """The sawtooth window's start for a request at t: ``floor(t - window, tile)``."""
        return (t_us - self.window_us) // self.tile_us * self.tile_us

    @property
    def output_type(self) -> type:
        """``int`` for counts, ``float`` otherwise."""
        return OPERATIONS[self.operation][0]

    def evaluate(self, values: Sequence[Any]) -> float | int:
        """The aggregation over the window's values, in (timestamp, id) order.

        Args:
            values: The ``column`` of the window's events (anything, for ``count``).

        Returns:
            The feature's value; the empty-window value of :data:`OPERATIONS` when empty.
        """
        if not values:
            return OPERATIONS[self.operation][1]
        if self.operation == "count":
            return len(values)
        if self.operation == "sum":
            return sum(values, 0.0)
        if self.operation == "max":
            return float(max(values))
        if self.operation == "mean":
            return sum(values, 0.0) / len(values)
        if self.operation == "distinct_count":
            return len(set(values))
        return float(values[-1])  # last


@dataclass(frozen=True)
class VelocityTable:
    """The declaration table and what every path derives from it.

    Attributes:
        name: What the on-demand view calls it by (:func:`velocity_table`).
        rows: The aggregations, in the model's column order.
    """

    name: str
    rows: tuple[Aggregation, ...]
    # Derived once here, read on every request (the on-demand view evaluates per row).
    _by_entity: dict[str, tuple[Aggregation, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _windows_us: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        names = [row.name for row in self.rows]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"velocity features declared twice: {duplicated}")
        for entity in ENTITY_COLUMNS:
            rows = tuple(row for row in self.rows if row.entity == entity)
            self._by_entity[entity] = rows
            # How far back a window reaches: floor(t - window, tile) >= t - window - tile.
            self._windows_us[entity] = max((row.window_us + row.tile_us for row in rows), default=0)
        object.__setattr__(self, "_hash", hash((self.name, self.rows)))

    def __hash__(self) -> int:
        return self._hash

    def of(self, entity: str) -> tuple[Aggregation, ...]:
        """The rows of one entity, in declaration order."""
        return self._by_entity[entity]

    def columns(self, entity: str) -> tuple[str, ...]:
        """The input columns the entity's state must keep, in :data:`ENTITY_COLUMNS` order."""
        used = {row.column for row in self.of(entity)} - {"transaction"}
        return tuple(c for c in ENTITY_COLUMNS[entity] if c in used)

    def state_window_us(self, entity: str) -> int:
        """How far back the entity's windows reach: the largest ``window + tile`` of its rows.

        No window of a request at t starts before ``t - state_window_us``.
        """
        return self._windows_us[entity]

    def tiles_us(self, entity: str) -> tuple[int, ...]:
        """The tile sizes the entity's rows use (µs), finest first: one tile level each."""
        return tuple(sorted({row.tile_us for row in self.of(entity)}))

    def tile_metrics(self, entity: str, tile_us: int) -> tuple[str, ...]:
        """The partial aggregates a tile level keeps besides the count, in a fixed order."""
        wanted = {m for row in self.of(entity) if row.tile_us == tile_us
                  for m in TILE_METRICS[row.operation]}  # fmt: skip
        return tuple(m for m in ("amount_sum", "amount_max", "amount_last") if m in wanted)

    def tile_horizon_us(self, entity: str, tile_us: int) -> int:
        """The longest window of the entity's rows on that tile level."""
        return max(row.window_us for row in self.of(entity) if row.tile_us == tile_us)

    def distinct_columns(self, entity: str) -> tuple[str, ...]:
        """The columns the entity's ``distinct_count`` rows read (:data:`ENTITY_COLUMNS` order)."""
        used = {row.column for row in self.of(entity) if row.operation == "distinct_count"}
        return tuple(c for c in ENTITY_COLUMNS[entity] if c in used)

    def earliest_start_us(self, entity: str, at_us: int, column: str | None = None) -> int:
        """The earliest window start of a request at ``at_us`` (or later), over the entity's rows.

        Args:
            entity: ``customer`` or ``merchant``.
            at_us: The request time (windows of later requests start no earlier).
            column: Only the ``distinct_count`` rows over this column; all rows when ``None``.
        """
        rows = [
            r
            for r in self.of(entity)
            if column is None or (r.operation == "distinct_count" and r.column == column)
        ]
        return min(row.window_start_us(at_us) for row in rows)

    def with_rows(self, name: str, *rows: Aggregation) -> VelocityTable:
        """This table with more rows, under another name (a fixture proving a row is covered)."""
        return VelocityTable(name, (*self.rows, *rows))


def state_array(entity: str, column: str) -> str:
    """The state field holding a column of the entity's retained events (``c_amounts``...)."""
    return f"{entity[0]}_{column}s"


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

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

WEEK = timedelta(days=7)
MONTH = timedelta(days=30)

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
)  # fmt: skip

# The feature services, by name: each serves its table's rows through its own on-demand view.
# A model records the service it was trained on; the API serves that service. Bump the version
# on any change of a service's feature list or semantics; keep the old service while models
# trained on it are served.
FEATURE_SERVICE_NAME = "fraud_scoring_v1"  # the default: training's unless params say otherwise
SERVICE_TABLES: dict[str, VelocityTable] = {
    "fraud_scoring_v1": VELOCITY,
    "fraud_scoring_v2": VELOCITY_V2,
}

# Every declaration table a process knows, by name. Feast rebuilds the on-demand view's
# function from its source text in every process that reads the registry, so the function names
# its table (``velocity_table("velocity_v1")``) instead of holding it.
_TABLES: dict[str, VelocityTable] = {table.name: table for table in SERVICE_TABLES.values()}


def union(name: str, *tables: VelocityTable) -> VelocityTable:
    """One table holding every row of the given ones (a row declared in several: once).

    The stored state is built for the union of the services' tables, so that every service
    reads its own rows from the same state.

    Raises:
        ValueError: If two tables declare different rows under one name.
    """
    rows: dict[str, Aggregation] = {}
    for table in tables:
        for row in table.rows:
            if rows.setdefault(row.name, row) != row:
                raise ValueError(f"{row.name} is declared differently in two tables")
    return VelocityTable(name, tuple(rows.values()))


# What the stored state keeps: every row of every service.
STATE_VELOCITY = union("velocity_state", *SERVICE_TABLES.values())


def velocity_table(name: str) -> VelocityTable:
    """The declaration table of that name.

    Raises:
        KeyError: If no table of that name is registered in this process.
    """
    try:
        return _TABLES[name]
    except KeyError:
        raise KeyError(f"no velocity table named {name!r}; known: {sorted(_TABLES)}") from None


def register_table(table: VelocityTable) -> VelocityTable:
    """Make a table known to :func:`velocity_table` in this process (a test fixture's table)."""
    existing = _TABLES.setdefault(table.name, table)
    if existing != table:
        raise ValueError(f"another velocity table is already named {table.name!r}")
    return table


def _window_text(window: timedelta) -> str:
    """``24h``, ``7d``, ``15min``: days from two days up, hours below."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def markdown_table(services: Mapping[str, VelocityTable] | None = None) -> str:
    """The README's velocity feature table (between its ``velocity-table`` markers).

    Args:
        services: Feature service -> its declaration table; :data:`SERVICE_TABLES` by default.

    Returns:
        A Markdown table, one line per aggregation of any service (with the services that
        serve it), ending with a newline.
    """
    services = SERVICE_TABLES if services is None else services
    lines = [
        "| feature | entity | operation | column | window | services | description |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in union("all", *services.values()).rows:
        column = "" if row.column == "transaction" else f"`{row.column}`"
        serving = ", ".join(
            name.removeprefix("fraud_scoring_") for name, t in services.items() if row in t.rows
        )
        lines.append(
            f"| `{row.name}` | {row.entity} | {row.operation} | {column} | "
            f"`[floor(t - {_window_text(row.window)}, {_window_text(tile_for(row.window))}), t)` "
            f"| {serving} | {row.description} |"
        )
    return "\n".join(lines) + "\n"
