"""The declaration language: velocity rows, derived features and feature services as data.

``feature_repo/`` declares the features with these types (``feature_repo/velocity.py``: one
:class:`Aggregation` row per windowed feature; ``feature_repo/derived.py``: one function per
other feature; ``feature_repo/services.py``: which service serves which). Every path of the
engine derives from those declarations: the stored state's columns and window
(:mod:`feature_engine.state.fields`), the offline state build
(:mod:`feature_engine.offline.pipeline`), the online fold (:mod:`feature_engine.state.fold`),
the request-time evaluation (:mod:`feature_engine.state.request`), the Feast views and services
(``feature_repo/definitions.py``), the drift expectations of the simulator
(``simulation/verdict.py``), the brute-force reference of the tests
(``tests/support/reference.py``) and the documentation's feature tables (:func:`markdown_table`,
:func:`derived_markdown_table`).

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
lateness region, whatever the volume (:mod:`feature_engine.state.tiles`).

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
from collections.abc import Callable, Mapping, Sequence
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
# 5-minute tile with events (feature_engine/offline/pipeline.py), so the lateness must be at least
# this.
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
    # What the per-transaction fold asks for again and again (offline build, online ingestion,
    # the request path): derived from the rows once, keyed by entity (and tile or column).
    _derived: dict[tuple[str, ...], Any] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
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

    def _once(self, key: tuple[Any, ...], derive: Callable[[], Any]) -> Any:
        """``derive()``, computed on the first call for ``key`` only (the rows never change)."""
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = derive()
            return value

    def columns(self, entity: str) -> tuple[str, ...]:
        """The input columns the entity's state must keep, in :data:`ENTITY_COLUMNS` order."""

        def derive() -> tuple[str, ...]:
            used = {row.column for row in self.of(entity)} - {"transaction"}
            return tuple(c for c in ENTITY_COLUMNS[entity] if c in used)

        return self._once(("columns", entity), derive)

    def state_window_us(self, entity: str) -> int:
        """How far back the entity's windows reach: the largest ``window + tile`` of its rows.

        No window of a request at t starts before ``t - state_window_us``.
        """
        return self._windows_us[entity]

    def tiles_us(self, entity: str) -> tuple[int, ...]:
        """The tile sizes the entity's rows use (µs), finest first: one tile level each."""
        return self._once(
            ("tiles", entity), lambda: tuple(sorted({row.tile_us for row in self.of(entity)}))
        )

    def tile_metrics(self, entity: str, tile_us: int) -> tuple[str, ...]:
        """The partial aggregates a tile level keeps besides the count, in a fixed order."""

        def derive() -> tuple[str, ...]:
            wanted = {m for row in self.of(entity) if row.tile_us == tile_us
                      for m in TILE_METRICS[row.operation]}  # fmt: skip
            return tuple(m for m in ("amount_sum", "amount_max", "amount_last") if m in wanted)

        return self._once(("tile_metrics", entity, str(tile_us)), derive)

    def tile_horizon_us(self, entity: str, tile_us: int) -> int:
        """The longest window of the entity's rows on that tile level."""
        return self._once(
            ("tile_horizon", entity, str(tile_us)),
            lambda: max(row.window_us for row in self.of(entity) if row.tile_us == tile_us),
        )

    def distinct_columns(self, entity: str) -> tuple[str, ...]:
        """The columns the entity's ``distinct_count`` rows read (:data:`ENTITY_COLUMNS` order)."""

        def derive() -> tuple[str, ...]:
            used = {row.column for row in self.of(entity) if row.operation == "distinct_count"}
            return tuple(c for c in ENTITY_COLUMNS[entity] if c in used)

        return self._once(("distinct_columns", entity), derive)

    def earliest_start_us(self, entity: str, at_us: int, column: str | None = None) -> int:
        """The earliest window start of a request at ``at_us`` (or later), over the entity's rows.

        Args:
            entity: ``customer`` or ``merchant``.
            at_us: The request time (windows of later requests start no earlier).
            column: Only the ``distinct_count`` rows over this column; all rows when ``None``.
        """
        rows: tuple[Aggregation, ...] = self._once(
            ("window_rows", entity, str(column)),
            lambda: tuple(
                r
                for r in self.of(entity)
                if column is None or (r.operation == "distinct_count" and r.column == column)
            ),
        )
        return min(row.window_start_us(at_us) for row in rows)

    def with_rows(self, name: str, *rows: Aggregation) -> VelocityTable:
        """This table with more rows, under another name (a fixture proving a row is covered)."""
        return VelocityTable(name, (*self.rows, *rows))


