"""A live scoring API for the serving integration tests: the built stack, one API on it.

:class:`Stack` is a built project root (see :mod:`tests.support.stack`) and its Redis;
:class:`Live` is one running uvicorn process on a copy of that root, with an HTTP client that
remembers every transaction it got a 200 for, and, in the default ingest mode (``stream``), its
ingestion worker (``fraud serve ingest-worker``, a consumer of its own in the stream's group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import stack

API_KEY = "test-key-1"


@dataclass(frozen=True)
class Stack:
    """The built project root and its Redis (one server, or a cluster)."""

    root: Path  # holds .run/redis: stop and start Redis with this root
    redis_url: str
    meta: dict[str, Any]
    readers: dict[str, Any]
    redis_mode: str = "single"  # REDIS_MODE of every process on this stack

    def api_env(self, root: Path, **extra: str) -> dict[str, str]:
        """Environment of an API process serving ``root`` (a clone of the stack's root)."""
        settings = {
            "API_KEYS": f"{API_KEY},second-key",
            "SERVING_MODEL_POLL_SECONDS": "1",
            "REDIS_MODE": self.redis_mode,
            # The default mode (stream, with a worker: start_live) on one server; on the
            # cluster the in-process mode (the stream is not drilled through a failover).
            "SERVING_INGEST_MODE": "async" if self.redis_mode == "cluster" else "stream",
        }
        return stack.stack_env(root, self.redis_url, **(settings | extra))


@dataclass
class Live:
    """A running API, and every transaction id it answered 200 for."""

    stack: Stack
    root: Path
    env: dict[str, str]
    meta: dict[str, Any]
    proc: subprocess.Popen[bytes]
    base: str
    client: httpx.Client
    readers: dict[str, Any]
    scored: list[str] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None  # the ingestion worker, in stream mode

    def post(self, path: str, body: Any, key: str | None = API_KEY, **kw: Any) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        response = self.client.post(path, json=body, headers=headers, **kw)
        if response.status_code == 200 and path.startswith("/predict"):
            payload = response.json()
            for result in payload.get("results", [payload]):
                self.scored.append(result["transaction_id"])
        return response


def start_ingest_worker(
    root: Path, env: dict[str, str], consumer: str, *extra: str
) -> subprocess.Popen[bytes]:
    """Start ``fraud serve ingest-worker`` on ``root`` (log: ``root/worker.log``).

    Its parent is this test process (``--parent-pid``): a test run killed half-way leaves no
    worker behind.
    """
    log = (root / "worker.log").open("ab")
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("fraud")), "serve", "ingest-worker",
         "--consumer", consumer, "--parent-pid", str(os.getpid()), *extra],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def ingest_workers_under(folder: Path) -> list[int]:
    """Pids of live ``ingest-worker`` processes whose ``PROJECT_ROOT`` is under ``folder``.

    Read from ``/proc`` (the command line and the environment the process started with);
    zombies and other users' processes do not count.
    """
    found = []
    marker = f"PROJECT_ROOT={folder}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"ingest-worker" not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile, or not ours
            continue
        if state != "Z" and any(item.startswith(marker) for item in environ):
            found.append(int(entry.name))
    return found


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs (a zombie counts as ended); those still running."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def no_ingest_worker_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the module: no ingestion worker of this test process's roots still runs.

    Autouse where a conftest imports it. One left running is killed (it is ours) and fails the
    module.
    """
    yield
    left = wait_gone(ingest_workers_under(tmp_path_factory.getbasetemp()), timeout=15)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"ingestion workers still running after the module: pids {left}"


def stream_drained(redis_url: str, timeout: float = 60, where: str = "") -> None:
    """Wait until every entry appended to the Redis's ingestion stream is folded and acknowledged.

    Raises:
        AssertionError: Still entries after ``timeout`` seconds (``where``: the log to read).
    """
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        streams = list(client.scan_iter(match=b"*:ingest:txn"))
        if all(client.xlen(s) == 0 and client.xpending(s, "fold")["pending"] == 0 for s in streams):
            return
        time.sleep(0.05)
    raise AssertionError(f"stream not drained; see {where or 'the ingestion worker log'}")


def stop_ingest_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (it acknowledges the batch in hand, then exits); kill if it does not end."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(worker)


def start_live(
    serving_stack: Stack, root: Path, wait_for: str = "/ready", **env: str
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """Start an API on ``root`` (a clone); its process, base URL and environment.

    In stream mode the caller starts the worker too (:func:`start_ingest_worker`), or the
    stream of another live API's worker folds its transactions (one Redis, one stream).
    """
    full_env = serving_stack.api_env(root, **env)
    port = stack.free_port()
    proc = stack.start_api(root, full_env, port, wait_for=wait_for)
    return proc, f"http://127.0.0.1:{port}", full_env


@contextmanager
def running_live(serving_stack: Stack, root: Path) -> Iterator[Live]:
    """One API on ``root`` (a clone of the stack's root), and in stream mode its worker."""
    env = serving_stack.api_env(root)
    worker = None
    if env["SERVING_INGEST_MODE"] == "stream":
        # A consumer name of its own (xdist workers' temporary folders are named alike).
        consumer = f"live-{root.parent.parent.name}-{root.parent.name}"
        worker = start_ingest_worker(root, env, consumer)
    try:
        proc, base, env = start_live(serving_stack, root)
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                yield Live(
                    serving_stack, root, env, serving_stack.meta, proc, base, client,
                    serving_stack.readers, worker=worker,
                )  # fmt: skip
        finally:
            stop(proc)
    finally:
        if worker is not None:
            stop_ingest_worker(worker)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process still running (after a test that failed half-way)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
