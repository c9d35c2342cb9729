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

import pytest

from fraud_platform import redis_server
from tests.support import stack
from tests.support.live_api import (
    Live,
    Stack,
    no_ingest_worker_left,  # noqa: F401  (autouse: no worker left after each module)
    running_live,
)


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


@pytest.fixture(scope="module")
def live(serving_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = stack.clone_root(serving_stack.root, tmp_path_factory.mktemp("api") / "root")
    with running_live(serving_stack, root) as live:
        yield live
