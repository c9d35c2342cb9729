"""Ingestion through the Redis Stream: real redis-server, uvicorn, ``fraud serve ingest-worker``.

One stack for the whole module (its own Redis, the clone applied and materialized), in order:
read-your-writes and exactness of every answer of one card after another, no lost update of
one card under concurrent requests, a worker killed between its fold and its acknowledgement
(the entries another worker claims are not folded twice), then ``kill -9`` of the worker under
load and its restart: every answered transaction is folded once (the state equals the
brute-force reference), the journal holds every one of them, and ``rebuild-online`` from the
journal gives the same state. Last, the worker's life: it ends with a SIGKILLed ``fraud serve
api`` that started it, and a SIGTERM stops it promptly while its Redis is gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis

from feature_engine.offline.events import TRANSACTIONS_JOURNAL
from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.journal import read_journal
from fraud_platform.settings import Settings
from tests.integration.serving.test_rebuild import _fraud, volatile_redis
from tests.support import stack
from tests.support.live_api import (
    API_KEY,
    Stack,
    start_ingest_worker,
    stop,
    stream_drained,
    wait_gone,
)
from tests.support.reference import Reference, Request, mismatches

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class StreamStack:
    """The clone's Redis, its API in stream mode and its ingestion worker."""

    def __init__(self, serving_stack: Stack, root: Path, port: int) -> None:
        self.root = root
        self.url = f"redis://127.0.0.1:{port}/0"
        self.env = serving_stack.api_env(
            root, REDIS_URL=self.url, SERVING_INGEST_MODE="stream", SERVING_INGEST_WAIT_SECONDS="3"
        )
        self.meta = serving_stack.meta
        self.redis = redis.Redis.from_url(self.url)
        self.worker: subprocess.Popen[bytes] | None = None
        self.answered: list[dict[str, Any]] = []
        self.base = ""

    def start_worker(self) -> None:
        self.worker = start_ingest_worker(
            self.root, self.env, "test-worker", "--claim-idle-ms", "500", "--batch", "50"
        )

    def stop_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGTERM)  # it ends after the batch in hand
        assert self.worker.wait(timeout=30) == 0

    def stream(self) -> bytes:
        keys = list(self.redis.scan_iter(match=b"*:ingest:txn"))
        assert len(keys) == 1, keys
        return keys[0]

    def drained(self) -> None:
        """Wait until every appended entry is folded and acknowledged."""
        stream_drained(self.url, where=str(self.root / "worker.log"))

    def post(self, client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
        response = client.post("/predict", json=body, headers={"X-API-Key": API_KEY})
        assert response.status_code == 200, response.text
        self.answered.append(body)
        return response

    def reference(self) -> Reference:
        raw = Settings(project_root=self.root, redis_url=self.url).paths.raw_dir
        txns = pd.read_parquet(raw / "transactions.parquet")
        extra = pd.DataFrame(self.answered).assign(
            timestamp=lambda f: pd.to_datetime(f["timestamp"]).dt.as_unit("us")
        )
        return Reference(
            pd.concat([txns, extra[txns.columns]], ignore_index=True),
            pd.read_parquet(raw / "labels.parquet"),
            pd.read_parquet(raw / "customers.parquet"),
        )


@pytest.fixture(scope="module")
def streamed(
    serving_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StreamStack]:
    root = stack.clone_root(serving_stack.root, tmp_path_factory.mktemp("stream") / "root")
    port = stack.free_port()
    s = StreamStack(serving_stack, root, port)
    with volatile_redis(port):
        _fraud(s.env, root, "features", "apply")
        _fraud(s.env, root, "features", "materialize")
        s.start_worker()
        api = stack.start_api(root, s.env, api_port := stack.free_port())
        s.base = f"http://127.0.0.1:{api_port}"
        try:
            yield s
        finally:
            stop(api)
            if s.worker is not None:
                stop(s.worker)


def _body(s: StreamStack, i: int, customer: str, merchant: str, seconds: float) -> dict[str, Any]:
    start = pd.Timestamp(s.meta["last_timestamp"]) + timedelta(hours=1)
    return {
        "transaction_id": f"st-{i}",
        "timestamp": (start + timedelta(seconds=seconds)).isoformat(),
        "customer_id": customer,
        "merchant_id": merchant,
        "amount": round(5 + (i % 17) * 3.1, 2),
        "lat": 40.0 + (i % 5) / 10,
        "long": -74.0 - (i % 3) / 10,
    }


def _request(body: dict[str, Any]) -> Request:
    t = pd.Timestamp(body["timestamp"])
    return Request(
        body["customer_id"], body["merchant_id"], t.value // 1000, body["amount"],
        body["lat"], body["long"],
    )  # fmt: skip


def _check_online(s: StreamStack, probes: list[Request]) -> None:
    """The online features of each probe (read through Feast) equal the reference's."""
    from feature_engine.store import online_features, open_store, request_row

    reference = s.reference()
    settings = Settings(project_root=s.root, redis_url=s.url)
    rows = [
        request_row(q.customer_id, q.merchant_id, pd.Timestamp(q.t_us, unit="us", tz="UTC")
                    .to_pydatetime(), q.amount, q.lat, q.long)
        for q in probes
    ]  # fmt: skip
    got = online_features(open_store(settings), rows, FEATURE_SERVICE_NAME)
    problems = [
        (q.customer_id, bad)
        for q, row in zip(probes, got, strict=True)
        if (bad := mismatches(reference.features(q), row))
    ]
    assert not problems, problems[:5]


def test_each_answer_sees_the_previous_transactions_exactly(streamed: StreamStack) -> None:
    """Back-to-back transactions of few cards: every answer equals the reference."""
    customers = streamed.meta["all_customers"][:3]
    merchants = streamed.meta["all_merchants"][:2]
    answers = []
    with httpx.Client(base_url=streamed.base, timeout=10) as client:
        for i in range(40):
            body = _body(streamed, i, customers[i % 3], merchants[i % 2], 20 * i)
            answers.append((body, streamed.post(client, body).json()["features"]))
    reference = streamed.reference()  # point in time: later transactions do not count
    problems = [
        (body["transaction_id"], bad)
        for body, got in answers
        if (bad := mismatches(reference.features(_request(body)), got))
    ]
    assert not problems, problems[:5]
    assert answers[-1][1]["txn_count_1h"] >= 10  # the answers really saw ingested history


def test_concurrent_transactions_of_one_card_lose_no_update(streamed: StreamStack) -> None:
    n = 24
    card = streamed.meta["all_customers"][5]
    bodies = [
        _body(streamed, 100 + i, card, streamed.meta["all_merchants"][3 + i % 3], 2000 + i)
        for i in range(n)
    ]
    with httpx.Client(base_url=streamed.base, timeout=10) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda b: streamed.post(client, b), bodies))
        probe = _body(streamed, 199, card, streamed.meta["all_merchants"][3], 2100)
        got = streamed.post(client, probe).json()["features"]
    assert got["txn_count_1h"] == n


