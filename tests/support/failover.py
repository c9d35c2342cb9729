"""A Redis Cluster failover drill under load: kill -9 a master while a live API scores traffic.

Shared by ``tests/integration/cluster/test_failover.py`` (which asserts) and
``benchmarks/bench_cluster.py`` (which prints). Closed-loop client threads post ``/predict``
(one new card per transaction, merchants shared, so the writes reach every master); a master
is killed with SIGKILL; the drill waits until the survivors promoted its replica and the API
has answered only 200s for a while, then restarts the killed node (it rejoins as a replica)
and checks, card by card, which transactions answered 200 are missing from the online state.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fraud_platform import redis_cluster


@dataclass(frozen=True)
class Sent:
    """One request: when it left and came back (``time.monotonic()``), its answer, its card."""

    sent: float
    done: float
    status: int  # -1: no HTTP answer at all
    transaction_id: str
    customer_id: str


class Load:
    """Closed-loop ``/predict`` clients on keep-alive connections, one new card per request."""

    def __init__(self, port: int, api_key: str, start: datetime, clients: int, prefix: str):
        """Prepare ``clients`` threads; transactions are dated from ``start`` on."""
        self.port, self.api_key, self.start, self.prefix = port, api_key, start, prefix
        self.stop = threading.Event()
        self.results: list[Sent] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _client(self, k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", "X-API-Key": self.api_key}
        step = 0
        while not self.stop.is_set():
            step += 1
            txn_id, customer = f"{self.prefix}-{k}-{step}", f"{self.prefix}-c{k}-{step}"
            body = {
                "transaction_id": txn_id,
                "timestamp": (self.start + timedelta(milliseconds=step)).isoformat(),
                "customer_id": customer,
                "merchant_id": f"{self.prefix}-m{step % 64}",
                "amount": 10.0 + step % 50,
                "lat": 40.7,
                "long": -73.9,
            }
            sent = time.monotonic()
            try:
                conn.request("POST", "/predict", body=json.dumps(body), headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                status = -1
                time.sleep(0.01)
            with self._lock:
                self.results.append(Sent(sent, time.monotonic(), status, txn_id, customer))
        conn.close()

    def snapshot(self) -> list[Sent]:
        """The requests answered so far."""
        with self._lock:
            return list(self.results)


@dataclass
class Drill:
    """What a failover drill saw. Times are seconds after the kill."""

    killed_port: int
    promoted_port: int | None
    statuses: Counter[int]
    first_503: float | None  # first request answered 503 after the kill
    cluster_ok: float  # every survivor says cluster_state:ok, with the replica promoted
    all_200_from: float | None  # from here on (request send time) every answer was a 200
    answered: int  # transactions answered 200
    lost: list[Sent] = field(default_factory=list)  # answered 200, missing from online state
    requests: list[Sent] = field(default_factory=list)

    def lost_window(self, kill: float) -> tuple[float, float] | None:
        """Earliest and latest answer time (relative to the kill) of the lost transactions."""
        if not self.lost:
            return None
        return min(s.done - kill for s in self.lost), max(s.done - kill for s in self.lost)


def _backlog(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith("fraud_api_ingest_backlog "):
            return float(line.split()[1])
    return 0.0


def run_drill(
    cluster_root: Path,
    api_port: int,
    api_key: str,
    start: datetime,
    read_customer_txn_ids: Any,
    clients: int = 4,
    warmup: float = 1.5,
    settle: float = 2.0,
    limit: float = 40.0,
    prefix: str = "fo",
) -> tuple[Drill, float]:
    """Kill -9 one master under load; return what happened and the kill's monotonic time.

    Args:
        cluster_root: Root of the running local cluster (:mod:`fraud_platform.redis_cluster`).
        api_port: Port of a live API on that cluster.
        api_key: A key the API accepts.
        start: Timestamp of the first transaction (later ones follow by 1 ms).
        read_customer_txn_ids: ``customer_id -> transaction ids in its online state``.
        clients: Concurrent client threads.
        warmup: Seconds of load before the kill.
        settle: Seconds of only-200 answers, after the failover, before the load stops.
        limit: Longest the drill waits for recovery.
        prefix: Prefix of the drill's ids (distinct per drill on one stack).
    """
    ports = list(redis_cluster.status(cluster_root).ports)  # type: ignore[union-attr]
    before = redis_cluster.masters(ports[0])
    victim = sorted(before)[0]
    survivors = [p for p in ports if p != victim]
    with Load(api_port, api_key, start, clients, prefix) as load:
        time.sleep(warmup)
        kill = time.monotonic()
        redis_cluster.kill_node(cluster_root, victim)
        cluster_ok: float | None = None
        deadline = kill + limit
        while time.monotonic() < deadline:
            now = time.monotonic()
            if cluster_ok is None:
                try:
                    view = redis_cluster.masters(survivors[0])
                except Exception:
                    view = {}
                states = {redis_cluster.cluster_state(p) for p in survivors}
                if victim not in view and len(view) == 3 and states == {"ok"}:
                    cluster_ok = now - kill
            if cluster_ok is not None and now - settle > kill + cluster_ok:
                tail = [s for s in load.snapshot() if s.sent > now - settle]
                if tail and all(s.status == 200 for s in tail):
                    break  # failed over, and the API has answered only 200s for `settle` s
            time.sleep(0.05)
    requests = load.snapshot()
    after = sorted((s for s in requests if s.sent > kill), key=lambda s: s.sent)
    first_503 = next((s.done - kill for s in after if s.status == 503), None)
    last_bad = max((s.sent for s in after if s.status != 200), default=None)
    all_200_from = None
    if after and after[-1].status == 200:
        all_200_from = (
            0.0 if last_bad is None else min(s.sent for s in after if s.sent > last_bad) - kill
        )
    promoted = before.get(victim)
    # Let the API's background ingestion drain (writes queued during the outage are retried).
    drain_deadline = time.monotonic() + 15
    while _backlog(api_port) > 0 and time.monotonic() < drain_deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    redis_cluster.start_node(cluster_root, victim)  # back, as the new master's replica
    redis_cluster.wait_healthy(ports)
    answered = [s for s in requests if s.status == 200]
    lost = [s for s in answered if s.transaction_id not in read_customer_txn_ids(s.customer_id)]
    drill = Drill(
        killed_port=victim,
        promoted_port=promoted,
        statuses=Counter(s.status for s in requests),
        first_503=first_503,
        cluster_ok=cluster_ok if cluster_ok is not None else float("nan"),
        all_200_from=all_200_from,
        answered=len(answered),
        lost=lost,
        requests=requests,
    )
    return drill, kill
