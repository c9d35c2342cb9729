"""``/predict`` on one redis-server against a local Redis Cluster, same machine, same run; failover.

Builds (or reuses, ``--root``) the small test stack of ``tests/support/stack.py`` on a real
``redis-server``, then a copy of its root whose state is materialized into a local 3-master,
3-replica cluster (``fraud_platform/redis_cluster.py``, the script behind ``fraud redis start
--cluster``). One API process (uvicorn, ingestion and prediction log on, as in production) runs
on each, ``REDIS_MODE=single`` and ``REDIS_MODE=cluster``, and both get the same workloads of
``benchmarks/bench_serving.py``, one after the other, ``--repeat`` times in alternation:

* 1 connection, back to back: p50/p99;
* ``--connections`` connections for ``--seconds``: throughput, p50/p99;
* open loop at ``--rate`` requests/s: p50/p99 from the scheduled send time.

Then the failover drill of ``tests/support/failover.py`` on the cluster API: ``--clients``
closed-loop clients, one master killed with SIGKILL; time to the first 503, to
``cluster_state:ok`` with the replica promoted, to only-200 answers again; and how many
transactions answered 200 are missing from the online state afterwards (acknowledged but lost).

Everything binds 127.0.0.1, is bounded in time and stops what it started. On one machine the
cluster's six servers share the cores with the API and the load generator: the figures show
the client-side cost of the cluster protocol, not the capacity a cluster adds.

Run: ``.venv/bin/python -m benchmarks.bench_cluster [--seconds 8] [--repeat 2] [--clients 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.bench_serving import Workload, closed_loop_single, max_throughput, open_loop
from feature_repo.services import STATE_VELOCITY
from tests.support import stack
from tests.support.failover import run_drill

API_KEY = "bench-key"  # sent by the drill; the bench APIs run without keys, as bench_serving's
MODES = ("single", "cluster")


def materialize_into(root: Path, env: dict[str, str], end: str) -> None:
    """Load a stack root's state, up to ``end``, into the Redis its ``env`` names."""
    code = (
        "from datetime import datetime\n"
        "from feature_engine.store import materialize, open_store\n"
        f"materialize(open_store(), end=datetime.fromisoformat({end!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True, timeout=600)


def run_workloads(port: int, meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The three workloads of bench_serving on one API."""
    work = Workload(meta, seed=11)
    closed_loop_single(port, "/predict", work.api_body, 200)  # warm-up
    return {
        "single": closed_loop_single(port, "/predict", work.api_body, args.single),
        "max": asyncio.run(
            max_throughput(port, "/predict", work.api_body, args.connections, args.seconds)
        ),
        "open": asyncio.run(open_loop(port, "/predict", work.api_body, args.rate, args.seconds)),
    }


def _fmt(runs: list[dict[str, Any]], kind: str, key: str) -> float:
    return median(r[kind][key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each timed run")
    parser.add_argument("--single", type=int, default=1000, help="closed-loop requests")
    parser.add_argument("--connections", type=int, default=8, help="max-throughput connections")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument(
        "--feature-path", choices=("feast", "direct"), default="feast",
        help="SERVING_FEATURE_PATH of both APIs: get_online_features or the one-pipeline reader",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds per mode")
    parser.add_argument("--clients", type=int, default=4, help="failover drill clients")
    parser.add_argument("--drills", type=int, default=2, help="failover drills (kill a master)")
    parser.add_argument("--root", type=Path, default=None, help="reuse a stack built here")
    args = parser.parse_args()

    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.online.writer import OnlineStateWriter
    from feature_engine.store import open_store
    from fraud_platform import redis_cluster, redis_server
    from fraud_platform.settings import Settings, load_params

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    base = root / "stack"  # the built stack; each API runs on a copy of it
    stack.prepare_root(base)
    server = redis_server.start(root=base)
    cluster = redis_cluster.start(root=root)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        meta = stack.load_or_build_stack(base, stack.stack_env(base, server.url))
        roots = {}
        for mode in MODES:
            shutil.rmtree(root / f"api-{mode}", ignore_errors=True)
            roots[mode] = stack.clone_root(base, root / f"api-{mode}")
        envs = {
            "single": stack.stack_env(roots["single"], server.url),
            "cluster": stack.stack_env(roots["cluster"], cluster.url, REDIS_MODE="cluster"),
        }
        for mode_env in envs.values():
            mode_env["SERVING_FEATURE_PATH"] = args.feature_path
        for mode, url in (("single", server.url), ("cluster", cluster.url)):
            print(f"materializing the stack's state into the {mode} store ...", flush=True)
            redis_cluster.client_for(url, mode).flushdb()  # nothing left from an earlier run
            materialize_into(roots[mode], envs[mode], meta["slice_start"])
        ports = {mode: stack.free_port() for mode in MODES}
        for mode in MODES:
            procs.append(
                stack.start_api(roots[mode], envs[mode], ports[mode], log_name="bench-api.log")
            )
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for round_ in range(args.repeat):
            for mode in MODES if round_ % 2 == 0 else reversed(MODES):
                print(f"round {round_ + 1}: {mode} ...", flush=True)
                runs[mode].append(run_workloads(ports[mode], meta, args))

        print(f"\ncpu cores: {os.cpu_count()}; one API process per mode, ingest mode async, "
              f"feature path {args.feature_path}; medians of {args.repeat} round(s)")  # fmt: skip
        for mode in MODES:
            r = runs[mode]
            what = "1 redis-server" if mode == "single" else "3 masters + 3 replicas"
            print(f"\n/predict on {mode} ({what})")
            print(
                f"  1 connection     : p50 {_fmt(r, 'single', 'p50_ms'):.2f}  "
                f"p99 {_fmt(r, 'single', 'p99_ms'):.2f} ms  {_fmt(r, 'single', 'rps'):.0f} rps  "
                f"errors {sum(x['single']['errors'] for x in r)}"
            )
            print(
                f"  {args.connections} connections    : {_fmt(r, 'max', 'rps'):.0f} rps  "
                f"p50 {_fmt(r, 'max', 'p50_ms'):.2f}  p99 {_fmt(r, 'max', 'p99_ms'):.2f} ms  "
                f"errors {sum(x['max']['errors'] for x in r)}"
            )
            print(
                f"  open loop {args.rate:.0f} rps : p50 {_fmt(r, 'open', 'p50_ms'):.2f}  "
                f"p99 {_fmt(r, 'open', 'p99_ms'):.2f} ms  "
                f"errors {sum(x['open']['errors'] for x in r)}"
            )
        s, c = runs["single"], runs["cluster"]
        print(
            "\ncluster / single: 1-connection p50 "
            f"{_fmt(c, 'single', 'p50_ms') / _fmt(s, 'single', 'p50_ms'):.2f}x, p99 "
            f"{_fmt(c, 'single', 'p99_ms') / _fmt(s, 'single', 'p99_ms'):.2f}x; "
            f"throughput {_fmt(c, 'max', 'rps') / _fmt(s, 'max', 'rps'):.2f}x; open-loop p99 "
            f"{_fmt(c, 'open', 'p99_ms') / _fmt(s, 'open', 'p99_ms'):.2f}x"
        )

        settings = Settings(
            project_root=roots["cluster"], redis_url=cluster.url, redis_mode="cluster"
        )
        writer = OnlineStateWriter(
            RedisLayout(open_store(settings)), load_params().features, STATE_VELOCITY
        )

        def txn_ids(customer_id: str) -> set[str]:
            state = writer.read("customer_activity", customer_id) or {}
            return set(state.get("c_txn_ids") or [])

        start = datetime.fromisoformat(meta["last_timestamp"]) + timedelta(days=5)
        for k in range(args.drills):
            drill, kill = run_drill(
                root, ports["cluster"], API_KEY, start + timedelta(days=k), txn_ids,
                clients=args.clients, prefix=f"drill{k}",
            )  # fmt: skip
            window = drill.lost_window(kill)
            nan = float("nan")
            first_503_ms = drill.first_503 * 1e3 if drill.first_503 is not None else nan
            all_200 = drill.all_200_from if drill.all_200_from is not None else nan
            around = (
                f" (answered {window[0]:.3f} .. {window[1]:.3f} s around the kill)"
                if window
                else ""
            )
            print(
                f"\nfailover drill {k + 1} (kill -9 master :{drill.killed_port}, replica "
                f":{drill.promoted_port} promoted; {args.clients} clients): "
                f"answers {dict(drill.statuses)}\n"
                f"  first 503 after {first_503_ms:.0f} ms; cluster_state:ok after "
                f"{drill.cluster_ok:.2f} s; only 200s from {all_200:.2f} s\n"
                f"  acknowledged but lost: {len(drill.lost)} of {drill.answered} answered 200"
                + around
            )  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis_cluster.stop(root)
        redis_server.stop(base)


if __name__ == "__main__":
    main()
