"""An entity's velocity state: raw events of the lateness region, tiles of aggregates before it.

Pure data structures, no I/O.

Why this shape
--------------
A row's window at request time t is ``[floor(t - window, tile), t)`` (sawtooth: see
:mod:`feature_engine.declarations`). Requests may be up to ``L`` (``features.max_lateness_seconds``)
older than the entity's latest event T, so a request's *end* may fall anywhere in ``[T - L, T]``
and needs the raw events there; its *start* is always a tile boundary, so everything earlier is
needed only as whole tiles. The state of an entity whose latest event is T therefore holds:

- the *raw region*: every event in ``[B, T]``, ``B = floor(T - L, 5 min)``, sorted by
  (timestamp, key), with the columns the declared rows read (and, for a card, where it happened);
- per tile size in use (5 min, 1 h, 1 d), the tiles of partial aggregates (count, and the sum,
  max or last amount the rows at that size need) of the events *before B*, back to the earliest
  tile any request at t >= B can start on. The tile holding B is partial: it has only the events
  before B, the rest are raw;
- per column of a ``distinct_count`` row, each value's latest time before B (the
  ``distinct_values_cap`` most recent values);
- the latest event before B (the *anchor*), with where it happened, for a card.

The state is a function of the *set* of events (up to the order of floating-point sums): folding
them one at a time in any order (online, :func:`fold`) gives the state the batch pipeline builds
(:class:`EntityState` is the one implementation both use). A request at t is exact when
``t >= B`` (any t >= T - L). Bounded: the raw region holds one lateness region of events, the
tiles a fixed count, the distinct values a cap, whatever the entity's volume.

Idempotency: an event already in the raw region (same key) is not counted twice. An event older
than B goes straight into the tiles, where keys are not kept; the caller makes sure such an
event is folded once (``feature_engine/online/writer.py`` sets a once-key for it).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import repeat
from typing import Any

from feature_engine.declarations import (
    COLUMN_KINDS,
    FINEST_TILE_US,
    MICROS_PER_SECOND,
    OPERATIONS,
    TILE_LABELS,
    VelocityTable,
    state_array,
)

_TILE_LABELS_US = {int(k.total_seconds()) * MICROS_PER_SECOND: v for k, v in TILE_LABELS.items()}
# A tile's slots: count, amount_sum, amount_max, last_ts, last_key, amount_last.
_COUNT, _SUM, _MAX, _LAST_TS, _LAST_KEY, _LAST = range(6)
# Event fields: (ts, key, values of the layout's columns, carried values).
Event = tuple[int, str, tuple[Any, ...], tuple[Any, ...]]


@dataclass(frozen=True)
class StateLayout:
    """The stored fields of one entity's velocity state, derived from a declaration table.

    Attributes:
        table: The declaration table.
        entity: ``customer`` or ``merchant``.
        carried: Raw-only fields carried with each raw event (``c_recent_lats``...).
    """

    table: VelocityTable
    entity: str
    carried: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        """``c`` or ``m``: every field of the state starts with it."""
        return self.entity[0]

    @cached_property  # read on every fold: derived once per layout
    def columns(self) -> tuple[str, ...]:
        """The raw columns kept (the ones the entity's rows read)."""
        return self.table.columns(self.entity)

    def tile_field(self, tile_us: int, what: str) -> str:
        """``c_tiles_1h_count``: one array of a tile level."""
        return f"{self.prefix}_tiles_{_TILE_LABELS_US[tile_us]}_{what}"

    def seen_fields(self, column: str) -> tuple[str, str]:
        """(values, latest times) of a distinct column: ``c_seen_merchant_ids``, ``..._ts``."""
        return f"{self.prefix}_seen_{column}s", f"{self.prefix}_seen_{column}_ts"

    @cached_property
    def raw_fields(self) -> tuple[tuple[str, str], ...]:
        """The raw region's arrays: timestamps, keys, then each kept column."""
        p = self.prefix
        return (
            (f"{p}_ts_us", "int64[]"),  # µs since epoch, UTC, ascending by (ts, key)
            (f"{p}_txn_ids", "string[]"),  # merchants: merchant_event_key(card, txn id)
            *((state_array(self.entity, c), COLUMN_KINDS[c]) for c in self.columns),
        )

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every stored field (name, Feast value type) but the carried ones."""
        out = list(self.raw_fields)
        for tile in self.table.tiles_us(self.entity):
            out += [(self.tile_field(tile, "index"), "int64[]"),
                    (self.tile_field(tile, "count"), "int64[]")]  # fmt: skip
            for metric in self.table.tile_metrics(self.entity, tile):
                out.append((self.tile_field(tile, metric), "float64[]"))
                if metric == "amount_last":  # which event is last: needed to fold late ones
                    out += [(self.tile_field(tile, "last_ts"), "int64[]"),
                            (self.tile_field(tile, "last_key"), "string[]")]  # fmt: skip
        for column in self.table.distinct_columns(self.entity):
            values, times = self.seen_fields(column)
            out += [(values, "string[]"), (times, "int64[]")]
        p = self.prefix
        out += [(f"{p}_latest_ts_us", "int64"),  # T, the latest event folded in
                (f"{p}_lateness_us", "int64"),  # the lateness L the state was built with
                (f"{p}_distinct_cap", "int64")]  # fmt: skip
        return tuple(out)

    @property
    def merge_only(self) -> frozenset[str]:
        """Fields only the fold reads (keys, tie-breaks): the on-demand view does not read them."""
        p = self.prefix
        names = {f"{p}_txn_ids", f"{p}_distinct_cap"}
        for tile in self.table.tiles_us(self.entity):
            names |= {self.tile_field(tile, "last_ts"), self.tile_field(tile, "last_key")}
        return frozenset(names)


@cache
def layout_of(table: VelocityTable, entity: str, carried: tuple[str, ...] = ()) -> StateLayout:
    """The (cached) layout of an entity's state for a declaration table."""
    return StateLayout(table, entity, carried)


def raw_boundary_us(latest_ts_us: int, lateness_us: int) -> int:
    """B, where the raw region of a state whose latest event is T starts: floor(T - L, 5 min)."""
    return (latest_ts_us - lateness_us) // FINEST_TILE_US * FINEST_TILE_US


class EntityState:
    """One entity's state while events are folded in (mutable; see the module docstring).

    Build it from stored fields (:meth:`from_fields`) or empty, :meth:`add` events, and read
    the stored fields back with :meth:`to_fields`.
    """

    def __init__(self, layout: StateLayout, lateness_us: int, distinct_cap: int) -> None:
        self.layout = layout
        self.lateness_us = lateness_us
        self.distinct_cap = distinct_cap
        self.latest = -1  # no event yet
        self.raw: list[Event] = []
        self.keys: set[str] = set()
        self.tiles: dict[int, dict[int, list[Any]]] = {
            tile: {} for tile in layout.table.tiles_us(layout.entity)
        }
        distinct = layout.table.distinct_columns(layout.entity)
        self.seen: dict[str, dict[Any, int]] = {column: {} for column in distinct}
        self._distinct_at = {c: layout.columns.index(c) for c in distinct}
        self.anchor: Event | None = None  # the latest event before B

    # ------------------------------------------------------------------ stored fields

    @classmethod
    def from_fields(
        cls, layout: StateLayout, fields: Mapping[str, Any], lateness_us: int, distinct_cap: int
    ) -> EntityState:
        """The state held in stored fields (missing or empty fields: no state)."""
        state = cls(layout, lateness_us, distinct_cap)
        p = layout.prefix
        latest = fields.get(f"{p}_latest_ts_us")
        if latest is None or int(latest) < 0:
            return state
        state.latest = int(latest)
        names = [name for name, _ in layout.raw_fields]
        columns = [fields.get(name) or [] for name in names[2:]]
        carried = [fields.get(name) or [] for name in layout.carried]
        ts, keys = fields.get(names[0]) or [], fields.get(names[1]) or []
        # Column lists -> one tuple per event, transposed in C (zip), not indexed per value.
        rows: Iterable[tuple[Any, ...]] = zip(*columns, strict=True) if columns else repeat(())
        carries: Iterable[tuple[Any, ...]] = zip(*carried, strict=True) if carried else repeat(())
        state.raw = [
            (int(t), key, row, carry)
            for t, key, row, carry in zip(ts, keys, rows, carries, strict=False)
        ]
        state.keys = set(keys)
        for tile, tiles in state.tiles.items():
            index = fields.get(layout.tile_field(tile, "index")) or []
            count = fields.get(layout.tile_field(tile, "count")) or []
            metric = {
                m: fields.get(layout.tile_field(tile, m)) or []
                for m in ("amount_sum", "amount_max", "amount_last", "last_ts", "last_key")
            }
            for i, j in enumerate(index):
                tiles[int(j)] = [
                    int(count[i]),
                    metric["amount_sum"][i] if metric["amount_sum"] else 0.0,
                    metric["amount_max"][i] if metric["amount_max"] else -math.inf,
                    int(metric["last_ts"][i]) if metric["last_ts"] else -1,
                    metric["last_key"][i] if metric["last_key"] else "",
                    metric["amount_last"][i] if metric["amount_last"] else math.nan,
                ]
        for column, seen in state.seen.items():
            values, times = (fields.get(name) or [] for name in layout.seen_fields(column))
            seen.update(zip(values, (int(x) for x in times), strict=True))
        return state

    def to_fields(self) -> dict[str, Any]:
        """The stored fields of this state (the carried ones included)."""
        layout = self.layout
        names = [name for name, _ in layout.raw_fields]
        raw = self.raw
        out: dict[str, Any] = {names[0]: [e[0] for e in raw], names[1]: [e[1] for e in raw]}
        for i, name in enumerate(names[2:]):
            out[name] = [e[2][i] for e in raw]
        for i, name in enumerate(layout.carried):
            out[name] = [e[3][i] for e in raw]
        for tile, tiles in self.tiles.items():
            order = sorted(tiles)
            out[layout.tile_field(tile, "index")] = order
            out[layout.tile_field(tile, "count")] = [tiles[j][_COUNT] for j in order]
            for metric in layout.table.tile_metrics(layout.entity, tile):
                slot = {"amount_sum": _SUM, "amount_max": _MAX, "amount_last": _LAST}[metric]
                out[layout.tile_field(tile, metric)] = [tiles[j][slot] for j in order]
                if metric == "amount_last":
                    out[layout.tile_field(tile, "last_ts")] = [tiles[j][_LAST_TS] for j in order]
                    out[layout.tile_field(tile, "last_key")] = [tiles[j][_LAST_KEY] for j in order]
        for column, seen in self.seen.items():
            # The cap most recent values, by (time, value): a function of the event set.
            kept = sorted((t, v) for v, t in seen.items())[-self.distinct_cap :]
            values, times = layout.seen_fields(column)
            out[values], out[times] = [v for _, v in kept], [t for t, _ in kept]
        p = layout.prefix
        out[f"{p}_latest_ts_us"] = self.latest
        out[f"{p}_lateness_us"] = self.lateness_us
        out[f"{p}_distinct_cap"] = self.distinct_cap
        return out

    # ------------------------------------------------------------------ folding

    @property
    def boundary_us(self) -> int:
        """B, where the raw region starts (no event: nothing is before it)."""
        if self.latest < 0:
            return -(2**62)
        return raw_boundary_us(self.latest, self.lateness_us)

    def add(self, event: Event) -> str:
        """Fold one event in.

        Returns:
            ``duplicate`` (its key is in the raw region: nothing changes), ``raw`` (it joined the
            raw region) or ``tiles`` (older than B: added to the tiles, where keys are not kept;
            the caller folds such an event only once).
        """
        ts, key = event[0], event[1]
        if key in self.keys:
            return "duplicate"
        before = self.boundary_us
        if ts > self.latest:
            self.latest = ts
        boundary = self.boundary_us
        if ts >= boundary:
            if not self.raw or event > self.raw[-1]:
                self.raw.append(event)  # in order: the batch build's case
            else:
                insort(self.raw, event)
            self.keys.add(key)
            where = "raw"
        else:
            self._into_tiles(event, boundary)
            where = "tiles"
        if boundary != before:
            self._advance(boundary)
        return where

    def _advance(self, boundary: int) -> None:
        """Move the raw events before B into the tiles; drop what no request can reach."""
        cut = bisect_left(self.raw, (boundary,))
        for event in self.raw[:cut]:
            self.keys.discard(event[1])
            self._into_tiles(event, boundary)
        del self.raw[:cut]
        table, entity = self.layout.table, self.layout.entity
        for tile, tiles in self.tiles.items():
            first = (boundary - table.tile_horizon_us(entity, tile)) // tile
            for j in [j for j in tiles if j < first]:
                del tiles[j]
        for column, seen in self.seen.items():
            start = table.earliest_start_us(entity, boundary, column)
            for value in [v for v, t in seen.items() if t < start]:
                del seen[value]

    def _into_tiles(self, event: Event, boundary: int) -> None:
        """Add an event older than B to every tile level and distinct column that reaches it."""
        ts, key, values, _ = event
        table, entity = self.layout.table, self.layout.entity
        amount = values[0] if self.layout.columns[:1] == ("amount",) else 0.0
        for tile, tiles in self.tiles.items():
            j = ts // tile
            if j < (boundary - table.tile_horizon_us(entity, tile)) // tile:
                continue  # before the earliest tile any request can start on
            slot = tiles.get(j)
            if slot is None:
                tiles[j] = [1, amount, amount, ts, key, amount]
                continue
            slot[_COUNT] += 1
            slot[_SUM] += amount
            if amount > slot[_MAX]:
                slot[_MAX] = amount
            if (ts, key) > (slot[_LAST_TS], slot[_LAST_KEY]):
                slot[_LAST_TS], slot[_LAST_KEY], slot[_LAST] = ts, key, amount
        for column, at in self._distinct_at.items():
            if ts >= table.earliest_start_us(entity, boundary, column):
                seen = self.seen[column]
                value = values[at]
                if ts > seen.get(value, -1):
                    seen[value] = ts
        if self.layout.carried and (self.anchor is None or event[:2] > self.anchor[:2]):
            self.anchor = event


# ------------------------------------------------------------------ request time


def window_values(
    state: Mapping[str, Any], layout: StateLayout, t_us: int
) -> tuple[dict[str, Any], int]:
    """The entity's velocity features at t from its stored fields, and its events in the window.

    Each row sums its tiles from the window's start on (all before B) and the raw events of
    ``[start, t)`` (one slice of the sorted raw region, found by bisection): strictly earlier
    events only, same-second peers excluded. Exact for any ``t >= B``.

    Args:
        state: The entity's stored fields (empty for an unknown entity).
        layout: The entity's state layout.
        t_us: The request time.

    Returns:
        (feature name -> value for the entity's rows, events in the earliest-starting row's
        window: 0 means the entity has no event in any of its windows).
    """
    table, entity = layout.table, layout.entity
    names = [name for name, _ in layout.raw_fields]
    ts_list = state.get(names[0]) or []
    end = bisect_left(ts_list, t_us)
    values: dict[str, Any] = {}
    events, earliest = 0, None
    for row in table.of(entity):
        start = row.window_start_us(t_us)
        lo = bisect_left(ts_list, start, 0, end) if ts_list and start > ts_list[0] else 0
        index = state.get(layout.tile_field(row.tile_us, "index")) or []
        first_tile = bisect_left(index, start // row.tile_us)
        op = row.operation
        count = sum((state.get(layout.tile_field(row.tile_us, "count")) or [])[first_tile:])
        count += end - lo
        if earliest is None or start < earliest:
            earliest, events = start, count
        if op == "count":
            values[row.name] = count
            continue
        column = state.get(state_array(entity, row.column)) or []
        raw = column[lo:end]
        if op == "sum" or op == "mean":
            sums = (state.get(layout.tile_field(row.tile_us, "amount_sum")) or [])[first_tile:]
            total = sum(sums, 0.0) + sum(raw, 0.0)
            values[row.name] = total if op == "sum" else (total / count if count else math.nan)
        elif op == "max":
            maxima = (state.get(layout.tile_field(row.tile_us, "amount_max")) or [])[first_tile:]
            values[row.name] = float(max((*maxima, *raw), default=OPERATIONS["max"][1]))
        elif op == "last":
            lasts = (state.get(layout.tile_field(row.tile_us, "amount_last")) or [])[first_tile:]
            values[row.name] = float(raw[-1]) if raw else (lasts[-1] if lasts else math.nan)
        else:  # distinct_count
            seen_values, seen_times = (state.get(n) or [] for n in layout.seen_fields(row.column))
            k = bisect_left(seen_times, start)
            values[row.name] = len({*seen_values[k:], *raw})
    return values, events
