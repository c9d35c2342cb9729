"""One way to answer bad input, for every command: ``error: <what, where>``, exit code 2."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fraud_platform.console import EXIT_BAD_INPUT, fail, user_errors, warn
from fraud_platform.settings import PROJECT_ROOT

app = typer.Typer()


@app.command()
def check(value: int = 0) -> None:
    """Fails on negative values, through the helper."""
    with user_errors(ValueError):
        if value < 0:
            raise ValueError(f"--value: must be >= 0, got {value}")
    if value > 10:
        raise fail(f"--value: at most 10, got {value}")
    warn("value is fine")


def test_user_errors_and_fail_answer_error_and_exit_2() -> None:
    runner = CliRunner()
    for value, message in ((-1, "must be >= 0, got -1"), (11, "at most 10, got 11")):
        result = runner.invoke(app, ["--value", str(value)])
        assert result.exit_code == EXIT_BAD_INPUT == 2
        assert f"error: --value: {message}" in result.output
        assert "Traceback" not in result.output
    ok = runner.invoke(app, ["--value", "3"])
    assert ok.exit_code == 0 and "warning: value is fine" in ok.output


def test_other_errors_are_not_swallowed() -> None:
    with pytest.raises(KeyError), user_errors(ValueError):
        raise KeyError("a bug, not bad input")


def test_no_command_line_prints_its_own_error() -> None:
    """Every ``error: ...`` of the platform's commands comes from fraud_platform/console.py."""
    steps = (
        "data", "feature_engine", "feature_repo", "training", "serving", "monitoring",
        "simulation", "fraud_cli",
    )  # fmt: skip
    offenders = []
    for path in sorted(p for step in steps for p in (PROJECT_ROOT / step).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            plain = isinstance(node, ast.Constant) and str(node.value).startswith("error: ")
            formatted = isinstance(node, ast.JoinedStr) and ast.unparse(node).startswith(
                "f'error: "
            )
            if plain or formatted:
                offenders.append(
                    f"{Path(path).relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
                )
    assert offenders == []
