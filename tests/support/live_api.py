"""A live scoring API for the serving integration tests: the built stack, one API on it.

:class:`Stack` is a built project root (see :mod:`tests.support.stack`) and its Redis;
:class:`Live` is one running uvicorn process on a copy of that root, with an HTTP client that
remembers every transaction it got a 200 for.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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
            # The in-process mode: these APIs run without an ingestion worker; the stream
            # mode (the default) has its own tests, with its worker (test_stream.py).
            "SERVING_INGEST_MODE": "async",
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

    def post(self, path: str, body: Any, key: str | None = API_KEY, **kw: Any) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        response = self.client.post(path, json=body, headers=headers, **kw)
        if response.status_code == 200 and path.startswith("/predict"):
            payload = response.json()
            for result in payload.get("results", [payload]):
                self.scored.append(result["transaction_id"])
        return response


def start_live(
    serving_stack: Stack, root: Path, wait_for: str = "/ready", **env: str
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """Start an API on ``root`` (a clone); its process, base URL and environment."""
    full_env = serving_stack.api_env(root, **env)
    port = stack.free_port()
    proc = stack.start_api(root, full_env, port, wait_for=wait_for)
    return proc, f"http://127.0.0.1:{port}", full_env


@contextmanager
def running_live(serving_stack: Stack, root: Path) -> Iterator[Live]:
    """One API on ``root`` (a clone of the stack's root), stopped when the block ends."""
    proc, base, env = start_live(serving_stack, root)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield Live(
                serving_stack, root, env, serving_stack.meta, proc, base, client,
                serving_stack.readers,
            )  # fmt: skip
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process still running (after a test that failed half-way)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
