"""Fault drills on the real serving stack; the figures the README quotes.

Builds (or reuses, ``--root``) the small test stack of ``tests/support/stack.py`` (a temporary
project root, a real ``redis-server``, Feast state, a registered model) and runs the API as a
real uvicorn process, loaded by client threads on keep-alive connections:

1. *Journal*: the cost of one prediction-log append (one JSON line, one ``os.write``).
2. *Redis stopped under load*: ``/predict`` latency of the 503s while Redis is down, ``/health``
   latency all along, and the time from Redis answering again to the first and the last-needed
   200 (after which every answer is a 200).
3. *kill -9 under load*: answered predictions (200 received by a client) against rows in the
   prediction log after ``SIGKILL``; then a restart (which compacts the dead process's segment),
   more load, ``SIGTERM``, and the same count.
4. *Registry unreachable*: time from spawning uvicorn to ``/health`` 200 with
   ``MLFLOW_TRACKING_URI`` on a port nobody listens on, against a reachable registry; with
   ``--mlflow-server``, also the time from a real ``mlflow server`` coming up to ``/ready`` 200.

Everything binds 127.0.0.1, is bounded in time, and stops what it started.

Run: ``.venv/bin/python -m benchmarks.bench_faults [--clients 4] [--outage 3] [--mlflow-server]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support import stack

API_KEY = "bench-key"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def ms(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"p50 {percentile(values, 50) * 1e3:.1f}  p99 {percentile(values, 99) * 1e3:.1f}  "
        f"max {max(values) * 1e3:.1f} ms (n={len(values)})"
    )


class Load:
    """Closed-loop client threads on /predict and a /health prober every 10 ms."""

    def __init__(self, port: int, meta: dict[str, Any], clients: int, prefix: str) -> None:
        self.port, self.prefix = port, prefix
        self.t0 = datetime.fromisoformat(meta["last_timestamp"]) + timedelta(hours=3)
        self.stop = threading.Event()
        self.results: list[tuple[float, float, int, str]] = []  # sent, seconds, status, id
        self.health: list[tuple[float, float, int]] = []
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]
        self.threads.append(threading.Thread(target=self._prober))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[http.client.HTTPConnection, int]:
        """One request; status -1 and a fresh connection when the API is unreachable."""
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            response.read()
            return conn, response.status
        except OSError:
            conn.close()
            return self._connect(), -1

    def _client(self, k: int) -> None:
        conn = self._connect()
        step = 0
        headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
        while not self.stop.is_set():
            step += 1
            txn_id = f"{self.prefix}-{k}-{step}"
            body = {
                "transaction_id": txn_id,
                "timestamp": (self.t0 + timedelta(milliseconds=5 * step)).isoformat(),
                "customer_id": f"{self.prefix}-c{k}-{step // 16}",
                "merchant_id": f"{self.prefix}-m{k}",
                "amount": 10.0 + step % 50,
                "lat": 40.7,
                "long": -73.9,
            }
            sent = time.monotonic()
            conn, status = self._send(conn, "POST", "/predict", json.dumps(body), headers)
            if status == -1:
                time.sleep(0.01)
            self.results.append((sent, time.monotonic() - sent, status, txn_id))
        conn.close()

    def _prober(self) -> None:
        conn = self._connect()
        while not self.stop.is_set():
            sent = time.monotonic()
            conn, status = self._send(conn, "GET", "/health")
            self.health.append((sent, time.monotonic() - sent, status))
            time.sleep(0.01)
        conn.close()

    def answered(self) -> set[str]:
        """Ids of the transactions answered 200."""
        return {txn_id for _, _, status, txn_id in self.results if status == 200}


def wait_for(port: int, path: str, seconds: float) -> float | None:
    """Seconds until ``GET path`` answers 200, or None."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    return None


