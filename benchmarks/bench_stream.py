"""Stream ingestion: freshness lag (append -> folded) and the ingestion worker's fold rate.

On the small test stack (``tests/support/stack.py``: a temporary project root, a real
redis-server, the feature views applied and materialized), this process appends scored
transactions exactly as the API does (:class:`serving.stream.StreamPublisher`: ``XADD`` plus the
entities' pending markers, one round trip per transaction) and a real ``fraud serve
ingest-worker`` process folds them. It measures:

* **freshness lag** at fixed append rates (open loop, ``--rates``, default 300 and 1000/s, for
  ``--seconds`` each): from the request's ``XADD`` to the entry folded and acknowledged, p50
  and p99, as the worker measures it (its stop summary; one clock, one machine);
* **fold rate**: ``--backlog`` transactions appended while no worker runs, then one worker
  started: transactions folded per second from its first acknowledgement to an empty stream
  (the default stack's shape: its cards and merchants, event times as far apart as in its raw
  data, so each entity's state is as dense as there), and the same for a hot merchant (every
  transaction at one merchant, of random cards, 0.864 s apart: 100,000 a day; its folds are
  serial, one compare-and-set round per transaction, on a state holding the last hour's ~4,000
  transactions), which bounds the rate one merchant can sustain.

Run: ``.venv/bin/python -m benchmarks.bench_stream [--root DIR] [--rates 300 1000]``.
Note the load average (printed): the lag is a tail figure and moves with the machine.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.support import stack


def start_worker(root: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """``fraud serve ingest-worker`` on the stack (log: ``root/bench-stream-<name>.log``)."""
    log = (root / f"bench-stream-{name}.log").open("ab")
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("fraud")), "serve", "ingest-worker",
         "--consumer", f"bench-stream-{name}"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def stop_worker(root: Path, worker: subprocess.Popen[bytes], name: str, since: float) -> str:
    """SIGTERM the worker; its summary line (counts, lag p50/p99) and its CPU since ``since``."""
    cpu = cpu_seconds(worker.pid) - since
    worker.terminate()
    worker.wait(timeout=60)
    text = (root / f"bench-stream-{name}.log").read_text()
    found = re.findall(r"ingest worker stopped: (.*)", text)
    summary = found[-1] if found else "(no summary: see the log)"
    folded = re.match(r"(\d+) folded", summary)
    per_txn = cpu / int(folded.group(1)) * 1e3 if folded and int(folded.group(1)) else math.nan
    return f"{summary} | {per_txn:.3f}"


class Appender:
    """Scored transactions of the stack's cards and merchants, appended as the API does."""

    def __init__(self, meta: dict[str, Any], spacing_us: int) -> None:
        from feature_engine.online.online_only import ONLINE_ONLY
        from feature_engine.online.redis_layout import RedisLayout
        from feature_engine.online.writer import OnlineStateWriter
        from feature_engine.store import open_store
        from feature_repo.services import STATE_VELOCITY
        from fraud_platform.settings import get_settings, load_params
        from serving.stream import StreamPublisher

        settings = get_settings()
        store = open_store(settings, offline_store=ONLINE_ONLY)
        layout = RedisLayout(store)
        writer = OnlineStateWriter(
            layout, load_params(settings.paths.params_file).features, STATE_VELOCITY
        )
        self.client = layout.client
        self.publisher = StreamPublisher(layout.client, writer, store.project, wait_seconds=1)
        self.meta = meta
        self.rng = random.Random(11)
        start = stack_time(meta) + timedelta(days=1)
        self.ts_us = int(start.timestamp() * 1e6)
        self.spacing_us = spacing_us
        self.n = 0

    def transaction(self, merchant: str | None = None) -> Any:
        """The next transaction: a random card, ``merchant`` or a random one, a spacing later."""
        from feature_engine.state.fold import Transaction

        self.n += 1
        self.ts_us += self.spacing_us  # event times move forward: nothing is late
        return Transaction(
            transaction_id=f"bs-{self.n}",
            customer_id=self.rng.choice(self.meta["all_customers"]),
            merchant_id=merchant or self.rng.choice(self.meta["all_merchants"]),
            ts_us=self.ts_us,
            amount=round(self.rng.uniform(1, 300), 2),
            lat=40.0 + self.rng.random(),
            long=-74.0 - self.rng.random(),
        )

    def append(self, merchant: str | None = None) -> None:
        """One append as a request makes it (markers and ``XADD``, one round trip)."""
        self.publisher.submit([self.transaction(merchant)], time.monotonic())

    def backlog(self, n: int, merchant: str | None = None) -> None:
        """``n`` appends, pipelined 500 at a time (the worker is not running)."""
        from feature_engine.online.redis_layout import run_commands
        from serving.stream import encode_entry

        at_us = time.time_ns() // 1000
        for start in range(0, n, 500):
            commands = [
                (
                    b"XADD",
                    self.publisher.stream,
                    b"*",
                    *encode_entry(self.transaction(merchant), at_us),
                )
                for _ in range(min(500, n - start))
            ]
            run_commands(self.client, commands)

    def length(self) -> int:
        """Entries in the stream (folded ones are deleted)."""
        return int(self.client.xlen(self.publisher.stream))


