"""Online ingestion: the compare-and-set script against the previous WATCH/MULTI writer.

Both writers fold the same transactions with the same merge functions
(:mod:`feature_engine.state.fold`) into Feast's Redis layout on a real local ``redis-server``; they
differ only in how one entity's read-merge-write is made atomic:

* ``cas`` (the platform's, :class:`feature_engine.online.writer.OnlineStateWriter`): one pipelined
  read of the card and the merchant, then one round trip with a Lua compare-and-set per entity;
* ``watch`` (the previous implementation, kept here as the baseline only): per entity
  ``WATCH``, ``HMGET``, ``EXISTS`` of the marker, ``MULTI``/``EXEC``, one entity after the other.

Workloads, each run ``--rounds`` times with the writers alternating (medians, and the ratio of
the medians, so that a noisy machine shows as spread, not as a bias):

* ``ordinary``: ``--transactions`` transactions of ``--cards`` cards at ``--merchants``
  merchants, in time order: median and p99 per transaction, and Redis commands per transaction
  (``INFO commandstats``, what the server executed);
* ``heavy``: transactions of a merchant holding a day of ``--merchant-per-day`` transactions
  (the long-history shape: a 150 KB state): median per transaction;
* ``contended``: two threads ingesting transactions of the same card and merchant at once:
  throughput, retries, and whether every transaction was counted (lost updates).

Run: ``.venv/bin/python -m benchmarks.bench_ingest [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis.exceptions import WatchError

from feature_engine.online import writer as online_state
from feature_engine.online.writer import MAX_RETRIES, OnlineStateWriter, StateUpdate
from feature_engine.state.fields import DAY_US, HOUR_US, activity_layout
from feature_engine.state.fold import Transaction, merchant_event
from feature_engine.state.tiles import EntityState
from feature_repo.services import STATE_VELOCITY
from fraud_platform import redis_server

T0 = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC


class WatchWriter(OnlineStateWriter):
    """The baseline: the previous optimistic ``WATCH``/``MULTI`` loop, one entity at a time."""

    def _apply(self, updates: Sequence[StateUpdate]) -> list[dict[str, Any] | None]:
        return [self._watch(update) for update in updates]

    def _watch(self, update: StateUpdate) -> dict[str, Any] | None:
        view = self._views[update.view_name]
        for _ in range(MAX_RETRIES):
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    keys = (
                        [update.key] if update.once_key is None else [update.key, update.once_key]
                    )
                    pipe.watch(*keys)
                    state = view.decode(pipe.hmget(update.key, list(view.field_keys)))
                    once = update.once_key is not None and update.once_when(state)
                    if once and pipe.exists(update.once_key):
                        return None
                    new = update.merge(state)
                    pipe.multi()
                    self._layout.write(pipe, update.key, view.encode(new, update.event_ts_us(new)))
                    if once:
                        pipe.set(update.once_key, b"1", ex=update.once_seconds)
                    for seen in update.retired(state, new) if update.retired else ():
                        pipe.set(seen, b"1", ex=update.once_seconds)
                    pipe.execute()
                    return new
                except WatchError:
                    self.retries += 1
                    continue
        raise online_state.StateWriteConflictError(update.view_name)

    retries = 0  # WatchError retries (a concurrent write between WATCH and EXEC)


def counting(writer: OnlineStateWriter) -> Callable[[], int]:
    """Count CAS conflicts of a writer (each retry of the script), for the contended run."""
    calls = [0]
    apply = writer._apply

    def wrapped(updates: Sequence[StateUpdate]) -> list[dict[str, Any] | None]:
        merges = [0]

        def counted(update: StateUpdate) -> StateUpdate:
            def merge(state: Any) -> dict[str, Any]:
                merges[0] += 1
                return update.merge(state)

            return StateUpdate(**{**update.__dict__, "merge": merge})

        result = apply([counted(u) for u in updates])
        calls[0] += merges[0] - len(updates)
        return result

    writer._apply = wrapped  # type: ignore[method-assign]
    return lambda: calls[0]


def project(redis_url: str) -> Any:
    """A registry with the state views applied (tiny offline tables), and its Redis layout."""
    from feature_engine.offline.pipeline import build_features
    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.store import open_store
    from feature_repo.definitions import fraud_definitions
    from fraud_platform.settings import Settings, load_params
    from tests.support.edge_cases import edge_case_tables, write_raw

    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    settings = Settings(project_root=root, redis_url=redis_url)
    write_raw(edge_case_tables(), settings.paths.raw_dir)
    build_features(settings.paths, load_params().features, STATE_VELOCITY)
    store = open_store(settings)
    store.apply(fraud_definitions(settings.paths.features_dir).objects())
    return RedisLayout(store)


ROUND_TRIPS = [0]


def count_round_trips() -> None:
    """Count every request a redis-py connection sends (one send, one wait for its replies)."""
    from redis.connection import AbstractConnection

    send = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        ROUND_TRIPS[0] += 1
        send(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def ordinary(rng: random.Random, n: int, cards: int, merchants: int, start: int) -> list[Any]:
    """``n`` transactions of ``cards`` cards at ``merchants`` merchants, a few seconds apart."""
    out, at = [], start
    for i in range(n):
        at += rng.randrange(1, 20_000_000)
        out.append(
            Transaction(
                f"o-{start}-{i}", f"c o{rng.randrange(cards)}", f"m o{rng.randrange(merchants)}",
                at, round(rng.uniform(1, 300), 2), 40.5, -73.5,
            )
        )  # fmt: skip
    return out


def heavy_state(layout: Any, merchant_id: str, per_day: int, lateness_us: int, cap: int) -> int:
    """Store a merchant holding a day of ``per_day`` transactions; its last event time."""
    entity = activity_layout("merchant", STATE_VELOCITY)
    state = EntityState(entity, lateness_us, cap)
    rng = random.Random(3)
    at = T0
    for i in range(per_day):
        at += rng.randrange(2 * DAY_US // per_day)
        txn = Transaction(f"h-{i}", f"c h{i % 5000}", merchant_id, at, 20.0, 40.5, -73.5)
        state.add(merchant_event(txn, entity))
    fields = state.to_fields()
    view = layout.view("merchant_activity")
    layout.client.hset(layout.key(view, merchant_id), mapping=view.encode(fields, at))
    return at


def timed(writer: OnlineStateWriter, txns: Sequence[Transaction]) -> list[float]:
    """Milliseconds per ingested transaction."""
    out = []
    for txn in txns:
        begin = time.perf_counter()
        writer.ingest_transaction(txn)
        out.append((time.perf_counter() - begin) * 1e3)
    return out


def contended(writer: OnlineStateWriter, per_thread: int, start: int) -> tuple[float, int]:
    """Two threads, one card and merchant: (transactions/s, transactions missing afterwards)."""
    card, merchant = f"c race {start}", f"m race {start}"

    def run(thread: int) -> None:
        for i in range(per_thread):
            at = start + (2 * i + thread) * 1_000_000
            writer.ingest_transaction(
                Transaction(f"r{thread}-{i}", card, merchant, at, 1.0, 40.5, -73.5)
            )

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    state = writer.read("customer_activity", card) or {}
    kept = len(state.get("c_txn_ids") or [])  # all within the raw region: one hour of seconds
    return 2 * per_thread / seconds, 2 * per_thread - kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transactions", type=int, default=1_000)
    parser.add_argument("--cards", type=int, default=300)
    parser.add_argument("--merchants", type=int, default=60)
    parser.add_argument("--merchant-per-day", type=int, default=100_000)
    parser.add_argument("--heavy-transactions", type=int, default=100)
    parser.add_argument("--contended", type=int, default=300, help="transactions per thread")
    args = parser.parse_args()

    from fraud_platform.settings import load_params

    count_round_trips()
    features = load_params().features
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-redis-"))
    server = redis_server.start(root=root)
    try:
        layout = project(server.url)
        watch = WatchWriter(layout, features, STATE_VELOCITY)
        writers: dict[str, OnlineStateWriter] = {
            "watch": watch,
            "cas": OnlineStateWriter(layout, features, STATE_VELOCITY),
        }
        conflicts = {"cas": counting(writers["cas"])}
        lateness, cap = features.max_lateness_seconds * 1_000_000, features.distinct_values_cap
        rng = random.Random(11)
        figures: dict[str, dict[str, list[float]]] = {name: {} for name in writers}
        for round_ in range(args.rounds):
            for name, writer in writers.items():
                start = T0 + (round_ * 2 + (name == "cas")) * 30 * DAY_US
                txns = ordinary(rng, args.transactions, args.cards, args.merchants, start)
                before = ROUND_TRIPS[0]
                times = timed(writer, txns)
                trips = (ROUND_TRIPS[0] - before) / len(txns)
                merchant = f"m heavy {name} {round_}"
                last = heavy_state(layout, merchant, args.merchant_per_day, lateness, cap)
                heavy = [
                    Transaction(f"hv-{k}", f"c hv{k}", merchant, last + k * HOUR_US // 100,
                                20.0, 40.5, -73.5)
                    for k in range(args.heavy_transactions)
                ]  # fmt: skip
                heavy_times = timed(writer, heavy)
                rate, lost = contended(writer, args.contended, start + 10 * DAY_US)
                got = figures[name]
                got.setdefault("p50", []).append(statistics.median(times))
                got.setdefault("p99", []).append(statistics.quantiles(times, n=100)[98])
                got.setdefault("trips", []).append(trips)
                got.setdefault("heavy", []).append(statistics.median(heavy_times))
                got.setdefault("contended", []).append(rate)
                got.setdefault("lost", []).append(lost)
        retries = conflicts["cas"]()
        print(f"\nredis-server {server.url}; {args.rounds} rounds, writers alternating; medians of "
              f"the rounds (min-max)")  # fmt: skip
        rows = [
            ("ordinary: per transaction, p50 (ms)", "p50"),
            ("ordinary: per transaction, p99 (ms)", "p99"),
            ("ordinary: Redis round trips per transaction", "trips"),
            (f"heavy merchant ({args.merchant_per_day:,}/day): p50 (ms)", "heavy"),
            ("contended, 2 threads on one card: transactions/s", "contended"),
            ("contended: transactions lost", "lost"),
        ]
        print(f"{'':<48} {'watch':>16} {'cas':>16} {'cas/watch':>10}")
        for label, key in rows:
            cells = []
            for name in writers:
                values = figures[name][key]
                cells.append(
                    f"{statistics.median(values):>7.2f} ({min(values):.2f}-{max(values):.2f})"
                )
            ratio = statistics.median(figures["cas"][key]) / max(
                statistics.median(figures["watch"][key]), 1e-9
            )
            print(f"{label:<48} {cells[0]:>16} {cells[1]:>16} {ratio:>10.2f}")
        print(f"cas: {retries} script calls refused by a concurrent write and folded again "
              f"(all rounds); watch: {watch.retries} WatchError retries")  # fmt: skip
    finally:
        redis_server.stop(root)


if __name__ == "__main__":
    main()