def test_a_pending_card_does_not_hold_up_another_card_of_its_slot(streamed: StreamStack) -> None:
    """Pending markers are per entity: only the card with a transaction pending waits."""
    from feature_engine.online.redis_layout import RedisLayout, key_slot
    from feature_engine.online.writer import OnlineStateWriter
    from feature_engine.store import open_store
    from feature_repo.services import STATE_VELOCITY
    from fraud_platform.settings import load_params
    from serving.stream import pending_key

    settings = Settings(project_root=streamed.root, redis_url=streamed.url)
    layout = RedisLayout(open_store(settings))
    writer = OnlineStateWriter(
        layout, load_params(settings.paths.params_file).features, STATE_VELOCITY
    )
    by_slot: dict[int, str] = {}
    for i in range(100_000):  # two new cards whose state keys hash to one cluster slot
        card = f"slot-card-{i}"
        slot = key_slot(writer.state_key("customer_activity", card))
        if slot in by_slot:
            held, other = by_slot[slot], card
            break
        by_slot[slot] = card
    marker = pending_key(writer.state_key("customer_activity", held))
    streamed.redis.sadd(marker, "a-transaction-not-folded-yet")  # as an unfolded XADD leaves it
    try:
        with httpx.Client(base_url=streamed.base, timeout=10) as client:
            started = time.monotonic()
            streamed.post(client, _body(streamed, 300, other, "slot-shop-1", 2500))
            assert time.monotonic() - started < 1.5  # not held up by its slot-mate (3 s)
            started = time.monotonic()
            streamed.post(client, _body(streamed, 301, held, "slot-shop-2", 2500))
            assert time.monotonic() - started >= 2.5  # the pending card itself waits
    finally:
        streamed.redis.srem(marker, "a-transaction-not-folded-yet")
    streamed.drained()


