"""Load test of the scoring API against ``feast serve`` on the same feature repo, on loopback.

Builds the small test stack (``tests/support/stack.py``: a temporary project root, a real
redis-server, Feast state, a registered model), starts the API (ingestion and the prediction
log on, as in production) and ``feast serve``, then loads each from this process:

* open loop at a fixed rate (default 200 requests/s): p50/p95/p99, latency counted from the
  *scheduled* send time, so a stall is not hidden (no coordinated omission);
* closed loop on one keep-alive connection: p50/p99 of back-to-back requests;
* closed loop on several connections for a fixed time: maximum throughput.

Run: ``.venv/bin/python -m benchmarks.bench_serving [--workers 1] [--seconds 10]``.
Everything is bounded (request counts and seconds) and binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.support import stack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


class Workload:
    """Realistic requests: known and new customers, event time moving forward."""

    def __init__(self, meta: dict[str, Any], seed: int = 7) -> None:
        import pandas as pd

        self.rng = random.Random(seed)
        self.customers = meta["all_customers"]
        self.merchants = meta["all_merchants"]
        self.t = pd.Timestamp(meta["last_timestamp"]) + timedelta(hours=1)
        self.names = meta["names"]

    def transaction(self) -> dict[str, Any]:
        """The next transaction (5% of them from a new customer)."""
        self.t += timedelta(milliseconds=self.rng.randint(1, 2000))
        new = self.rng.random() < 0.05
        return {
            "timestamp": self.t.isoformat(),
            "customer_id": f"new{self.rng.randint(0, 10**9)}"
            if new
            else self.rng.choice(self.customers),
            "merchant_id": self.rng.choice(self.merchants),
            "amount": round(self.rng.lognormvariate(3.5, 1.0), 2),
            "lat": self.rng.uniform(25, 48),
            "long": self.rng.uniform(-124, -70),
        }

    def api_body(self) -> bytes:
        """A ``/predict`` body."""
        return json.dumps(self.transaction()).encode()

    def feast_body(self) -> bytes:
        """A ``feast serve`` ``/get-online-features`` body for the same kind of transaction."""
        txn = self.transaction()
        ts_us = int(self._us(txn["timestamp"]))
        return json.dumps(
            {
                "feature_service": "fraud_scoring_v1",
                "entities": {
                    "customer_id": [txn["customer_id"]],
                    "merchant_id": [txn["merchant_id"]],
                    "txn_timestamp_us": [ts_us],
                    "amount": [txn["amount"]],
                    "lat": [txn["lat"]],
                    "long": [txn["long"]],
                },
            }
        ).encode()

    @staticmethod
    def _us(iso: str) -> int:
        import pandas as pd

        return int(pd.Timestamp(iso).value // 1000)


async def open_loop(
    port: int, path: str, make_body: Callable[[], bytes], rate: float, seconds: float
) -> dict[str, float]:
    """Send at a fixed rate regardless of answers; latency from the scheduled send time."""
    import aiohttp

    n = int(rate * seconds)
    bodies = [make_body() for _ in range(n)]
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as session:

        async def one(body: bytes, scheduled: float) -> None:
            nonlocal errors
            try:
                async with session.post(path, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter() + 0.05
        tasks = []
        for i, body in enumerate(bodies):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body, scheduled)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    return _summary(latencies, errors, time.perf_counter() - start)


def closed_loop_single(
    port: int, path: str, make_body: Callable[[], bytes], n: int
) -> dict[str, float]:
    """Back-to-back requests on one keep-alive connection (stdlib client: least overhead)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    bodies = [make_body() for _ in range(n)]
    latencies, errors = [], 0
    start = time.perf_counter()
    for body in bodies:
        sent = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        errors += response.status != 200
    conn.close()
    return _summary(latencies[n // 10 :], errors, time.perf_counter() - start)


async def max_throughput(
    port: int, path: str, make_body: Callable[[], bytes], connections: int, seconds: float
) -> dict[str, float]:
    """Closed loop on several connections for a fixed time; completed requests per second."""
    import aiohttp

    bodies = [make_body() for _ in range(4000)]
    done, errors = 0, 0
    latencies: list[float] = []
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal done, errors
            i = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    async with session.post(
                        path, data=bodies[i % len(bodies)], headers=headers
                    ) as r:
                        await r.read()
                        errors += r.status != 200
                except (
                    aiohttp.ClientError,
                    OSError,
                ):  # a reset connection is an error, not a crash
                    errors += 1
                latencies.append(time.perf_counter() - sent)
                done += 1
                i += connections

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(connections)))
    return _summary(latencies, errors, time.perf_counter() - start)


def _summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, float]:
    return {
        "n": len(latencies),
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
    }


def rss_mb(pid: int) -> list[float]:
    """RSS of a server process and its children (uvicorn workers), in MiB."""
    import psutil

    parent = psutil.Process(pid)
    procs = [parent, *parent.children(recursive=True)]
    workers = [p for p in procs if p is not parent] or [parent]
    return [round(p.memory_info().rss / 2**20, 1) for p in workers]


