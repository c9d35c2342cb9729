"""One real stack for the serving tests: redis-server, Feast state, MLflow model, uvicorn.

Built once per module (it takes tens of seconds): a temporary project root, a real
``redis-server`` started by :mod:`fraud_platform.redis_server`, the feature tables built and
applied, Redis materialized up to the held-out slice, a model registered, and the API started
as a separate uvicorn process on a free port.
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


@dataclass
class Live:
    """The running stack, and every transaction id the API answered 200 for."""

    root: Path
    redis_port: int
    env: dict[str, str]
    meta: dict[str, Any]
    proc: subprocess.Popen[bytes]
    base: str
    client: httpx.Client
    readers: dict[str, Any]
    scored: list[str] = field(default_factory=list)
    v2_register: subprocess.Popen[str] | None = None

    def post(self, path: str, body: Any, key: str | None = API_KEY, **kw: Any) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        response = self.client.post(path, json=body, headers=headers, **kw)
        if response.status_code == 200:
            payload = response.json()
            for result in payload.get("results", [payload]):
                self.scored.append(result["transaction_id"])
        return response


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("serving-root")
    stack.prepare_root(root)
    server = redis_server.start(root=root)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    env = stack.stack_env(
        root, server.url, API_KEYS=f"{API_KEY},second-key", SERVING_MODEL_POLL_SECONDS="1"
    )
    proc = None
    try:
        meta = stack.build_stack(root, env)
        compare = subprocess.Popen(
            [sys.executable, stack.__file__, "compare-readers", str(root)],
            env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        api_port = stack.free_port()
        proc = stack.start_api(root, env, api_port)
        out, err = compare.communicate(timeout=180)
        assert compare.returncode == 0, err[-3000:]
        readers = json.loads(out.strip().splitlines()[-1])
        base = f"http://127.0.0.1:{api_port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            yield Live(root, port, env, meta, proc, base, client, readers)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        redis_server.stop(root)
