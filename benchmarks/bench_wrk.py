"""The scoring API beside ``feast serve`` in one run, loaded by ``wrk`` from outside the process.

Issue 16's benchmark. On the small test stack (``tests/support/stack.py``: a temporary project
root, a real redis-server, Feast state, a registered model), it starts each target in turn, on
the same feature repo and Redis, and measures:

* closed loop with ``wrk`` (a C load generator, a separate process) on 1 and on 16 keep-alive
  connections: p50/p99 and requests/s;
* open loop at a fixed rate (default 300 requests/s) with latency counted from each request's
  *scheduled* send time (``wrk`` has no open loop: :func:`benchmarks.bench_serving.open_loop`);
* RSS of each API worker after the load.

Targets: ``/predict`` of this checkout (default feature path, ingestion and prediction log on,
as in production: in the default ingest mode, ``stream``, with its ``fraud serve ingest-worker``
process beside it, whose CPU per request and freshness lag are reported apart from the API's),
optionally the same API with ``SERVING_FEATURE_PATH=direct`` (``--direct``) or with several
uvicorn workers (``--workers N``) or with any other setting (``--also SERVING_INGEST_MODE=async``:
the in-process fold), and the API of
another checkout (``--baseline DIR``, e.g. an export of ``main``: before and
after in one run), and ``feast serve``'s ``/get-online-features`` of ``fraud_scoring_v1`` (the
feature lookup alone). Each target gets its own event-time range (two days apart), so one
target's ingested transactions are not "late" for the next.

Run: ``.venv/bin/python -m benchmarks.bench_wrk [--baseline DIR] [--direct] [--rounds N]
[--root DIR]``; with several rounds the targets alternate and the table shows medians.
``wrk`` is Debian's package (``apt-get install -y wrk``); the benchmark says so if it is
missing. Everything binds 127.0.0.1 and is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_serving import (
    Workload,
    closed_loop_single,
    open_loop,
    rss_mb,
    start_api_workers,
    start_feast_serve,
)
from tests.support import stack

WRK_INSTALL_HINT = "wrk not found: install Debian's package (apt-get install -y wrk) or pass --wrk"
# One wrk thread drives every connection (it is C and epoll: far from saturated here), so one
# Lua state walks the body file in order and event times only move forward.
_WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, "%(path)s", nil, bodies[(i - 1) %% #bodies + 1])
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Target:
    """One server to load: how to start it, where to send what."""

    name: str
    path: str
    start: Callable[[int], subprocess.Popen[bytes]]
    body: Callable[[Workload], bytes]
    # The ingestion worker started before the API (stream mode), and its log file.
    worker: Callable[[], subprocess.Popen[bytes]] | None = None
    worker_log: Path | None = None


def slug(name: str) -> str:
    """A target's name as part of a file name."""
    return re.sub(r"\W+", "-", name).strip("-")


def find_wrk(given: str | None) -> str:
    """The ``wrk`` executable (``--wrk``, else on ``PATH``); exits with how to install it."""
    found = given or shutil.which("wrk")
    if not found:
        sys.exit(WRK_INSTALL_HINT)
    return found


def parse_wrk(output: str) -> dict[str, float]:
    """p50/p99 (ms), requests/s and error count of ``wrk --latency`` output."""

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    done = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    return {
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "rps": float(rps.group(1)) if rps else float("nan"),
        "n": float(done.group(1)) if done else 0.0,
        "errors": float(errors),
    }


def run_wrk(
    wrk: str, port: int, target: Target, work: Workload, connections: int, seconds: float,
    scratch: Path,
) -> dict[str, float]:  # fmt: skip
    """Closed loop: ``wrk`` on ``connections`` connections for ``seconds``."""
    n = int(seconds * 5000) + 1000  # more bodies than any target answers: none is sent twice
    bodies = scratch / f"bodies-{slug(target.name)}-{connections}.jsonl"
    bodies.write_bytes(b"\n".join(target.body(work) for _ in range(n)) + b"\n")
    script = scratch / "post.lua"
    script.write_text(_WRK_SCRIPT % {"bodies": bodies, "path": target.path})
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )  # fmt: skip
    return parse_wrk(out.stdout)