def _wait_until_ok(
    proc: subprocess.Popen[bytes], port: int, path: str, what: str, seconds: float = 120
) -> subprocess.Popen[bytes]:
    """Wait until ``GET path`` answers 200 on loopback; kill the process if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{what} did not start within {seconds:.0f} s")


def start_feast_serve(root: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    from fraud_platform.settings import Settings, feast_environment

    settings = Settings(project_root=root, redis_url=env["REDIS_URL"])
    feast_env = {**env, **feast_environment(settings)}
    log = (root / "feast-serve.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("feast")), "serve", "-h", "127.0.0.1",
         "-p", str(port), "--no-access-log"],
        cwd=settings.paths.feature_repo, env=feast_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return _wait_until_ok(proc, port, "/health", f"feast serve (see {root / 'feast-serve.log'})")


def start_api_workers(
    root: Path, env: dict[str, str], port: int, workers: int
) -> subprocess.Popen[bytes]:
    if workers == 1:
        return stack.start_api(root, env, port, log_name="bench-api.log")
    log = (root / "bench-api.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.main:app", "--host", "127.0.0.1", "--port",
         str(port), "--workers", str(workers), "--no-access-log", "--loop", "uvloop",
         "--http", "httptools"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return _wait_until_ok(proc, port, "/ready", f"the API (see {root / 'bench-api.log'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the API")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed run")
    parser.add_argument("--single", type=int, default=1000, help="closed-loop requests")
    parser.add_argument("--connections", type=int, default=8, help="max-throughput connections")
    parser.add_argument("--root", type=Path, default=None, help="reuse a stack built here")
    parser.add_argument(
        "--feature-path", choices=("feast", "direct"), default="feast",
        help="SERVING_FEATURE_PATH of the API: get_online_features or the one-pipeline reader",
    )  # fmt: skip
    parser.add_argument(
        "--model-kind", choices=("logistic_regression", "lightgbm"), default="logistic_regression",
        help="the family the stack registers and the API serves (build a fresh --root per kind)",
    )  # fmt: skip
    args = parser.parse_args()

    from fraud_platform import redis_server

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-serving-"))
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    env = stack.stack_env(root, server.url)
    env["SERVING_FEATURE_PATH"] = args.feature_path
    env["STACK_MODEL_KIND"] = args.model_kind  # read by the stack's model registration
    if args.workers > 1:
        env["SERVING_INGEST_MODE"] = "sync"  # read-your-writes across worker processes
    procs: list[subprocess.Popen[bytes]] = []
    try:
        meta = stack.load_or_build_stack(root, env)
        api_port, feast_port = stack.free_port(), stack.free_port()
        api = start_api_workers(root, env, api_port, args.workers)
        procs.append(api)
        feast = start_feast_serve(root, env, feast_port)
        procs.append(feast)
        work = Workload(meta)
        targets = {
            "api /predict": (api_port, "/predict", work.api_body),
            "feast serve /get-online-features": (
                feast_port,
                "/get-online-features",
                work.feast_body,
            ),
        }
        results: dict[str, dict[str, Any]] = {}
        for name, (port, path, body) in targets.items():
            closed_loop_single(port, path, body, 200)  # warm-up
            r: dict[str, Any] = {}
            r["open"] = asyncio.run(open_loop(port, path, body, args.rate, args.seconds))
            r["single"] = closed_loop_single(port, path, body, args.single)
            r["max"] = asyncio.run(max_throughput(port, path, body, args.connections, args.seconds))
            r["rss_mb"] = rss_mb((api if port == api_port else feast).pid)
            results[name] = r
        print(f"\nworkers (API): {args.workers}; cpu cores: {os.cpu_count()}; "
              f"ingest mode: {env.get('SERVING_INGEST_MODE', 'async')}, "
              f"feature path: {args.feature_path}, model: {args.model_kind}")  # fmt: skip
        for name, r in results.items():
            o, s, m = r["open"], r["single"], r["max"]
            print(f"\n{name}")
            print(
                f"  open loop {args.rate:.0f} rps : p50 {o['p50_ms']:.2f}  p95 {o['p95_ms']:.2f}  "
                f"p99 {o['p99_ms']:.2f} ms  (n={o['n']}, errors={o['errors']})"
            )
            print(
                f"  1 connection     : p50 {s['p50_ms']:.2f}  p99 {s['p99_ms']:.2f} ms  "
                f"{s['rps']:.0f} rps (n={s['n']}, errors={s['errors']})"
            )
            print(
                f"  {args.connections} connections    : {m['rps']:.0f} rps  p50 {m['p50_ms']:.2f}  "
                f"p99 {m['p99_ms']:.2f} ms (n={m['n']}, errors={m['errors']})"
            )
            print(f"  RSS per worker   : {r['rss_mb']} MiB")
        api_max = results["api /predict"]["max"]["rps"]
        feast_max = results["feast serve /get-online-features"]["max"]["rps"]
        print(f"\nmax throughput ratio API / feast serve: {api_max / feast_max:.2f}x")
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis_server.stop(root)


if __name__ == "__main__":
    main()
