"""One real stack for the serving tests: redis-server, Feast state, MLflow model, uvicorn.

The stack (a temporary project root, a real ``redis-server`` started by
:mod:`fraud_platform.redis_server`, the feature tables built and applied, Redis materialized up
to the held-out slice, a model registered) is built once per session: it takes tens of seconds.
Each test module then runs its own API, a separate uvicorn process on a copy of that root
(own registry, MLflow store and prediction log; the one Redis is shared).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import stack

from fraud_platform import redis_server

API_KEY = "test-key-1"


@dataclass(frozen=True)
class Stack:
    """The built project root and its Redis."""

    root: Path  # holds .run/redis: stop and start Redis with this root
    redis_url: str
    meta: dict[str, Any]
    readers: dict[str, Any]

    def api_env(self, root: Path, **extra: str) -> dict[str, str]:
        """Environment of an API process serving ``root`` (a clone of the stack's root)."""
        settings = {"API_KEYS": f"{API_KEY},second-key", "SERVING_MODEL_POLL_SECONDS": "1"}
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

    def post(self, path: str, body: Any, key: str | None = API_KEY, **kw: Any) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        response = self.client.post(path, json=body, headers=headers, **kw)
        if response.status_code == 200 and path.startswith("/predict"):
            payload = response.json()
            for result in payload.get("results", [payload]):
                self.scored.append(result["transaction_id"])
        return response


@pytest.fixture(scope="session")
def serving_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("serving-root")
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    env = stack.stack_env(root, server.url)
    try:
        meta = stack.build_stack(root, env)
        compare = subprocess.run(
            [sys.executable, stack.__file__, "compare-readers", str(root)],
            env=env, cwd=root, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert compare.returncode == 0, compare.stderr[-3000:]
        readers = json.loads(compare.stdout.strip().splitlines()[-1])
        yield Stack(root, server.url, meta, readers)
    finally:
        redis_server.stop(root)


def start_live(
    serving_stack: Stack, root: Path, wait_for: str = "/ready", **env: str
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """Start an API on ``root`` (a clone); its process, base URL and environment."""
    full_env = serving_stack.api_env(root, **env)
    port = stack.free_port()
    proc = stack.start_api(root, full_env, port, wait_for=wait_for)
    return proc, f"http://127.0.0.1:{port}", full_env


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process still running (after a test that failed half-way)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def live(serving_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = stack.clone_root(serving_stack.root, tmp_path_factory.mktemp("api") / "root")
    proc, base, env = start_live(serving_stack, root)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield Live(
                serving_stack, root, env, serving_stack.meta, proc, base, client,
                serving_stack.readers,
            )  # fmt: skip
    finally:
        stop(proc)