# A worker that folded a batch and died before acknowledging it: its script (the worker's own
# read and fold, then SIGKILL of itself at that exact point).
_DOOMED = """
import os, signal, sys
from serving.stream import build_worker
worker = build_worker("doomed", batch=1000)
worker.ensure_group()
entries = worker.read(b">")
txns, _ = worker.fold(entries)
print(len(entries), len(txns), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_entries_of_a_worker_killed_mid_batch_are_folded_once(streamed: StreamStack) -> None:
    """Folded, not acknowledged, claimed by another worker: folded once, not twice."""
    streamed.stop_worker()
    pairs = list(
        zip(streamed.meta["all_customers"][40:60], streamed.meta["all_merchants"][40:60],
            strict=True)
    )  # fmt: skip
    # A card and a merchant each: nothing pending blocks a request while no worker runs.
    bodies = [_body(streamed, 500 + i, c, m, 3000 + i) for i, (c, m) in enumerate(pairs)]
    with httpx.Client(base_url=streamed.base, timeout=10) as client:
        for body in bodies:
            streamed.post(client, body)
    doomed = subprocess.run(
        [sys.executable, "-c", _DOOMED], env=streamed.env, cwd=streamed.root,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert doomed.returncode == -signal.SIGKILL, doomed.stderr[-2000:]
    assert doomed.stdout.split() == [str(len(bodies))] * 2  # read and folded the whole batch
    stream = streamed.stream()
    consumers = {c["name"]: c["pending"] for c in streamed.redis.xinfo_consumers(stream, "fold")}
    assert consumers[b"doomed"] == len(bodies)  # folded yet still pending: the crash window
    probe_at = pd.Timestamp(bodies[-1]["timestamp"]) + timedelta(minutes=1)
    probes = [Request(c, m, probe_at.value // 1000, 12.5, 40.1, -74.0) for c, m in pairs]
    _check_online(streamed, probes)  # the dead worker's fold went through

    time.sleep(0.6)  # past --claim-idle-ms: the restarted worker claims the dead one's entries
    streamed.start_worker()
    streamed.drained()
    consumers = {c["name"]: c["pending"] for c in streamed.redis.xinfo_consumers(stream, "fold")}
    assert consumers[b"doomed"] == 0
    _check_online(streamed, probes)  # folded again, each would count twice


def test_worker_killed_under_load_loses_nothing(streamed: StreamStack) -> None:
    """kill -9 mid-load, restart: every answered transaction folded once, journaled, rebuildable."""
    assert streamed.worker is not None
    customers = streamed.meta["all_customers"][10:40]
    merchants = streamed.meta["all_merchants"][5:15]
    bodies = [
        _body(streamed, 1000 + i, customers[(i * 7) % 30], merchants[(i * 3) % 10], 4000 + 11 * i)
        for i in range(160)
    ]
    killed = threading.Event()
    left: dict[str, int] = {}

    def post_all(part: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=streamed.base, timeout=15) as client:
            for k, body in enumerate(part):
                streamed.post(client, body)
                if k == len(part) // 2 and not killed.is_set():
                    killed.set()
                    worker = streamed.worker
                    assert worker is not None
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.wait(timeout=10)
                    stream = streamed.stream()
                    left["pending"] = streamed.redis.xpending(stream, "fold")["pending"]
                    left["backlog"] = streamed.redis.xlen(stream)
                    # Restarted under load, with the same consumer name: it takes its
                    # pending entries back first.
                    streamed.start_worker()

    with ThreadPoolExecutor(max_workers=4) as pool:
        # Each thread posts every 4th transaction: one card's transactions stay in time order.
        list(pool.map(post_all, [bodies[j::4] for j in range(4)]))
    streamed.drained()
    assert left["backlog"] > 0 or left["pending"] > 0  # the kill really left work behind

    probe_at = pd.Timestamp(bodies[-1]["timestamp"]) + timedelta(minutes=5)
    probes = [
        Request(c, merchants[k % 10], probe_at.value // 1000, 25.0, 40.2, -74.1)
        for k, c in enumerate(customers)
    ]
    _check_online(streamed, probes)  # folded once each: a double or lost fold changes counts
    settings = Settings(project_root=streamed.root, redis_url=streamed.url)
    journal = read_journal(
        settings.paths.ingested_dir, TRANSACTIONS_JOURNAL, columns=["transaction_id"]
    )
    journaled = set(journal["transaction_id"].to_pylist())
    assert {b["transaction_id"] for b in streamed.answered} <= journaled

    # Durable files alone rebuild the same state: Redis emptied, rebuilt from raw + journal.
    streamed.stop_worker()
    streamed.redis.flushall()
    _fraud(streamed.env, streamed.root, "features", "rebuild-online")
    _check_online(streamed, probes)


def _worker_state(client: httpx.Client) -> tuple[list[str], float | None, float]:
    """``/ready``'s warnings, ``workers_alive`` (None before the first check), unwaited reads."""
    from prometheus_client.parser import text_string_to_metric_families

    warnings = client.get("/ready").json()["warnings"]
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    alive = [s.value for s in families["fraud_api_ingestion_workers_alive"].samples]
    unwaited = families["fraud_api_ingestion_unwaited_reads"].samples[0].value
    return warnings, (alive[0] if alive else None), unwaited


