"""One real local Redis Cluster (3 masters, 3 replicas) for the session, and the projects on it.

The cluster is :mod:`fraud_platform.redis_cluster`, the same script as ``fraud redis start
--cluster``, on free loopback ports in a temporary root. The fixtures below have the names the
single-server tests use (``redis_url``, ``feature_project``, ``live``), so that those tests run
here unchanged with ``REDIS_MODE=cluster``: the cluster test modules import them rather than
copying them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_repo.services import STATE_VELOCITY
from fraud_platform import redis_cluster
from fraud_platform.settings import Settings
from tests.support import stack
from tests.support.edge_cases import (
    FEATURES,
    FeatureProject,
    edge_case_tables,
    feast_cli,
    write_raw,
)
from tests.support.live_api import Live, Stack, running_live


@pytest.fixture(scope="session")
def cluster_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project root whose ``.run/redis-cluster`` holds a running 6-node cluster."""
    root = tmp_path_factory.mktemp("cluster")
    redis_cluster.start(root=root)
    try:
        yield root
    finally:
        redis_cluster.stop(root=root)


@pytest.fixture(scope="session")
def cluster_url(cluster_root: Path) -> str:
    """``redis://`` URL listing every node of the session's cluster."""
    running = redis_cluster.status(cluster_root)
    assert running is not None
    return running.url


@pytest.fixture(scope="module")
def redis_url(cluster_url: str) -> str:
    """The single-server tests' fixture name, here the cluster's URL."""
    return cluster_url


@pytest.fixture(scope="module")
def feature_project(tmp_path_factory: pytest.TempPathFactory, cluster_url: str) -> FeatureProject:
    """The edge-case project (offline tables, real ``feast apply``) on the cluster."""
    from feature_engine.offline.pipeline import build_features

    root = tmp_path_factory.mktemp("project")
    settings = Settings(project_root=root, redis_url=cluster_url, redis_mode="cluster")
    tables = edge_case_tables()
    write_raw(tables, settings.paths.raw_dir)
    build_features(settings.paths, FEATURES, STATE_VELOCITY)
    feast_cli(settings, "apply")
    return FeatureProject(root=root, settings=settings, tables=tables)


@pytest.fixture(scope="session")
def serving_stack(tmp_path_factory: pytest.TempPathFactory, cluster_url: str) -> Stack:
    """The serving tests' stack (data, features, materialize, model) on the cluster."""
    root = tmp_path_factory.mktemp("serving-root")
    stack.prepare_root(root)
    env = stack.stack_env(root, cluster_url, REDIS_MODE="cluster")
    meta = stack.build_stack(root, env)
    compare = subprocess.run(
        [sys.executable, stack.__file__, "compare-readers", str(root)],
        env=env, cwd=root, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stderr[-3000:]
    readers = json.loads(compare.stdout.strip().splitlines()[-1])
    return Stack(root, cluster_url, meta, readers, redis_mode="cluster")


@pytest.fixture(scope="session")
def live(serving_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One API process (uvicorn) on a clone of the stack's root, against the cluster.

    One for the session (a start costs 20-30 s here): the API tests run first, the failover
    drill (``test_failover.py``, destructive for the cluster, not for the API) last.
    """
    root = stack.clone_root(serving_stack.root, tmp_path_factory.mktemp("api") / "root")
    with running_live(serving_stack, root) as live:
        yield live
