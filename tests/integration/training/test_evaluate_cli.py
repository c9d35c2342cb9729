"""`fraud train evaluate` against a real (empty) MLflow registry: `error: ...`, exit code 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.support.training_projects import isolated_environment, small_params, write_params
from training.cli import app


def test_evaluate_without_a_registered_model_exit_2(tmp_path: Path) -> None:
    from fraud_platform.settings import get_settings

    write_params(tmp_path, small_params())
    with isolated_environment(tmp_path) as patch:
        patch.setenv("PROJECT_ROOT", str(tmp_path))
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["evaluate", "--alias", "production"])
    assert result.exit_code == 2, result.output
    assert "error: no model fraud-detector@production" in result.output