def _until(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def test_no_live_worker_is_reported_and_not_waited_for(streamed: StreamStack) -> None:
    """A dead worker: /ready warns, the gauge is 0, a card's next request does not wait."""
    streamed.start_worker()
    card, shop = streamed.meta["all_customers"][70], streamed.meta["all_merchants"][70]
    with httpx.Client(base_url=streamed.base, timeout=10) as client:
        assert _until(lambda: (s := _worker_state(client))[1] == 1 and not s[0])  # consuming
        assert streamed.worker is not None
        os.kill(streamed.worker.pid, signal.SIGKILL)  # no clean stop: its beat ages out
        streamed.worker.wait(timeout=10)
        warnings, alive, unwaited = _until(lambda: (s := _worker_state(client))[0] and s)
        assert alive == 0 and "no ingestion worker consumes" in warnings[0], warnings
        first = streamed.post(client, _body(streamed, 2000, card, shop, 9000))
        started = time.monotonic()
        second = streamed.post(client, _body(streamed, 2001, card, shop, 9010))
        took = time.monotonic() - started
        assert took < 1.5  # not SERVING_INGEST_WAIT_SECONDS (3 s) for a fold that cannot come
        assert _worker_state(client)[2] == unwaited + 1  # counted: it had one pending
        before = first.json()["features"]["txn_count_1h"]
        assert second.json()["features"]["txn_count_1h"] == before  # without the first one

        streamed.start_worker()  # same consumer name: folds what the stream holds, once
        streamed.drained()
        assert _until(lambda: not _worker_state(client)[0])  # the warning is gone
        third = streamed.post(client, _body(streamed, 2002, card, shop, 9020))
        assert third.json()["features"]["txn_count_1h"] == before + 2
    streamed.stop_worker()


def test_worker_of_a_sigkilled_api_ends_with_it(streamed: StreamStack) -> None:
    """``fraud serve api`` SIGKILLed (no ``finally`` runs): the worker it started exits too."""
    port = stack.free_port()
    log = streamed.root / "serve-api.log"
    api = subprocess.Popen(
        [str(Path(sys.executable).with_name("fraud")), "serve", "api", "--port", str(port)],
        env=streamed.env, cwd=streamed.root, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert api.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        found = re.findall(r"ingestion worker: pid (\d+)", log.read_text())
        assert len(found) == 1, log.read_text()[-3000:]
        worker = int(found[0])
        assert wait_gone([worker], timeout=0) == [worker]  # it runs while its API does
        os.kill(api.pid, signal.SIGKILL)
        api.wait(timeout=10)
        assert wait_gone([worker], timeout=10) == [], log.read_text()[-3000:]
    finally:
        stop(api)


def test_worker_stops_promptly_while_its_redis_is_gone(streamed: StreamStack) -> None:
    """SIGTERM with Redis down: the worker exits within ~its 2 s client timeout, not retrying."""
    port = stack.free_port()
    env = streamed.env | {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    with volatile_redis(port) as server:
        worker = start_ingest_worker(streamed.root, env, "outage-worker")
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 60
            while not list(client.scan_iter(match=b"*:ingest:txn")):  # its group is created
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            server.kill()
            server.wait(timeout=10)
            time.sleep(1.5)  # the worker sees the outage and retries
            assert worker.poll() is None  # it survives the outage...
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=10) == 0
            assert time.monotonic() - started < 3.0  # ...and stops at once (was ~7 s)
        finally:
            stop(worker)
