"""The edge-case feature project: raw data with every case the feature contract must get right.

Edge cases in the data: bursts within the same second, an event exactly at t - 1h and at
t - 24h, a customer's first transaction, a customer inactive for longer than any window, a
burst of 9 within two minutes, a busy merchant (~8 transactions per 5-minute tile) and merchants
whose labels arrive late. The integration tests
build it into a real Feast project on a real Redis (``tests/integration/features``); the unit
tests fold it through the pure merges and the DuckDB pipeline only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.schema import RAW_TABLES
from feature_engine.declarations import Aggregation, ServiceTable, derived
from feature_engine.state.request import UNKNOWN, RequestContext
from feature_repo.derived import DERIVED_V1
from feature_repo.services import register_table
from feature_repo.velocity import VELOCITY
from fraud_platform.settings import FeatureParams, Settings, feast_environment

DISTINCT_CAP = 1_024  # never reached in this data: distinct counts are exact
LATENESS_SECONDS = 3_600
FEATURES = FeatureParams(distinct_values_cap=DISTINCT_CAP, max_lateness_seconds=LATENESS_SECONDS)
BASE = pd.Timestamp("2026-03-01", tz="UTC")

# The declaration table plus one row of every operation, a 7-day window (longer than any
# declared one, so the card's state reaches further back) and two merchant rows that make the
# merchant's state keep amounts and cards: what a new row must get from every path for free.
EXTENDED_VELOCITY = VELOCITY.with_rows(
    "velocity_test_extended",
    Aggregation("txn_count_7d", "customer", "transaction", "count", timedelta(days=7), "7 d"),
    Aggregation("amount_mean_6h", "customer", "amount", "mean", timedelta(hours=6), "mean"),
    Aggregation("last_amount_24h", "customer", "amount", "last", timedelta(days=1), "last"),
    Aggregation(
        "merchant_amount_sum_24h", "merchant", "amount", "sum", timedelta(days=1), "sum"
    ),
    Aggregation(
        "merchant_distinct_cards_1h", "merchant", "customer_id", "distinct_count",
        timedelta(hours=1), "distinct cards",
    ),
    Aggregation(
        "merchant_amount_max_2h", "merchant", "amount", "max", timedelta(hours=2), "max"
    ),
)  # fmt: skip


# A derived feature declared the way feature_repo/derived.py declares them: what a new one must
# get from every path for free (it reads a velocity row's value from the context).
@derived(float, placement="customer", unknown_without_history=True)
def amount_over_max_24h(x: RequestContext) -> float:
    """The amount / the card's largest amount in the last 24 hours; unknown without one."""
    largest = x.velocity["amount_max_24h"]
    return x.amount / largest if largest > 0 else UNKNOWN


# The first service's derived features plus that one over the extended rows, known to the
# on-demand view's function by its name in this process (feature_repo.services.service_table).
EXTENDED_SERVICE = register_table(
    ServiceTable("velocity_test_extended", EXTENDED_VELOCITY, (*DERIVED_V1, amount_over_max_24h))
)


