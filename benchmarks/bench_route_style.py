"""How should a route that does blocking Redis I/O run: ``def``, a thread pool, or inline?

A small FastAPI app with the scoring path's shape (validate a JSON body, one pipelined Redis
read of four hashes, ~0.3 ms of Python work, one ``os.write`` to a log file) served by uvicorn
(uvloop, httptools) in one worker, with a real local ``redis-server``. Three variants of the
same route:

* ``inline``: ``async def`` calling the blocking work directly (what the API did: it freezes
  the event loop, so ``/health`` waits behind every request);
* ``def``: a plain ``def`` route, run by FastAPI in anyio's thread pool (40 threads);
* ``executor``: ``async def`` awaiting ``loop.run_in_executor`` on a dedicated pool
  (``--pool`` threads, 4 by default: the API's ``SERVING_THREADS``).

For each: closed loop on 1 connection (p50, p99), on 8 connections for a fixed time
(throughput, p50, p99), and the latency of ``/health`` probed every 20 ms while the 8 connections
run. Everything binds 127.0.0.1 and stops by itself.

Run: ``.venv/bin/python -m benchmarks.bench_route_style [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
import asyncio, os, time
from concurrent.futures import ThreadPoolExecutor
import redis
from fastapi import FastAPI
from pydantic import BaseModel

client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=1)
log_fd = os.open(os.environ["BENCH_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
pool = ThreadPoolExecutor(int(os.environ["BENCH_POOL"]))
app = FastAPI()

class Txn(BaseModel):
    customer_id: str
    merchant_id: str
    amount: float
    lat: float
    long: float

def work(txn: Txn) -> dict:
    with client.pipeline(transaction=False) as pipe:
        for key in ("c:" + txn.customer_id, "m:" + txn.merchant_id, "l:" + txn.merchant_id,
                    "h:" + txn.customer_id):
            pipe.hmget(key, ["a", "b", "c", "d"])
        pipe.execute()
    deadline = time.perf_counter() + 0.0003  # the model, the explanation, the JSON
    x = 0
    while time.perf_counter() < deadline:
        x += 1
    os.write(log_fd, b'{"transaction":"logged"}\\n')
    return {"ok": True, "x": x}

@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}

@app.post("/inline")
async def inline(txn: Txn) -> dict:
    return work(txn)

@app.post("/def")
def plain(txn: Txn) -> dict:
    return work(txn)

@app.post("/executor")
async def executor(txn: Txn) -> dict:
    return await asyncio.get_running_loop().run_in_executor(pool, work, txn)
"""

BODY = json.dumps(
    {"customer_id": "c1", "merchant_id": "m1", "amount": 12.5, "lat": 40.0, "long": -70.0}
).encode()
HEADERS = {"Content-Type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def single(port: int, path: str, n: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(n):
        sent = time.perf_counter()
        conn.request("POST", path, body=BODY, headers=HEADERS)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append(time.perf_counter() - sent)
    conn.close()
    latencies = latencies[n // 10 :]
    return {"p50": percentile(latencies, 50) * 1e3, "p99": percentile(latencies, 99) * 1e3}


async def loaded(port: int, path: str, connections: int, seconds: float) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    health: list[float] = []
    done = 0
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", connector=aiohttp.TCPConnector(limit=connections + 1)
    ) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                async with session.post(path, data=BODY, headers=HEADERS) as r:
                    await r.read()
                latencies.append(time.perf_counter() - sent)
                done += 1

        async def prober() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                async with session.get("/health") as r:
                    await r.read()
                health.append(time.perf_counter() - sent)
                await asyncio.sleep(0.02)

        start = time.perf_counter()
        await asyncio.gather(prober(), *(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {
        "rps": done / elapsed,
        "p50": percentile(latencies, 50) * 1e3,
        "p99": percentile(latencies, 99) * 1e3,
        "health_p50": percentile(health, 50) * 1e3,
        "health_max": max(health) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each loaded run")
    parser.add_argument("--single", type=int, default=2000, help="requests on one connection")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (medians printed)")
    parser.add_argument("--pool", type=int, default=4, help="threads of the executor variant")
    args = parser.parse_args()

    from fraud_platform import redis_server

    root = Path(tempfile.mkdtemp(prefix="bench-route-style-"))
    (root / "bench_app.py").write_text(APP)
    server = redis_server.start(root=root)
    port = redis_server.free_port()
    env = {
        **os.environ,
        "BENCH_REDIS_URL": server.url,
        "BENCH_LOG": str(root / "log.jsonl"),
        "BENCH_POOL": str(args.pool),
        "PYTHONPATH": str(root),
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench_app:app", "--host", "127.0.0.1", "--port",
         str(port), "--no-access-log", "--loop", "uvloop", "--http", "httptools",
         "--log-level", "warning"],
        env=env, cwd=root,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for variant in ("inline", "def", "executor"):
                path = f"/{variant}"
                single(port, path, 200)  # warm-up
                one = single(port, path, args.single)
                many = asyncio.run(loaded(port, path, 8, args.seconds))
                results.setdefault(variant, []).append(
                    {f"1c_{k}": v for k, v in one.items()} | {f"8c_{k}": v for k, v in many.items()}
                )
        print(
            f"\ncpu cores: {os.cpu_count()}; executor pool: {args.pool} threads; "
            f"medians of {args.rounds} rounds (ms, req/s)"
        )
        print(f"{'variant':<10}{'1 conn p50':>11}{'p99':>8}{'8 conn rps':>12}{'p50':>8}{'p99':>8}"
              f"{'/health p50':>13}{'max':>8}")  # fmt: skip
        for variant, rounds in results.items():
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(
                f"{variant:<10}{med['1c_p50']:>11.2f}{med['1c_p99']:>8.2f}{med['8c_rps']:>12.0f}"
                f"{med['8c_p50']:>8.2f}{med['8c_p99']:>8.2f}{med['8c_health_p50']:>13.2f}"
                f"{med['8c_health_max']:>8.2f}"
            )
    finally:
        api.terminate()
        api.wait(timeout=30)
        redis_server.stop(root)


if __name__ == "__main__":
    main()
