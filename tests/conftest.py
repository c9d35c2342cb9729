"""The three tiers, by speed: ``tests/unit`` (seconds, no services), ``tests/integration`` (real
redis-server, MLflow, Feast CLI, uvicorn) and ``tests/e2e`` (the main job through ``fraud``).

Every test below ``integration/`` or ``e2e/`` carries the ``integration`` marker, so
``pytest -m "not integration"`` is the unit tier wherever the tests are run from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the integration and end-to-end tiers by folder."""
    for item in items:
        tier = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if tier in {"integration", "e2e"}:
            item.add_marker(pytest.mark.integration)