def stack_time(meta: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.Timestamp(meta["last_timestamp"]).to_pydatetime()


def wait_empty(appender: Appender, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while appender.length() and time.monotonic() < deadline:
        time.sleep(0.01)


def fold_rate(appender: Appender, root: Path, env: dict[str, str], n: int, merchant: str | None,
              name: str) -> tuple[float, str]:  # fmt: skip
    """Transactions folded per second draining a backlog of ``n`` (first ack to empty)."""
    appender.backlog(n, merchant)
    worker = start_worker(root, env, name)
    while appender.length() >= n:  # the worker's start-up (imports, Feast registry) not counted
        time.sleep(0.005)
    began, left, since = time.monotonic(), appender.length(), cpu_seconds(worker.pid)
    wait_empty(appender)
    elapsed = time.monotonic() - began
    summary = stop_worker(root, worker, name, since)
    return left / elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="reuse a stack built here")
    parser.add_argument("--rates", type=float, nargs="+", default=[300.0, 1000.0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each lag run")
    parser.add_argument("--backlog", type=int, default=20_000, help="entries drained")
    args = parser.parse_args()

    from fraud_platform import redis_server

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-stream-"))
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    env = stack.stack_env(root, server.url, SERVING_INGEST_MODE="stream")
    os.environ.update(env)  # this process appends with the stack's settings
    try:
        meta = stack.load_or_build_stack(root, env)
        import pandas as pd

        raw = pd.read_parquet(root / "data" / "raw" / "transactions.parquet", columns=["timestamp"])
        span = raw["timestamp"].max() - raw["timestamp"].min()
        spacing_us = int(span.total_seconds() * 1e6 / len(raw))  # the stack's own density
        appender = Appender(meta, spacing_us)
        print(f"event times {spacing_us / 1e6:.0f} s apart (the stack's raw data)", flush=True)
        print(f"load average before: {os.getloadavg()}", flush=True)
        print("\n| append rate /s | appended | lag append->folded (worker's summary) "
              "| worker CPU ms per folded transaction |")  # fmt: skip
        print("| --- | --- | --- | --- |")
        for rate in args.rates:
            worker = start_worker(root, env, f"lag-{rate:g}")
            appender.append()  # the worker is up once this first one is folded
            wait_empty(appender, 120)
            since = cpu_seconds(worker.pid)
            due, sent = time.monotonic(), 0
            end = due + args.seconds
            while due < end:  # open loop: each append at its scheduled time
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                appender.append()
                sent += 1
                due += 1 / rate
            wait_empty(appender)
            summary = stop_worker(root, worker, f"lag-{rate:g}", since)
            print(f"| {rate:g} | {sent} | {summary} |", flush=True)
        print("\n| backlog | transactions folded per second | worker's summary "
              "| worker CPU ms per folded transaction |")  # fmt: skip
        print("| --- | --- | --- | --- |")
        rate, summary = fold_rate(appender, root, env, args.backlog, None, "drain")
        print(f"| {args.backlog:,} of many cards and merchants | {rate:,.0f} | {summary} |")
        hot = meta["all_merchants"][0]
        n = max(args.backlog // 10, 100)
        appender.spacing_us = 864_000  # 100,000 a day at one merchant
        rate, summary = fold_rate(appender, root, env, n, hot, "hot")
        print(f"| {n:,} at one merchant | {rate:,.0f} | {summary} |")
        print(f"\nload average after: {os.getloadavg()}; cpu cores: {os.cpu_count()}; "
              f"stack: {root}")  # fmt: skip
    finally:
        redis_server.stop(root)


if __name__ == "__main__":
    main()
