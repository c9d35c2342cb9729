"""A small feature project with every edge case, built once per module on a real Redis.

The data is :func:`tests.support.edge_cases.edge_case_tables`; here it becomes offline tables,
a real ``feast apply`` and a real ``redis-server``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_repo.services import STATE_VELOCITY
from fraud_platform import redis_server
from fraud_platform.settings import Settings
from tests.support.edge_cases import (
    FEATURES,
    FeatureProject,
    edge_case_tables,
    feast_cli,
    write_raw,
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session (REDIS_URL wins when set and reachable)."""
    root = tmp_path_factory.mktemp("redis")
    server = redis_server.start(root=root)
    yield server.url
    redis_server.stop(root=root)


@pytest.fixture(scope="module")
def feature_project(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> FeatureProject:
    """Raw edge-case data -> offline tables -> `feast apply`, in an isolated root.

    Everything below takes the project's settings explicitly (``open_store(settings)``,
    ``fraud_definitions``): no test here changes ``os.environ`` or the process settings.
    """
    from feature_engine.offline.pipeline import build_features

    root = tmp_path_factory.mktemp("project")
    settings = Settings(project_root=root, redis_url=redis_url)
    tables = edge_case_tables()
    write_raw(tables, settings.paths.raw_dir)
    build_features(settings.paths, FEATURES, STATE_VELOCITY)
    feast_cli(settings, "apply")
    return FeatureProject(root=root, settings=settings, tables=tables)