def edge_case_tables(seed: int = 7) -> dict[str, pd.DataFrame]:
    """Raw tables (data/schema.py) with hand-placed edge cases on random background traffic."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, pd.Timestamp, float, float, float]] = []

    def add(customer: str, merchant: str, at: pd.Timestamp, amount: float) -> None:
        lat, long = 40.0 + rng.normal(0, 0.5), -74.0 + rng.normal(0, 0.5)
        rows.append((customer, merchant, at, round(amount, 2), lat, long))

    # Background: 12 customers, 8 merchants, 45 days, whole seconds, some exact ties.
    for c in range(12):
        times = BASE + pd.to_timedelta(np.sort(rng.integers(0, 45 * 86_400, 70)), unit="s")
        for at in times:
            add(f"c{c:02d}", f"m{rng.integers(0, 8)}", at, rng.lognormal(3, 1))
    # Same-second burst, then events exactly 1 h and 24 h after it.
    burst = BASE + pd.Timedelta(days=10, hours=3)
    for _ in range(3):
        add("c_burst", "m0", burst, rng.uniform(1, 5))
    add("c_burst", "m1", burst + pd.Timedelta(hours=1), 20.0)
    add("c_burst", "m1", burst + pd.Timedelta(hours=24), 30.0)
    add("c_burst", "m2", burst + pd.Timedelta(hours=24, seconds=1), 31.0)
    # A burst longer than the old state cap (4): 9 within two minutes, 4 of them in one second.
    long_burst = BASE + pd.Timedelta(days=20, hours=14)
    for i in range(5):
        add("c_cap", "m3", long_burst + pd.Timedelta(seconds=10 * i), 1.0 + i)
    for _ in range(4):
        add("c_cap", "m3", long_burst + pd.Timedelta(seconds=100), 2.5)
    add("c_cap", "m3", long_burst + pd.Timedelta(minutes=30), 9.0)
    # First transaction, then nothing for 40 days (longer than any window or baseline).
    add("c_sleepy", "m4", BASE + pd.Timedelta(days=1, hours=5), 50.0)
    add("c_sleepy", "m4", BASE + pd.Timedelta(days=41, hours=5), 60.0)
    add("c_sleepy", "m5", BASE + pd.Timedelta(days=41, hours=6), 70.0)
    # A busy merchant: 400 transactions in 4 hours (~8 per 5-minute tile, several in one
    # second) from the background cards and 40 one-off cards, so its offline state rows hold
    # later transactions than the requests that read them, and its tiles aggregate many.
    busy_start = BASE + pd.Timedelta(days=30, hours=9)
    busy_offsets = np.sort(rng.integers(0, 4 * 3_600, 400))
    for k, offset in enumerate(busy_offsets):
        card = f"c{k % 12:02d}" if k % 2 else f"busy card {k % 40}"
        add(card, "m_busy", busy_start + pd.Timedelta(seconds=int(offset)), rng.lognormal(3, 1))

    tx = pd.DataFrame(
        rows, columns=["customer_id", "merchant_id", "timestamp", "amount", "lat", "long"]
    )
    tx = tx.sort_values("timestamp", kind="stable").reset_index(drop=True)
    tx.insert(0, "transaction_id", [f"t{i:06d}" for i in range(len(tx))])
    fraud = (rng.random(len(tx)) < 0.15).astype("int8")
    delay = pd.to_timedelta(rng.uniform(0.2, 12, len(tx)) * 86_400, unit="s").round("s")
    labels = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"],
            "is_fraud": fraud,
            "label_timestamp": tx["timestamp"] + delay,
            "fraud_pattern": np.where(fraud == 1, "unknown", "none"),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": sorted(tx["customer_id"].unique()),
        }
    )
    customers["home_lat"] = 40.0 + rng.normal(0, 0.3, len(customers))
    customers["home_long"] = -74.0 + rng.normal(0, 0.3, len(customers))
    customers["created_at"] = BASE - pd.Timedelta(days=100)
    merchants = pd.DataFrame({"merchant_id": sorted(tx["merchant_id"].unique())})
    merchants["category"] = "retail"
    merchants["lat"], merchants["long"] = 40.0, -74.0
    return {"transactions": tx, "labels": labels, "customers": customers, "merchants": merchants}


def write_raw(tables: dict[str, pd.DataFrame], raw_dir: Path) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        table = pa.Table.from_pandas(frame, schema=RAW_TABLES[name], preserve_index=False)
        pq.write_table(table, raw_dir / f"{name}.parquet")


@dataclass
class FeatureProject:
    root: Path
    settings: Settings
    tables: dict[str, pd.DataFrame]


def flush_online(settings: Settings) -> None:
    """Empty the project's online store: the one server, or every master of a cluster."""
    from fraud_platform.redis_cluster import client_for

    client_for(settings.redis_url, settings.redis_mode).flushdb()


def feast_cli(
    settings: Settings, *args: str, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the real Feast CLI in feature_repo/ against this settings' root and Redis.

    As the platform runs it (``python -m feature_engine.feast_cli``: Feast's click command,
    started faster); ``script=True`` runs the installed ``feast`` script itself.
    """
    from feature_engine.feast_cli import feast_command

    env = {**os.environ, **feast_environment(settings)}
    command = (
        [str(Path(sys.executable).with_name("feast")), *args] if script else feast_command(*args)
    )
    return subprocess.run(
        command,
        cwd=settings.paths.feature_repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
