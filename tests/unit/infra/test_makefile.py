"""Makefile, demo script and CI script: documented targets that call real `fraud` commands."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.infra_files import (
    ROOT,
    fraud_invocations,
    makefile_targets,
    resolve_fraud_command,
    unknown_options,
)

MAKEFILE = ROOT / "Makefile"
REQUIRED_TARGETS = {
    "help", "venv", "install", "redis", "data", "features", "train", "evaluate",
    "serve", "drift", "demo", "test", "test-unit", "test-integration", "lint", "bench", "clean",
}  # fmt: skip
SCRIPTS = {
    "Makefile": MAKEFILE,
    "demo": ROOT / "docker" / "scripts" / "demo.sh",
    "entrypoint": ROOT / "docker" / "entrypoint.sh",
}
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def test_required_targets_exist() -> None:
    assert set(makefile_targets(MAKEFILE)) >= REQUIRED_TARGETS


def test_every_target_is_documented() -> None:
    undocumented = [t for t, doc in makefile_targets(MAKEFILE).items() if not doc]
    # File targets (the venv's python, the install stamp) are prerequisites, not commands.
    assert not [t for t in undocumented if "/" not in t and "$" not in t], undocumented


def test_help_is_the_default_goal() -> None:
    assert re.search(r"^\.DEFAULT_GOAL\s*:=\s*help\s*$", MAKEFILE.read_text(), re.MULTILINE)


def test_documented_targets_are_phony() -> None:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE).group(1).split())  # type: ignore[union-attr]
    documented = {t for t, doc in makefile_targets(MAKEFILE).items() if doc}
    assert documented <= phony, sorted(documented - phony)


def test_readme_make_commands_are_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    mentioned = set(re.findall(r"\bmake ([a-z][a-z0-9_-]*)", readme)) | {"demo", "test"}
    assert mentioned <= set(makefile_targets(MAKEFILE)), sorted(mentioned)


@needs_make
def test_make_help_lists_every_documented_target() -> None:
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for target, doc in makefile_targets(MAKEFILE).items():
        if doc:
            assert re.search(rf"^\s+{re.escape(target)}\s+{re.escape(doc)}", result.stdout, re.M)


@needs_make
@pytest.mark.parametrize("target", ["demo", "test", "features", "lint", "clean"])
def test_make_dry_run_parses(target: str) -> None:
    result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_test_target_runs_pytest_from_the_venv() -> None:
    recipe = MAKEFILE.read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "install" in recipe.splitlines()[0]
    assert "$(BIN)/pytest" in recipe


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_fraud_commands_in_scripts_exist(name: str) -> None:
    invocations = fraud_invocations(SCRIPTS[name].read_text())
    assert invocations, f"{name} calls no fraud command"
    for words in invocations:
        command, rest = resolve_fraud_command(words)
        assert not unknown_options(command, rest), f"{name}: {' '.join(words)}"


def test_demo_covers_the_whole_flow() -> None:
    called = {" ".join(words[:3]) for words in fraud_invocations(SCRIPTS["demo"].read_text())}
    assert {
        "fraud redis start", "fraud data generate", "fraud features build",
        "fraud features apply", "fraud features materialize", "fraud train run",
        "fraud serve api", "fraud monitor simulate",
    } <= called  # fmt: skip
    text = SCRIPTS["demo"].read_text()
    assert "/predict" in text and "mlflow ui --backend-store-uri sqlite:///mlflow.db" in text


@pytest.mark.parametrize("script", ["docker/scripts/demo.sh", "docker/entrypoint.sh", ".ci/run"])
def test_shell_scripts_are_strict_and_parse(script: str) -> None:
    path = ROOT / script
    assert "set -euo pipefail" in path.read_text()
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", text, re.MULTILINE) or "make test ||" in text
    assert "redis-server" in text and "apt-get install" in text