def state_array(entity: str, column: str) -> str:
    """The state field holding a column of the entity's retained events (``c_amounts``...)."""
    return f"{entity[0]}_{column}s"


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
MONTH = timedelta(days=30)


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


# ------------------------------------------------------------------ derived features

Placement = Literal["request", "customer", "merchant"]
"""Where a derived feature sits among the model's columns: with the request's own features
(first), after the card's velocity rows, or after the merchant's."""
DriftExpectation = Literal["moves", "may move"]
"""What a simulated traffic shift (``simulation/traffic.py``: ``amount``, ``night``, ``burst``)
does to a feature: it ``moves`` (the drift check must see it) or ``may move`` (either way)."""
DRIFT_SHIFTS = ("amount", "night", "burst")


@dataclass(frozen=True)
class DerivedFeature:
    """A feature that is not a windowed aggregation: one function of the request and the state.

    The function receives a :class:`~feature_engine.state.request.RequestContext`: the request
    (time, amount, place) and what the stored state answers as of the request time (the card's
    latest earlier transaction, its 30-day baseline, its home, the merchant's label rate, the
    velocity rows' values). It runs in the on-demand view, so the value is the same in
    ``get_historical_features``, online and in the tests.

    Attributes:
        name: The feature's name (the model's column); the function's name when declared with
            :func:`derived`.
        dtype: ``int`` or ``float``: the on-demand view's output type.
        compute: The function, ``RequestContext -> value``.
        placement: Where it sits among the model's columns (:data:`Placement`).
        description: One line for the feature table.
        unknown_without_history: The value is unknown (NaN offline, null online) for a card
            without the history it needs, never a default an old card could also have.
        lookback: The earliest instant (µs) the feature looks at for a request at t (µs), when
            it looks further back than t itself: training drops rows whose lookback starts
            before the data does (``training/dataset.py``).
        drift: Simulated shift -> what it does to the feature (:data:`DriftExpectation`);
            a shift not named leaves the feature alone.
    """

    name: str
    dtype: type
    compute: Callable[[Any], float | int] = field(repr=False)
    placement: Placement
    description: str
    unknown_without_history: bool = False
    lookback: Callable[[int], int] | None = field(default=None, repr=False)
    drift: Mapping[str, DriftExpectation] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.dtype not in (int, float):
            raise ValueError(f"{self.name}: dtype must be int or float, not {self.dtype!r}")
        if self.placement not in ("request", "customer", "merchant"):
            raise ValueError(f"{self.name}: unknown placement {self.placement!r}")
        unknown = set(self.drift) - set(DRIFT_SHIFTS)
        if unknown:
            raise ValueError(f"{self.name}: unknown drift shifts {sorted(unknown)}")


def derived(
    dtype: type,
    *,
    placement: Placement,
    unknown_without_history: bool = False,
    lookback: Callable[[int], int] | None = None,
    drift: Mapping[str, DriftExpectation] | None = None,
) -> Callable[[Callable[[Any], float | int]], DerivedFeature]:
    """Declare a derived feature: the decorated function computes it, its name names it.

    The docstring's first line is the feature's description.

    Args:
        dtype: ``int`` or ``float``.
        placement: Where it sits among the model's columns (:data:`Placement`).
        unknown_without_history: Unknown (NaN) for a card without the history it needs.
        lookback: The earliest instant the feature looks at, as a function of t (µs).
        drift: Simulated shift -> what it does to the feature.

    Returns:
        A decorator turning the function into a :class:`DerivedFeature`.
    """

    def declare(function: Callable[[Any], float | int]) -> DerivedFeature:
        doc = (function.__doc__ or "").strip().splitlines()
        return DerivedFeature(
            name=function.__name__,
            dtype=dtype,
            compute=function,
            placement=placement,
            description=doc[0] if doc else function.__name__,
            unknown_without_history=unknown_without_history,
            lookback=lookback,
            drift=dict(drift or {}),
        )

    return declare


