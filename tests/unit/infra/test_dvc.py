"""dvc.yaml and .dvc/: stages that point at real files, real params and real `fraud` commands."""

from __future__ import annotations

import ast
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.infra_files import ROOT, resolve_fraud_command, unknown_options

STAGES = ("generate", "features", "train", "evaluate")


def _dvc() -> str:
    found = Path(sys.executable).with_name("dvc")
    return str(found) if found.exists() else (shutil.which("dvc") or "dvc")


def _outputs(stage: dict[str, Any]) -> list[str]:
    paths: list[str] = []
    for key in ("outs", "metrics", "plots"):
        for item in stage.get(key, []):
            paths.append(next(iter(item)) if isinstance(item, dict) else str(item))
    return paths


def test_stages_present(dvc_config: dict[str, Any]) -> None:
    assert list(dvc_config["stages"]) == list(STAGES)


def test_deps_exist_or_come_from_an_earlier_stage(dvc_config: dict[str, Any]) -> None:
    produced: set[str] = set()
    for name, stage in dvc_config["stages"].items():
        for dep in stage.get("deps", []):
            assert dep in produced or (ROOT / dep).exists(), f"{name}: missing dep {dep}"
        produced.update(_outputs(stage))


def _project_imports(start: str) -> set[str]:
    """The project's modules a file imports, transitively (``from package.module import ...``)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = Path(*node.module.split(".")).with_suffix(".py")
                if (ROOT / module).exists():
                    todo.append(module.as_posix())
    return seen


def test_the_features_stage_depends_on_every_module_the_build_runs(
    dvc_config: dict[str, Any],
) -> None:
    """A change to any module the offline build imports, or to the declarations it builds the
    state for (a declared window, say: ``fraud features build`` passes
    ``feature_repo.services.STATE_VELOCITY``), reruns it."""
    deps = set(dvc_config["stages"]["features"]["deps"])
    runs = _project_imports("feature_engine/offline/pipeline.py")
    runs |= _project_imports("feature_repo/services.py")
    assert "feature_repo/velocity.py" in runs  # the declarations really are followed
    missing = sorted(runs - deps)
    assert not missing, f"add to the features stage's deps in dvc.yaml: {missing}"


def test_raw_data_is_a_stage_output(dvc_config: dict[str, Any]) -> None:
    stages = dvc_config["stages"]
    assert stages["generate"]["outs"] == ["data/raw"]
    assert "data/features" in _outputs(stages["features"])
    assert {"models/metrics.json", "models/reference_sample.parquet"} <= set(
        _outputs(stages["train"])
    )
    assert "models/metrics.json" in stages["train"]["metrics"]


def test_params_exist_in_params_yaml(dvc_config: dict[str, Any]) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in dvc_config["stages"].items():
        for key in stage.get("params", []):
            node: Any = params
            for part in str(key).split("."):
                assert isinstance(node, dict) and part in node, f"{name}: no param {key}"
                node = node[part]


@pytest.mark.parametrize("stage_name", STAGES)
def test_commands_exist_in_the_fraud_cli(dvc_config: dict[str, Any], stage_name: str) -> None:
    cmd = dvc_config["stages"][stage_name]["cmd"]
    commands = [shlex.split(part) for part in cmd.split("&&")]
    assert commands
    for words in commands:
        assert words[0] == "fraud", f"{stage_name}: {cmd!r} is not a fraud command"
        command, rest = resolve_fraud_command(words)
        assert not unknown_options(command, rest), f"{stage_name}: {words}"


def test_outputs_are_git_ignored(dvc_config: dict[str, Any]) -> None:
    """DVC would otherwise write .gitignore files into data/, models/ and reports/."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    outputs = [out for stage in dvc_config["stages"].values() for out in _outputs(stage)]
    # Folders get their slash, so that `/data/raw/`-style patterns match before they exist.
    outputs = [out if Path(out).suffix else out + "/" for out in outputs]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *outputs],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    ignored = set(result.stdout.split())
    assert ignored == set(outputs), f"not ignored: {sorted(set(outputs) - ignored)}"


def test_dvc_reads_the_pipeline() -> None:
    result = subprocess.run(
        [_dvc(), "dag", "--md"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for edge in ("generate", "features", "train", "evaluate"):
        assert edge in result.stdout


def test_default_remote_is_a_local_absolute_folder() -> None:
    result = subprocess.run(
        [_dvc(), "remote", "list"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    remotes = dict(line.split()[:2] for line in result.stdout.splitlines() if line.strip())
    default = subprocess.run(
        [_dvc(), "remote", "default"], cwd=ROOT, capture_output=True, text=True, timeout=120
    ).stdout.strip()
    assert default in remotes
    assert Path(remotes[default]).is_absolute(), "a clone in any folder must find the remote"


def test_dvc_init_files_are_present() -> None:
    assert (ROOT / ".dvc" / "config").is_file()
    assert (ROOT / ".dvcignore").is_file()
    ignored = (ROOT / ".dvc" / ".gitignore").read_text().split()
    assert {"/cache", "/tmp", "/config.local"} <= set(ignored)
