"""Fixtures of the infrastructure checks: compose and dvc.yaml, parsed once."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.infra_files import ROOT


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def dvc_config() -> dict[str, Any]:
    """dvc.yaml, parsed."""
    data = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert isinstance(data, dict)
    return data