def spawn_api(root: Path, env: dict[str, str], port: int, log: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
        env=env, cwd=root, stdout=(root / log).open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------ the drills


def drill_journal(n: int = 20_000) -> None:
    from fraud_platform.contracts import PREDICTION_LOG, prediction_log_columns
    from fraud_platform.journal import Journal

    features = {f"f{i}": "float64" if i % 2 else "int64" for i in range(17)}
    record: dict[str, Any] = {
        "transaction_id": "t" * 32, "customer_id": "c01734", "merchant_id": "m0011",
        "timestamp": datetime.now(UTC), "amount": 494.5, "lat": 42.1, "long": -70.9,
        "scored_at": datetime.now(UTC),
        **{name: (1.5 if kind == "float64" else 3) for name, kind in features.items()},
        "probability": 0.3, "prediction": "LEGIT", "threshold": 0.98, "model_name": "m",
        "model_version": "1", "model_run_id": "r" * 32, "cold_start": False,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(Path(folder), PREDICTION_LOG, prediction_log_columns(features)).open()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            journal.append(record)
            times.append(time.perf_counter() - started)
        journal.close()
    size = len(journal.encode(record))
    print(f"\n1. journal append ({size} B line, 31 columns): p50 {percentile(times, 50) * 1e6:.1f} "
          f"us, p99 {percentile(times, 99) * 1e6:.1f} us (n={n})")  # fmt: skip


def drill_redis_outage(
    root: Path, env: dict[str, str], meta: dict[str, Any], clients: int, outage: float
) -> None:
    from fraud_platform import redis_server

    port = stack.free_port()
    api = spawn_api(root, env, port, "bench-faults-api.log")
    try:
        if wait_for(port, "/ready", 120) is None:
            raise RuntimeError("the API did not become ready")
        with Load(port, meta, clients, "outage") as load:
            time.sleep(3.0)
            redis_server.stop(root)
            down_at = time.monotonic()
            time.sleep(outage)
            start_from = time.monotonic()
            redis_server.start(root=root)
            up_at = time.monotonic()  # Redis answers PING from here
            time.sleep(5.0)
        results, health = load.results, load.health
    finally:
        end(api)
    before = [s for t, s, st, _ in results if t < down_at and st == 200]
    during_503 = [s for t, s, st, _ in results if down_at < t < start_from and st == 503]
    during_other = [st for t, _, st, _ in results if down_at < t < start_from and st != 503]
    after_ok = sorted(t for t, _, st, _ in results if t >= up_at and st == 200)
    after_503 = sorted(t for t, _, st, _ in results if t >= up_at and st != 200)
    statuses = sorted({st for _, _, st, _ in results})
    print(f"\n2. Redis stopped for {outage:.0f} s under load ({clients} clients, closed loop)")
    print(f"   statuses seen: {statuses}")
    print(f"   /predict 200 before the outage: {ms(before)}")
    others = f"; other statuses: {sorted(set(during_other))}" if during_other else ""
    print(f"   /predict 503 during the outage: {ms(during_503)}{others}")
    outage_health = [s for t, s, _ in health if down_at < t < up_at]
    print(f"   /health during the outage:      {ms(outage_health)}")
    print(f"   /health over the whole run:     {ms([s for _, s, _ in health])}; "
          f"non-200: {sum(1 for *_, st in health if st != 200)}")  # fmt: skip
    if after_ok:
        last_bad = after_503[-1] - up_at if after_503 else 0.0
        print(f"   after Redis answers again: first 200 after {after_ok[0] - up_at:.2f} s, "
              f"last non-200 at {last_bad:.2f} s")  # fmt: skip
    else:
        print("   no 200 after Redis came back!")


def drill_kill(root: Path, env: dict[str, str], meta: dict[str, Any], clients: int) -> None:
    from fraud_platform.contracts import read_prediction_log

    folder = root / "data" / "prediction_log"
    port = stack.free_port()
    api = spawn_api(root, env, port, "bench-faults-kill.log")
    try:
        if wait_for(port, "/ready", 120) is None:
            raise RuntimeError("the API did not become ready")
        before = set(read_prediction_log(folder).get("transaction_id", []))
        with Load(port, meta, clients, f"kill{int(time.time())}") as load:
            time.sleep(5.0)
            api.send_signal(signal.SIGKILL)
            api.wait()
            killed_at = time.monotonic()
        answered = {i for t, _, st, i in load.results if st == 200 and t < killed_at}
    finally:
        end(api)
    logged = set(read_prediction_log(folder)["transaction_id"]) - before
    print(f"\n3. kill -9 under load ({clients} clients, 5 s)")
    print(f"   answered 200: {len(answered)}; in the log: {len(logged)}; answered but not "
          f"logged (lost): {len(answered - logged)}; logged, answer never received: "
          f"{len(logged - answered)}")  # fmt: skip

    api = spawn_api(root, env, port, "bench-faults-kill.log")
    try:
        started = time.monotonic()
        if wait_for(port, "/ready", 120) is None:
            raise RuntimeError("the API did not restart")
        restart = time.monotonic() - started
        orphans = list(folder.glob("*.jsonl"))
        before = set(read_prediction_log(folder)["transaction_id"])
        with Load(port, meta, clients, f"term{int(time.time())}") as load:
            time.sleep(3.0)
            api.send_signal(signal.SIGTERM)
            api.wait(timeout=60)
        answered = load.answered()
    finally:
        end(api)
    logged = set(read_prediction_log(folder)["transaction_id"]) - before
    print(f"   restart: ready in {restart:.1f} s; JSON-lines segments left after recovery: "
          f"{len(orphans)} (the new process's own)")  # fmt: skip
    print(
        f"   SIGTERM under load: answered {len(answered)}, lost {len(answered - logged)}; "
        f"segments not compacted after the stop: {len(list(folder.glob('*.jsonl')))}"
    )


def drill_registry(root: Path, env: dict[str, str], with_server: bool) -> None:
    print("\n4. registry at start-up (time from spawning uvicorn)")
    for label, uri in [
        ("reachable (SQLite)", env["MLFLOW_TRACKING_URI"]),
        ("unreachable (HTTP, nobody listening)", f"http://127.0.0.1:{stack.free_port()}"),
    ]:
        port = stack.free_port()
        api = spawn_api(root, {**env, "MLFLOW_TRACKING_URI": uri}, port, "bench-faults-reg.log")
        try:
            health = wait_for(port, "/health", 180)
            ready = wait_for(port, "/ready", 15)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ready")
            reason = json.loads(conn.getresponse().read())["reasons"]
        finally:
            end(api)
        health_text = f"{health:.1f} s" if health is not None else "never"
        ready_text = "200" if ready is not None else f"503 ({reason[0][:70]}...)"
        print(f"   {label:<38} /health 200 after {health_text}; /ready 15 s later: {ready_text}")
    if not with_server:
        return
    mlflow_port = stack.free_port()
    uri = f"http://127.0.0.1:{mlflow_port}"
    api_port = stack.free_port()
    api = spawn_api(root, {**env, "MLFLOW_TRACKING_URI": uri}, api_port, "bench-faults-reg.log")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(mlflow_port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"],
        cwd=root, stdout=(root / "bench-mlflow.log").open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn child goes with it
    )  # fmt: skip
    try:
        up = wait_for(mlflow_port, "/health", 180)
        if up is None:
            raise RuntimeError("mlflow server did not start")
        ready = wait_for(api_port, "/ready", 120)
        print(f"   registry (mlflow server) came up {up:.1f} s after the API started; the API "
              f"was ready {ready:.1f} s after that, without a restart")  # fmt: skip
    finally:
        end(api)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client threads on /predict")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays down")
    parser.add_argument("--root", type=Path, default=None, help="reuse a stack built here")
    parser.add_argument("--mlflow-server", action="store_true", help="also time a late registry")
    args = parser.parse_args()

    from fraud_platform import redis_server

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-faults-"))
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    env = stack.stack_env(root, server.url, API_KEYS=API_KEY, SERVING_MODEL_POLL_SECONDS="1")
    try:
        meta = stack.load_or_build_stack(root, env)
        print(f"cpu cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
        drill_journal()
        drill_redis_outage(root, env, meta, args.clients, args.outage)
        drill_kill(root, env, meta, args.clients)
        drill_registry(root, env, args.mlflow_server)
    finally:
        redis_server.stop(root)


if __name__ == "__main__":
    main()
