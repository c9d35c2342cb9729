"""The three tiers, by speed: ``tests/unit`` (seconds, no services), ``tests/integration`` (real
redis-server, MLflow, Feast CLI, uvicorn) and ``tests/e2e`` (the main job through ``fraud``).

Every test below ``integration/`` or ``e2e/`` carries the ``integration`` marker, so
``pytest -m "not integration"`` is the unit tier wherever the tests are run from.

Parallel runs (pytest-xdist, ``--dist loadgroup`` in pyproject): each worker is its own process
with its own ``tmp_path_factory`` root, and every server a test starts takes a free loopback
port (redis-server, cluster nodes, uvicorn), so workers share no port, folder or store. A
session fixture is built once *per worker*; the tests that share one expensive stack are put in
one xdist group (below) so that the stack is built once in the whole run: the serving stack
(data, features, materialize, MLflow models), the cluster and its stack, the training projects.
Module-scoped stacks (the feature projects, the e2e projects) group by module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


# Folders whose tests share a session-scoped stack (their conftest.py): one xdist group each.
SESSION_STACKS = {
    ("integration", "serving"),
    ("integration", "cluster"),
    ("integration", "training"),
}


def xdist_group(parts: tuple[str, ...]) -> str | None:
    """The xdist group of a test file (path parts below ``tests/``); None: spread freely."""
    if parts[0] not in {"integration", "e2e"}:
        return None  # unit tests: no shared stack, any worker
    if parts[:2] in SESSION_STACKS:
        return "/".join(parts[:2])
    return "/".join(parts)  # module-scoped stacks: the module's tests stay together


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the integration and end-to-end tiers by folder; group tests by the stack they share."""
    for item in items:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
        if parts[0] in {"integration", "e2e"}:
            item.add_marker(pytest.mark.integration)
        group = xdist_group(parts)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
