"""The three tiers, by speed: ``tests/unit`` (seconds, no services), ``tests/integration`` (real
redis-server, MLflow, Feast CLI, uvicorn) and ``tests/e2e`` (the main job through ``fraud``).

Every test below ``integration/`` or ``e2e/`` carries the ``integration`` marker, so
``pytest -m "not integration"`` is the unit tier wherever the tests are run from.

Parallel runs (pytest-xdist, ``-n`` in pyproject; the scheduler below): each worker is its own
process with its own ``tmp_path_factory`` root, and every server a test starts takes a free loopback
port (redis-server, cluster nodes, uvicorn), so workers share no port, folder or store. A session
fixture is built once *per worker*; the tests that share one expensive stack are put in one scope of
the scheduler (below) so that the stack is built once in the whole run: the serving stack (data,
features, materialize, MLflow models), the cluster and its stack, the training projects.
Module-scoped stacks (the feature projects, the e2e projects) group by module.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent

# One OpenMP thread per process (LightGBM's training, OpenBLAS), inherited by every command the
# tests start: the suite already runs more processes than the machine has cores, and OpenMP's
# threads spin while they wait for each other. Under that load a small `fraud train run` spent
# 4-10 s of CPU in LightGBM with two threads against 1.5 s with one, for the same trees
# (LightGBM is built `deterministic`). The product keeps LightGBM's default (every core).
os.environ.setdefault("OMP_NUM_THREADS", "1")


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


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark the integration and end-to-end tiers by folder."""
    parts = Path(item.path).resolve().relative_to(TESTS).parts
    if parts[0] in {"integration", "e2e"}:
        item.add_marker(pytest.mark.integration)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Send the tests that share a stack to one xdist worker, so the stack is built once.

    xdist's own ``--dist loadgroup`` renames node ids through an attribute pytest 9.2 no longer
    reads, so its groups are silently ignored; a scope scheduler whose scope is the stack group
    (:func:`xdist_group`) does the same with public hooks. Unit tests spread one by one.
    """
    from xdist.scheduler import LoadScopeScheduling

    class StackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(_below_tests(nodeid)) or nodeid

        def _assign_work_unit(self, node: Any) -> None:
            # Longest first: the whole run lasts as long as its slowest worker, so the scopes
            # that take minutes start at once and the unit tests fill the gaps at the end.
            first = min(self.workqueue, key=_scope_rank)
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return StackScheduling(config, log)


@cache
def _scope_rank(scope: str) -> int:
    return start_rank(_below_tests(scope))  # once per scope, not once per assignment


def _below_tests(nodeid: str) -> tuple[str, ...]:
    parts = Path(nodeid.split("::", 1)[0]).parts
    return parts[parts.index("tests") + 1 :] if "tests" in parts else parts


def start_rank(parts: tuple[str, ...]) -> int:
    """When a scope starts, lower first: the two profiles' main jobs end to end, the shared
    stacks, the other integration modules, then the unit tests (ties keep the collection
    order)."""
    if parts[:2] in {("e2e", "test_end_to_end.py"), ("e2e", "test_spark_end_to_end.py")}:
        return 0
    if parts[:2] in SESSION_STACKS:
        return 1
    if parts[0] in {"integration", "e2e"}:
        return 2
    return 3