@dataclass(frozen=True)
class ServiceTable:
    """The declarations of one feature service: its velocity rows and its derived features.

    A feature service (``fraud_scoring_v1``...) serves exactly these features, in
    :attr:`output_features` order; a changed list is a new service version. The stored state is
    built for the union of every service's velocity rows, so each service reads its own rows
    from the one state.

    Attributes:
        name: The table's name: the on-demand view's function looks the table up by it in every
            process that reads Feast's registry (``feature_repo.services.service_table``).
        velocity: The windowed aggregations.
        derived: The other features.
    """

    name: str
    velocity: VelocityTable
    derived: tuple[DerivedFeature, ...]
    # Derived once here, read on every request.
    _outputs: tuple[tuple[str, type], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        names = [row.name for row in self.velocity.rows] + [f.name for f in self.derived]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"{self.name}: features declared twice: {duplicated}")

        def placed(where: str) -> tuple[tuple[str, type], ...]:
            return tuple((f.name, f.dtype) for f in self.derived if f.placement == where)

        def rows(entity: str) -> tuple[tuple[str, type], ...]:
            return tuple((row.name, row.output_type) for row in self.velocity.of(entity))

        outputs = (
            *placed("request"),
            *rows("customer"),
            *placed("customer"),
            *rows("merchant"),
            *placed("merchant"),
        )
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "_hash", hash((self.name, self.velocity, self.derived)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def output_features(self) -> tuple[tuple[str, type], ...]:
        """The model's features, in order: (name, ``int`` or ``float``).

        The request-time derived features, the card's velocity rows, the card's derived
        features, the merchant's velocity rows, then the merchant's derived features.
        """
        return self._outputs

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The names of :attr:`output_features`, in order."""
        return tuple(name for name, _ in self._outputs)

    @property
    def unknown_without_history(self) -> tuple[str, ...]:
        """The derived features that are unknown (NaN) for a card without history."""
        return tuple(f.name for f in self.derived if f.unknown_without_history)

    def with_velocity(self, name: str, velocity: VelocityTable) -> ServiceTable:
        """This service's derived features over other velocity rows (a test fixture's table)."""
        return ServiceTable(name, velocity, self.derived)


def state_table(name: str, services: Mapping[str, ServiceTable]) -> VelocityTable:
    """What the stored state keeps: the union of every service's velocity rows."""
    return union(name, *(service.velocity for service in services.values()))


# ------------------------------------------------------------------ the feature table, as text


def _window_text(window: timedelta) -> str:
    """``24h``, ``7d``, ``15min``: days from two days up, hours below."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def markdown_table(services: Mapping[str, ServiceTable]) -> str:
    """The velocity feature table of the documentation, generated from the declarations.

    Args:
        services: Feature service -> its declarations (``feature_repo.services.SERVICE_TABLES``).

    Returns:
        A Markdown table, one line per aggregation of any service (with the services that
        serve it), ending with a newline.
    """
    lines = [
        "| feature | entity | operation | column | window | services | description |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in state_table("all", services).rows:
        column = "" if row.column == "transaction" else f"`{row.column}`"
        serving = ", ".join(
            name.removeprefix("fraud_scoring_")
            for name, t in services.items()
            if row in t.velocity.rows
        )
        lines.append(
            f"| `{row.name}` | {row.entity} | {row.operation} | {column} | "
            f"`[floor(t - {_window_text(row.window)}, {_window_text(tile_for(row.window))}), t)` "
            f"| {serving} | {row.description} |"
        )
    return "\n".join(lines) + "\n"


def derived_markdown_table(services: Mapping[str, ServiceTable]) -> str:
    """The derived (non-velocity) feature table of the documentation, from the declarations.

    Args:
        services: Feature service -> its declarations.

    Returns:
        A Markdown table, one line per derived feature of any service, ending with a newline.
    """
    lines = [
        "| feature | type | placed | unknown without history | services | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    seen: dict[str, DerivedFeature] = {}
    for service in services.values():
        for feature in service.derived:
            seen.setdefault(feature.name, feature)
    for feature in seen.values():
        serving = ", ".join(
            name.removeprefix("fraud_scoring_")
            for name, t in services.items()
            if feature in t.derived
        )
        unknown = "yes" if feature.unknown_without_history else ""
        lines.append(
            f"| `{feature.name}` | {feature.dtype.__name__} | {feature.placement} | {unknown} "
            f"| {serving} | {feature.description} |"
        )
    return "\n".join(lines) + "\n"
