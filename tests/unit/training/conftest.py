"""Each training unit test gets its own MLflow store and environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.training_projects import isolated_environment


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """One test's environment: its own MLflow store; use ``.setenv`` for more."""
    with isolated_environment(tmp_path) as patch:
        yield patch
