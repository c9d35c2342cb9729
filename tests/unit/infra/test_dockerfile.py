"""docker/Dockerfile: pinned multi-stage build, non-root runtime, every COPY source present."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib

import pytest

from tests.support.infra_files import (
    ROOT,
    Instruction,
    dockerfile_stages,
    dockerignore_patterns,
    expand,
    global_args,
    is_dockerignored,
    parse_dockerfile,
)

DOCKERFILE = ROOT / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


def _copy_sources(item: Instruction) -> list[str]:
    words = [w for w in shlex.split(item.args) if not w.startswith("--")]
    return words[:-1]


def test_multi_stage_with_pinned_base_images(instructions: list[Instruction]) -> None:
    stages = dockerfile_stages(instructions)
    assert len(stages) >= 2, "build and runtime stages"
    args = global_args(instructions)
    stage_names = set()
    for stage in stages:
        words = stage[0].args.split()
        image = expand(words[0], args)
        if image not in stage_names:
            assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image
            assert not image.endswith(":latest")
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])


def test_runtime_stage_runs_as_non_root(instructions: list[Instruction]) -> None:
    runtime = dockerfile_stages(instructions)[-1]
    users = [item.args for item in runtime if item.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    created = " ".join(item.args for item in runtime if item.keyword == "RUN")
    assert "useradd" in created and users[-1].split(":")[0] in created


def test_runtime_stage_has_no_compiler(instructions: list[Instruction]) -> None:
    runtime = dockerfile_stages(instructions)[-1]
    assert not any("build-essential" in item.args for item in runtime)
    assert any(item.keyword == "COPY" and "--from=build" in item.args for item in runtime)


def test_every_copied_file_exists_and_is_in_the_context(instructions: list[Instruction]) -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    copies = [i for i in instructions if i.keyword in {"COPY", "ADD"} and "--from=" not in i.args]
    assert copies
    for item in copies:
        for source in _copy_sources(item):
            path = ROOT / source
            assert path.exists(), f"line {item.line}: COPY {source}: not in the repo"
            assert not is_dockerignored(source.rstrip("/"), patterns), (
                f"line {item.line}: COPY {source}: excluded by .dockerignore"
            )


def test_every_package_is_copied(instructions: list[Instruction]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in patterns}  # top-level packages, subpackages too
    assert {"feature_engine", "feature_repo", "serving"} <= packages
    copied = {
        source.rstrip("/")
        for item in instructions
        if item.keyword == "COPY" and "--from=" not in item.args
        for source in _copy_sources(item)
    }
    assert packages <= copied, f"the image lacks packages {sorted(packages - copied)}"
    assert {"pyproject.toml", "constraints.txt", "params.yaml"} <= copied


def test_dependencies_are_pinned_by_constraints(instructions: list[Instruction]) -> None:
    installs = [i.args for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert any("-c constraints.txt" in args for args in installs)


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for path in (".venv", ".git", "data/raw", "data/features", "mlflow.db", ".env", ".run"):
        assert is_dockerignored(path, patterns), path
    for path in (
        "fraud_platform/settings.py",
        "data/generate.py",
        "feature_repo/feature_store.yaml",
    ):
        assert not is_dockerignored(path, patterns), path


def test_entrypoint_is_executable_valid_bash() -> None:
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    result = subprocess.run(["bash", "-n", str(entrypoint)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for role in ("api)", "bootstrap)", "mlflow)"):
        assert role in entrypoint.read_text()
