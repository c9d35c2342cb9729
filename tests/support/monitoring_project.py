"""Fixtures of the monitoring tests: a throw-away project root, and Evidently stubbed out.

Imported by the ``conftest.py`` of ``tests/unit/monitoring`` and ``tests/integration/monitoring``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraud_platform.settings import PROJECT_ROOT, get_settings


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project root in tmp_path: params.yaml copied, MLflow in a SQLite file there."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("API_KEYS", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


class _FakeSnapshot:
    """Stands in for Evidently's snapshot where a test does not look at the HTML (seconds each)."""

    def save_html(self, path: str) -> None:
        Path(path).write_text("<html>fake evidently report</html>")

    def json(self) -> str:
        return '{"metrics": []}'


@pytest.fixture
def fake_evidently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip Evidently's plotly rendering; our own statistics and summary.json are untouched."""
    monkeypatch.setattr("monitoring.report.evidently_snapshot", lambda *a, **k: _FakeSnapshot())