# Where a sampled stack's time goes, by the first part whose file names appear in it (the most
# specific first: a request's stack runs through uvicorn and FastAPI frames too).
PROFILE_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ingestion (online/writer.py, state/fold.py, serving/ingest.py)",
     ("writer.py", "fold.py", "ingest.py")),
    ("feature read (serving/features.py, state/request.py)", ("features.py", "request.py")),
    ("model and explanation (serving/model.py)", ("model.py",)),
    ("prediction log and journal", ("prediction_log.py", "events.py")),
    ("request handling (uvicorn, FastAPI, Starlette, Pydantic)",
     ("uvicorn", "fastapi", "starlette", "pydantic", "orjson", "anyio")),
)  # fmt: skip


def profile_shares(raw: str) -> dict[str, float]:
    """Shares of samples by :data:`PROFILE_PARTS` in a ``py-spy record --format raw`` file.

    Each line is a sampled stack (frames joined by ``;``) and its count.
    """
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        part = next(
            (name for name, files in PROFILE_PARTS if any(f in stack_text for f in files)),
            "other (asyncio, threads, imports, GC)",
        )
        counts[part] = counts.get(part, 0) + int(n)
    total = sum(counts.values()) or 1
    return {part: n / total for part, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def py_spy_executable() -> str | None:
    """The ``py-spy`` on the PATH or beside this Python; None when it is not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start ``py-spy record --gil`` (samples that hold the GIL) on a process and its threads."""
    exe = py_spy_executable()
    assert exe is not None, "main() checks for py-spy before any target starts"
    return subprocess.Popen(
        [exe, "record", "--gil", "--format", "raw", "--duration", f"{seconds:g}",
         "--pid", str(pid), "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (uvicorn's workers).

    A child that exited during the run takes its time with it (``feast serve`` replaces
    workers after errors): the difference can then come out negative, shown as ``n/a``.
    """
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def cpu_text(ms: float) -> str:
    """A CPU figure, or ``n/a`` when a worker was replaced during the run (its time is lost)."""
    return f"{ms:.2f}" if ms >= 0 else "n/a"


def redis_cpu_seconds(url: str) -> float:
    """User + system CPU seconds of the redis-server at ``url`` (``INFO cpu``)."""
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(
    target: Target, work: Workload, wrk: str, args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    """Start one target, load it (closed 1, open loop, closed 16), read its RSS, stop it.

    With ``--py-spy``, this checkout's default API is sampled during the one-connection run.
    """
    port = stack.free_port()
    worker = target.worker() if target.worker is not None else None
    proc = target.start(port)
    result: dict[str, Any] = {}  # filled as the loads run; the worker's figures even on error
    try:
        closed_loop_single(port, target.path, lambda: target.body(work), 300)  # warm-up
        spy = None
        if args.py_spy and target.name == "api /predict":
            raw = Path(args.root_dir) / f"py-spy-{time.strftime('%Y%m%dT%H%M%S')}.txt"
            spy = py_spy(proc.pid, max(args.seconds - 1, 1), raw)
        result["c1"] = run_wrk(wrk, port, target, work, 1, args.seconds, scratch)
        result["open"] = asyncio.run(
            open_loop(port, target.path, lambda: target.body(work), args.rate, args.seconds)
        )
        # CPU per request at 16 connections, of the target's processes and of redis-server:
        # what sizing for a given request rate divides by.
        cpu_before = process_cpu_seconds(proc.pid), redis_cpu_seconds(args.redis_url)
        worker_before = process_cpu_seconds(worker.pid) if worker is not None else 0.0
        result["c16"] = run_wrk(wrk, port, target, work, 16, args.seconds, scratch)
        served = max(result["c16"]["n"], 1.0)
        result["cpu_ms"] = (process_cpu_seconds(proc.pid) - cpu_before[0]) / served * 1e3
        result["redis_cpu_ms"] = (redis_cpu_seconds(args.redis_url) - cpu_before[1]) / served * 1e3
        result["worker_cpu_ms"] = (
            (process_cpu_seconds(worker.pid) - worker_before) / served * 1e3
            if worker is not None
            else float("nan")
        )
        result["rss_mb"] = rss_mb(proc.pid)
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0 or not raw.exists():
                print(f"py-spy failed: {err.decode()[-500:]}", flush=True)
            else:
                result["profile"] = profile_shares(raw.read_text())
                print(f"py-spy samples: {raw}", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if worker is not None:
            result["worker_rss_mb"] = rss_mb(worker.pid)[0]
            worker.terminate()  # it acknowledges the batch in hand and prints its summary
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
            result["lag"] = worker_lag(target.worker_log)
    return result


def worker_lag(log: Path | None) -> tuple[float, float]:
    """The freshness lag p50/p99 (ms) of the last ``ingest worker stopped`` line of a log."""
    text = log.read_text() if log is not None and log.exists() else ""
    found = re.findall(r"lag append->folded p50 ([\d.na]+) ms, p99 ([\d.na]+) ms", text)
    return (float(found[-1][0]), float(found[-1][1])) if found else (float("nan"),) * 2


def start_worker(root: Path, env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    """``fraud serve ingest-worker`` (a consumer of its own) on the stack, logging to ``log``."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("fraud")), "serve", "ingest-worker",
         "--consumer", f"bench-{slug(name)}"],
        env=env, cwd=root, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def api_target(name: str, root: Path, env: dict[str, str], **extra: str) -> Target:
    """``/predict`` of the API, started from the checkout in ``extra['PYTHONPATH']`` or this one."""
    api_env = {**env, **extra}
    log = f"bench-{slug(name)}.log"
    worker, worker_log = None, None
    if api_env.get("SERVING_INGEST_MODE", "stream") == "stream":
        worker_log = root / f"bench-{slug(name)}-worker.log"
        worker = functools.partial(start_worker, root, api_env, name, worker_log)
    return Target(
        name,
        "/predict",
        lambda port: stack.start_api(root, api_env, port, log),
        Workload.api_body,
        worker,
        worker_log,
    )


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over rounds (errors summed, the largest RSS of each worker)."""
    out: dict[str, Any] = {}
    for part in ("c1", "c16", "open"):
        out[part] = {
            key: float(statistics.median(run[part][key] for run in runs)) for key in runs[0][part]
        }
        out[part]["errors"] = sum(run[part]["errors"] for run in runs)
    out["rss_mb"] = [max(sizes) for sizes in zip(*(run["rss_mb"] for run in runs), strict=True)]
    for key in ("cpu_ms", "redis_cpu_ms", "worker_cpu_ms"):
        out[key] = float(statistics.median(run[key] for run in runs))
    if "lag" in runs[0]:
        out["lag"] = tuple(float(statistics.median(run["lag"][i] for run in runs)) for i in (0, 1))
        out["worker_rss_mb"] = max(run["worker_rss_mb"] for run in runs)
    return out


def worker_text(result: dict[str, Any]) -> str:
    """The ingestion worker's column: lag p50 / p99 (ms) and RSS, or ``-`` without one."""
    if "lag" not in result:
        return "-"
    p50, p99 = result["lag"]
    return f"{p50:.1f} / {p99:.1f}, {result['worker_rss_mb']}"


def print_table(results: dict[str, dict[str, Any]], rate: float) -> None:
    """One row per target; then the issue's goals for the first API against ``feast serve``."""
    header = (
        "| target | 1 conn p50 / p99 ms | 1 conn req/s | 16 conn req/s | 16 conn p50 / p99 ms "
        f"| open {rate:g}/s p50 / p99 ms | errors | RSS per worker MiB "
        "| CPU ms per request at 16 conn: target / redis-server / ingest worker "
        "| ingest worker: lag p50 / p99 ms, RSS MiB |"
    )
    print("\n" + header)
    print("|" + " --- |" * header.count(" | ") + " --- |")
    for name, r in results.items():
        c1, c16, o = r["c1"], r["c16"], r["open"]
        errors = int(c1["errors"] + c16["errors"] + o["errors"])
        print(
            f"| {name} | {c1['p50_ms']:.2f} / {c1['p99_ms']:.2f} | {c1['rps']:.0f} "
            f"| {c16['rps']:.0f} | {c16['p50_ms']:.2f} / {c16['p99_ms']:.2f} "
            f"| {o['p50_ms']:.2f} / {o['p99_ms']:.2f} | {errors} | {r['rss_mb']} "
            f"| {cpu_text(r['cpu_ms'])} / {r['redis_cpu_ms']:.3f} / {r['worker_cpu_ms']:.2f} "
            f"| {worker_text(r)} |"
        )
    feast = results.get("feast serve")
    for name, r in results.items():
        if feast is None or name == "feast serve":
            continue
        best = max(r["c1"]["rps"], r["c16"]["rps"])
        feast_best = max(feast["c1"]["rps"], feast["c16"]["rps"])
        print(
            f"{name}: max throughput {best / feast_best:.2f}x feast serve [4x]; 1 conn p50 "
            f"{r['c1']['p50_ms']:.2f} ms [1.5]; p99 at {rate:g}/s {r['open']['p99_ms']:.2f} ms "
            f"[5]; RSS {max(r['rss_mb'])} MiB [300]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed run")
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop requests/s")
    parser.add_argument("--root", type=Path, default=None, help="reuse a stack built here")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout whose API to measure too (e.g. main exported)",
    )
    parser.add_argument("--direct", action="store_true", help="also SERVING_FEATURE_PATH=direct")
    parser.add_argument("--no-feast-serve", action="store_true", help="skip feast serve")
    parser.add_argument("--wrk", default=None, help="the wrk executable (default: on PATH)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, targets alternating")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also the API with this setting, e.g. SERVING_INGEST_MODE=async",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also the API with this many uvicorn workers (and the ingestion worker)",
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample this checkout's API (py-spy --gil) under one connection; print the shares",
    )
    args = parser.parse_args()  # fmt: skip
    wrk = find_wrk(args.wrk)
    if args.py_spy and py_spy_executable() is None:
        parser.error("--py-spy needs py-spy, which is not a project dependency: pip install py-spy")

    from fraud_platform import redis_server

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    args.root_dir = root  # the py-spy samples are kept there
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    env = stack.stack_env(root, server.url)
    args.redis_url = server.url
    try:
        meta = stack.load_or_build_stack(root, env)
        targets = []
        if args.baseline is not None:
            baseline = str(args.baseline.resolve())
            targets.append(api_target("baseline /predict", root, env, PYTHONPATH=baseline))
        targets.append(api_target("api /predict", root, env))
        if args.direct:
            targets.append(api_target("api direct", root, env, SERVING_FEATURE_PATH="direct"))
        for setting in args.also:
            key, _, value = setting.partition("=")
            targets.append(api_target(f"api {setting}", root, env, **{key: value}))
        if args.workers > 1:  # read-your-writes across worker processes: the stream's
            name = f"api {args.workers} workers"
            worker_log = root / f"bench-{slug(name)}-worker.log"
            targets.append(
                Target(
                    name,
                    "/predict",
                    lambda port: start_api_workers(root, env, port, args.workers),
                    Workload.api_body,
                    functools.partial(start_worker, root, env, name, worker_log),
                    worker_log,
                )
            )
        if not args.no_feast_serve:
            targets.append(
                Target(
                    "feast serve",
                    "/get-online-features",
                    lambda port: start_feast_serve(root, env, port),
                    Workload.feast_body,
                )
            )
        rounds: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
        with tempfile.TemporaryDirectory(prefix="wrk-") as scratch:
            for r in range(args.rounds):  # targets alternate: machine noise hits all alike
                for k, target in enumerate(targets):
                    work = Workload(meta, seed=7 + k + 100 * r)
                    # An event-time range of its own (two days apart): none of it is "late".
                    work.t += timedelta(days=2 * (k + len(targets) * r))
                    print(f"round {r + 1}: measuring {target.name} ...", flush=True)
                    rounds[target.name].append(measure(target, work, wrk, args, Path(scratch)))
        print(f"\ncpu cores: {os.cpu_count()}; {args.seconds:g} s per run; wrk -t1; "
              f"medians of {args.rounds} round(s); stack: {root}")  # fmt: skip
        print_table({name: median_result(runs) for name, runs in rounds.items()}, args.rate)
        profiles = [run["profile"] for run in rounds.get("api /predict", []) if "profile" in run]
        if profiles:
            print("\nwhere this checkout's API holds the GIL under one connection (py-spy --gil, "
                  "share of samples, median of the rounds):")  # fmt: skip
            for part in profiles[0]:
                share = statistics.median(p.get(part, 0.0) for p in profiles)
                print(f"  {share:6.1%}  {part}")
    finally:
        redis_server.stop(root)


if __name__ == "__main__":
    main()
