"""Heavy entities: what a merchant with 100,000 transactions a day and a card with 5,000 cost.

The state of each is folded over one day, one transaction at a time, by the state builders the
batch pipeline and the online merges share (``tests/unit/features`` checks the two agree), with
``params.yaml``'s lateness. Then:

* the online merge (read the stored fields, fold one transaction, write them back) of the
  day's last transactions, median per transaction;

* stored bytes per entity (every field of its view, as Feast's Redis layout stores them) and
  bytes read per request by each feature service (its on-demand view's inputs: ``feature_inputs``);
* the online read (``HMGET`` of those fields on a real local redis-server) and the compute
  (``features_for_request``), medians in microseconds;
* served values of every declared row against the brute-force reference of the tests
  (``tests/support/reference.py``, the stated sawtooth semantics) for requests at, after and up
  to the lateness before the entities' latest event.

Issue 15's goals (no cap that binds at these volumes, at most 64 KB read and 1 ms per request)
are printed beside the figures. Nothing is asserted.

Run: ``.venv/bin/python -m benchmarks.bench_heavy_entities [--merchant-per-day 100000]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from feature_engine.online.redis_layout import encoder
from feature_engine.state.fields import (
    DAY_US,
    HOUR_US,
    activity_layout,
    feature_inputs,
    state_fields,
)
from feature_engine.state.fold import (
    CustomerStateBuilder,
    Transaction,
    merchant_event,
    merge_merchant_transaction,
    merge_transaction,
)
from feature_engine.state.request import features_for_request
from feature_engine.state.tiles import EntityState
from feature_repo.definitions import FEAST_TYPES
from feature_repo.services import SERVICE_TABLES, STATE_VELOCITY
from feature_repo.velocity import VELOCITY
from fraud_platform import redis_server
from fraud_platform.settings import load_params
from tests.support.reference import Reference, Request, mismatches, requests_frame

MICROS = 1_000_000
V1 = SERVICE_TABLES["fraud_scoring_v1"]
T0 = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC


def day_of_transactions(
    n: int, rng: random.Random, card: str | None, merchant: str | None, merchants: int = 2_000
) -> list[Transaction]:
    """``n`` transactions spread uniformly over one day, of one card or at one merchant."""
    times = sorted(T0 + rng.randrange(DAY_US) for _ in range(n))
    return [
        Transaction(
            transaction_id=f"{'c' if card else 'm'}{i}",
            customer_id=card or f"card {rng.randrange(50_000)}",
            merchant_id=merchant or f"merchant {rng.randrange(merchants)}",
            ts_us=ts,
            amount=round(rng.uniform(1, 300), 2),
            lat=40.0 + rng.random(),
            long=-74.0 + rng.random(),
        )
        for i, ts in enumerate(times)
    ]


CUSTOMER_COLUMNS = ["customer_id", "home_lat", "home_long"]


def frame(txns: list[Transaction]) -> pd.DataFrame:
    """Transactions (or, empty, labels) as the reference reads them."""
    if not txns:
        return pd.DataFrame(
            {"transaction_id": pd.Series(dtype=str), "is_fraud": pd.Series(dtype=int),
             "label_timestamp": pd.Series(dtype="datetime64[us, UTC]")}
        )  # fmt: skip
    requests = [
        Request(t.customer_id, t.merchant_id, t.ts_us, t.amount, t.lat, t.long) for t in txns
    ]
    return requests_frame(requests).assign(transaction_id=[t.transaction_id for t in txns])


def raw_tables(txns: list[Transaction]) -> dict[str, pd.DataFrame]:
    """The raw tables (data/schema.py) of these transactions: no labels, a home per card."""
    transactions = frame(txns)
    cards = sorted(transactions["customer_id"].unique())
    merchants = sorted(transactions["merchant_id"].unique())
    customers = pd.DataFrame(
        {
            "customer_id": cards,
            "home_lat": 40.0,
            "home_long": -74.0,
            "created_at": pd.Timestamp(T0, unit="us", tz="UTC") - pd.Timedelta(days=400),
        }
    )
    shops = pd.DataFrame(
        {"merchant_id": merchants, "category": "retail", "lat": 40.0, "long": -74.0}
    )
    labels = frame([]).assign(fraud_pattern=pd.Series(dtype=str))
    return {
        "transactions": transactions,
        "labels": labels,
        "customers": customers,
        "merchants": shops,
    }


def through_feast(
    merchant_txns: list[Transaction],
    card_txns: list[Transaction],
    features: Any,
    redis_url: str,
    checks: int,
    rng: random.Random,
) -> None:
    """Exactness of every service through Feast's paths on the heavy day, against the reference.

    The day's last hour is held out: the rest is built offline (``fraud features build``'s
    recipe) and applied; then (1) ``get_historical_features`` at requests of the built part,
    (2) online after ``materialize`` at requests after it, (3) the held-out hour ingested by the
    API's writer in arrival order shuffled within the lateness bound, each request read online
    before its own ingestion and compared with the reference of what had arrived.
    """
    from feature_engine.offline.pipeline import build_features
    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.online.writer import OnlineStateWriter
    from feature_engine.store import (
        feature_names,
        feature_service,
        historical_features,
        materialize,
        online_features,
        open_store,
    )
    from feature_repo.definitions import fraud_definitions
    from feature_repo.services import SERVICE_TABLES
    from fraud_platform.settings import Settings
    from tests.support.edge_cases import flush_online, write_raw

    everything = sorted(merchant_txns + card_txns, key=lambda t: t.ts_us)
    cut = everything[-1].ts_us - HOUR_US
    built = [t for t in everything if t.ts_us <= cut]
    held_out = [t for t in everything if t.ts_us > cut]
    root = Path(tempfile.mkdtemp(prefix="bench-heavy-feast-"))
    settings = Settings(project_root=root, redis_url=redis_url)
    tables = raw_tables(built)
    write_raw(tables, settings.paths.raw_dir)
    started = time.perf_counter()
    result = build_features(settings.paths, features, STATE_VELOCITY)
    rows = {name: n for name, (_, n) in result.tables.items()}
    print(f"\nthrough Feast: built the offline state of {len(built):,} transactions in "
          f"{time.perf_counter() - started:.1f} s, rows {rows}")  # fmt: skip
    store = open_store(settings)
    store.apply(fraud_definitions(settings.paths.features_dir).objects())
    heavy = [t for t in built if t.merchant_id == "m heavy" or t.customer_id == "c heavy"]
    sample = rng.sample(heavy, min(checks, len(heavy)))
    requests = [Request(t.customer_id, t.merchant_id, t.ts_us, t.amount, t.lat, t.long)
                for t in sample]  # fmt: skip
    for service, table in SERVICE_TABLES.items():
        reference = Reference(tables["transactions"], tables["labels"], tables["customers"], table)
        names = feature_names(store, service)
        got = historical_features(store, requests_frame(requests), service, progress=None)
        bad = sum(
            bool(mismatches(reference.features(q), got.loc[i, names].to_dict()))
            for i, q in enumerate(requests)
        )
        print(f"  {service}: get_historical_features, {len(requests)} requests: {bad} mismatching")
    flush_online(settings)
    materialize(store, end=pd.Timestamp(cut, unit="us", tz="UTC").to_pydatetime())
    after = [Request("c heavy", "m heavy", cut + 1 + k * HOUR_US // checks, 5.0, 40.5, -73.5)
             for k in range(checks)]  # fmt: skip
    for service, table in SERVICE_TABLES.items():
        reference = Reference(tables["transactions"], tables["labels"], tables["customers"], table)
        service_obj, names = feature_service(store, service), feature_names(store, service)
        online = online_features(store, [online_row(q) for q in after], service_obj, names)
        bad = sum(
            bool(mismatches(reference.features(q), row))
            for q, row in zip(after, online, strict=True)
        )
        print(f"  {service}: online after materialize, {len(after)} requests: {bad} mismatching")
    # Ingestion: the held-out hour arrives shuffled within the lateness bound.
    writer = OnlineStateWriter(RedisLayout(store), features, STATE_VELOCITY)
    lateness = features.max_lateness_seconds * MICROS
    arrival = sorted(held_out, key=lambda t: t.ts_us + rng.random() * lateness)
    checked_at = set(rng.sample(range(len(arrival)), min(checks, len(arrival))))
    arrived = list(built)
    bad_by_service = {service: 0 for service in SERVICE_TABLES}
    started = time.perf_counter()
    for k, txn in enumerate(arrival):
        if k in checked_at:
            q = Request(txn.customer_id, txn.merchant_id, txn.ts_us, txn.amount, txn.lat, txn.long)
            known = frame(arrived)
            for service, table in SERVICE_TABLES.items():
                reference = Reference(known, tables["labels"], tables["customers"], table)
                row = online_features(
                    store, [online_row(q)], feature_service(store, service),
                    feature_names(store, service),
                )[0]  # fmt: skip
                bad_by_service[service] += bool(mismatches(reference.features(q), row))
        writer.ingest_transaction(txn)
        arrived.append(txn)
    seconds = time.perf_counter() - started
    print(f"  ingested {len(arrival):,} held-out transactions (shuffled within the lateness "
          f"bound) in {seconds:.1f} s, checked {len(checked_at)} of them:")  # fmt: skip
    for service, bad in bad_by_service.items():
        print(f"  {service}: online after ingestion: {bad} mismatching")


def online_row(q: Request) -> dict[str, Any]:
    """A request as an online entity row."""
    from feature_engine.store import request_row

    at = pd.Timestamp(q.t_us, unit="us", tz="UTC").to_pydatetime()
    return request_row(q.customer_id, q.merchant_id, at, q.amount, q.lat, q.long)


def encoded(view: str, state: dict[str, Any]) -> dict[str, bytes]:
    """Each field of a state row as the bytes Feast's Redis layout stores."""
    return {
        name: encoder(FEAST_TYPES[kind])(state[name]).SerializeToString()
        for name, kind in state_fields(STATE_VELOCITY)[view]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--merchant-per-day", type=int, default=100_000)
    parser.add_argument("--card-per-day", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument(
        "--card-merchants",
        type=int,
        default=200,
        help="merchants the heavy card pays at (above distinct_values_cap: a lower bound)",
    )
    parser.add_argument(
        "--feast-checks",
        type=int,
        default=30,
        help="requests per path (historical, online, ingestion) checked through Feast; 0: skip",
    )
    parser.add_argument("--online-folds", type=int, default=200)
    parser.add_argument(
        "--checks", type=int, default=40, help="requests checked against the reference"
    )
    args = parser.parse_args()
    features = load_params().features
    lateness = features.max_lateness_seconds * 1_000_000
    cap = features.distinct_values_cap
    rng = random.Random(7)

    started = time.perf_counter()
    merchant_txns = day_of_transactions(args.merchant_per_day, rng, None, "m heavy")
    card_txns = day_of_transactions(
        args.card_per_day, rng, "c heavy", None, merchants=args.card_merchants
    )
    layout = activity_layout("merchant", STATE_VELOCITY)
    merchant_state = EntityState(layout, lateness, cap)
    for txn in merchant_txns[: -args.online_folds]:
        merchant_state.add(merchant_event(txn, layout))
    card_builder = CustomerStateBuilder(lateness, cap, STATE_VELOCITY)
    for txn in card_txns[: -args.online_folds]:
        card_builder.add(txn)
    merchant, card = merchant_state.to_fields(), card_builder.fields()
    print(f"folded {len(merchant_txns):,} merchant and {len(card_txns):,} card transactions "
          f"in {time.perf_counter() - started:.1f} s (lateness {features.max_lateness_seconds} s, "
          f"no cap)")  # fmt: skip
    # The online merge: stored fields in, one transaction folded, stored fields out.
    merges: dict[str, list[float]] = {"merchant": [], "card": []}
    for m_txn, c_txn in zip(
        merchant_txns[-args.online_folds :], card_txns[-args.online_folds :], strict=True
    ):
        begin = time.perf_counter()
        merchant = merge_merchant_transaction(merchant, m_txn, lateness, cap, STATE_VELOCITY)
        middle = time.perf_counter()
        card = merge_transaction(card, c_txn, lateness, cap, STATE_VELOCITY)
        merges["merchant"].append((middle - begin) * 1e6)
        merges["card"].append((time.perf_counter() - middle) * 1e6)
    for entity, times in merges.items():
        print(f"online merge, {entity}: median {statistics.median(times):,.0f} µs per transaction "
              f"(last {args.online_folds} of the day)")  # fmt: skip

    stored = {
        "merchant_activity": encoded("merchant_activity", merchant),
        "customer_activity": encoded("customer_activity", card),
    }
    print("\nentity                stored bytes")
    for view, fields in stored.items():
        print(f"{view:<20} {sum(map(len, fields.values())):>13,}")

    root = Path(tempfile.mkdtemp(prefix="bench-heavy-"))
    server = redis_server.start(root=root)
    try:
        import redis

        client = redis.Redis.from_url(server.url)
        for view, fields in stored.items():
            client.hset(view, mapping=fields)  # type: ignore[arg-type]
        end = max(t.ts_us for t in merchant_txns + card_txns)
        for service, table in SERVICE_TABLES.items():
            # Each service reads its own on-demand view's inputs (feature_inputs).
            wanted = {view: list(feature_inputs(table.velocity)[view]) for view in stored}
            read = {
                view: sum(len(stored[view][n]) for n in names) for view, names in wanted.items()
            }
            reads, computes = [], []
            for _ in range(args.requests):
                t = end + rng.randrange(HOUR_US)
                request = {"txn_timestamp_us": t, "amount": 42.0, "lat": 40.5, "long": -73.5}
                begin = time.perf_counter()
                with client.pipeline(transaction=False) as pipe:
                    for view, names in wanted.items():
                        pipe.hmget(view, names)
                    pipe.execute()
                middle = time.perf_counter()
                features_for_request(request, card, merchant, {}, {}, table)
                computes.append((time.perf_counter() - middle) * 1e6)
                reads.append((middle - begin) * 1e6)
            read_us, compute_us = statistics.median(reads), statistics.median(computes)
            print(f"\n{service}: read per request {read['merchant_activity']:,} B (merchant) + "
                  f"{read['customer_activity']:,} B (card) = {sum(read.values()):,} B   "
                  "goal <= 65,536")  # fmt: skip
            print(f"  online read (HMGET, one pipeline): median {read_us:,.0f} µs; compute "
                  f"(features_for_request): median {compute_us:,.0f} µs; read + compute: "
                  f"{read_us + compute_us:,.0f} µs   goal <= 1,000 µs")  # fmt: skip

        # Exactness against the brute-force reference: requests from the lateness bound before
        # the latest event to an hour after it.
        reference = Reference(
            frame(merchant_txns + card_txns), frame([]), pd.DataFrame(columns=CUSTOMER_COLUMNS)
        )
        checked, problems = 0, []
        for i in range(args.checks):
            t = end - lateness + (lateness + HOUR_US) * i // max(1, args.checks - 1)
            request = {"txn_timestamp_us": t, "amount": 1.0, "lat": 0.0, "long": 0.0}
            got = features_for_request(request, card, merchant, {}, {}, V1)
            want = reference.features(Request("c heavy", "m heavy", t, 1.0, 0.0, 0.0))
            names = [row.name for row in VELOCITY.rows]
            bad = mismatches({n: want[n] for n in names}, {n: got[n] for n in names})
            problems += bad
            checked += 1
        at_end = features_for_request(
            {"txn_timestamp_us": end + 1, "amount": 1.0, "lat": 0.0, "long": 0.0},
            card, merchant, {}, {}, V1,
        )  # fmt: skip
        print(f"\nvelocity rows checked against the reference at {checked} request times "
              f"(from the lateness bound before the latest event to 1 h after it): "
              f"{len(problems)} mismatches")  # fmt: skip
        for problem in problems[:5]:
            print("  ", problem)
        print("served just after the latest event: " + ", ".join(
            f"{row.name} {at_end[row.name]:,.6g}" for row in VELOCITY.rows))  # fmt: skip
        if args.feast_checks:
            through_feast(merchant_txns, card_txns, features, server.url, args.feast_checks, rng)
    finally:
        redis_server.stop(root=root)


if __name__ == "__main__":
    main()
