"""Nothing lost: Redis without persistence killed with ``kill -9`` under load, then rebuilt.

The API journals every answered transaction (``data/ingested``) before it answers; it runs in the
default ingest mode (the Redis Stream and its worker: the stream's unfolded tail dies with Redis,
the journal keeps it). After the crash, ``fraud features rebuild-online`` rebuilds the online
state from the raw data plus that journal, and every card's and merchant's features must equal
the brute-force reference over the raw data plus exactly the transactions the API answered 200
for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.redis_server import find_redis_server
from fraud_platform.settings import Settings
from tests.support import stack
from tests.support.live_api import API_KEY, Stack, start_ingest_worker, stop, stop_ingest_worker
from tests.support.reference import Reference, Request, mismatches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Requests answered before Redis is killed (every 7th card, every 3rd merchant: each of the 40
# cards and 15 merchants gets several), then 40 more while it is down.
KILL_AT = 100


@contextmanager
def volatile_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server with no persistence at all: a kill loses everything it held."""
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _fraud(env: dict[str, str], root: Path, *args: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("fraud")), *args],
        env=env, cwd=root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"fraud {args}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_redis_killed_under_load_is_rebuilt_exactly_from_the_journal(
    serving_stack: Stack, tmp_path: Path
) -> None:
    root = stack.clone_root(serving_stack.root, tmp_path / "root")
    redis_port = stack.free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    env = serving_stack.api_env(root, REDIS_URL=url)  # stream mode, the default
    meta = serving_stack.meta
    customers, merchants = meta["all_customers"][:40], meta["all_merchants"][:15]
    start = pd.Timestamp(meta["last_timestamp"]) + timedelta(hours=1)
    answered: list[dict] = []
    refused = 0
    with volatile_redis(redis_port) as server:
        _fraud(env, root, "features", "apply")  # the clone's registry: the clone's tables
        _fraud(env, root, "features", "materialize")
        worker = start_ingest_worker(root, env, "rebuild")
        api = stack.start_api(root, env, api_port := stack.free_port())
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as client:
                for i in range(KILL_AT + 40):
                    if i == KILL_AT:
                        os.kill(server.pid, signal.SIGKILL)  # mid-load, no persistence
                        server.wait(timeout=10)
                    body = {
                        "transaction_id": f"rb-{i}",
                        "timestamp": (start + timedelta(seconds=37 * i)).isoformat(),
                        "customer_id": customers[(i * 7) % len(customers)],
                        "merchant_id": merchants[(i * 3) % len(merchants)],
                        "amount": round(5 + (i % 17) * 3.1, 2),
                        "lat": 40.0 + (i % 5) / 10,
                        "long": -74.0 - (i % 3) / 10,
                    }
                    response = client.post("/predict", json=body, headers={"X-API-Key": API_KEY})
                    assert response.status_code in (200, 503), response.text
                    if response.status_code == 200:
                        answered.append(body)
                    else:
                        refused += 1
        finally:
            stop(api)
            stop_ingest_worker(worker)  # it was retrying against the dead Redis
    assert len(answered) >= KILL_AT * 3 // 4 and refused > 0  # the kill happened under load

    with volatile_redis(redis_port):  # back, empty
        assert redis.Redis(port=redis_port).dbsize() == 0
        _fraud(env, root, "features", "rebuild-online")
        settings = Settings(project_root=root, redis_url=url)
        raw = settings.paths.raw_dir
        txns = pd.read_parquet(raw / "transactions.parquet")
        extra = pd.DataFrame(answered).assign(
            timestamp=lambda f: pd.to_datetime(f["timestamp"]).dt.as_unit("us")
        )
        reference = Reference(
            pd.concat([txns, extra[txns.columns]], ignore_index=True),
            pd.read_parquet(raw / "labels.parquet"),
            pd.read_parquet(raw / "customers.parquet"),
        )
        probe_at = pd.Timestamp(answered[-1]["timestamp"]) + timedelta(minutes=30)
        probes = [
            Request(c, merchants[k % len(merchants)], probe_at.value // 1000, 25.0, 40.2, -74.1)
            for k, c in enumerate(customers)
        ]
        from feature_engine.store import online_features, open_store, request_row

        store = open_store(settings)  # the clone's root and Redis, no process-wide state
        rows = [
            request_row(q.customer_id, q.merchant_id, probe_at.to_pydatetime(), q.amount,
                        q.lat, q.long)
            for q in probes
        ]  # fmt: skip
        got = online_features(store, rows, FEATURE_SERVICE_NAME)
    problems = [
        (q.customer_id, bad)
        for q, row in zip(probes, got, strict=True)
        if (bad := mismatches(reference.features(q), row))
    ]
    assert not problems, problems[:5]
    # The rebuild really restored what the API ingested: probes see the replayed activity.
    assert sum(row["txn_count_24h"] for row in got) >= len(answered)
