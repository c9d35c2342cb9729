"""The floor plan: every package imports only packages on its own floor or below.

Floors, ground first: fraud_platform (settings, contracts, journal: imports no step) -> data ->
feature_engine (the machinery: it never imports the declarations, they come in as arguments)
-> feature_repo (what a user edits and Feast reads: the declarations and the Feast objects) ->
training and serving (side by side, neither imports the other) -> monitoring -> simulation ->
ops (the scheduled jobs and the console) -> fraud_cli (the command line, which nothing
imports). tests/ and benchmarks/ stand outside the house. Every import statement counts, the
lazy ones inside functions included.

Inside feature_engine the rooms have floors too: the declaration language, then the state (pure
functions), then the offline and online sides, then what joins them (materialize, Spark, the
door to Feast).
"""

from __future__ import annotations

import ast
from pathlib import Path

from fraud_platform.settings import PROJECT_ROOT

FLOORS = {
    "fraud_platform": 0,
    "data": 1,
    "feature_engine": 2,
    "feature_repo": 3,
    "training": 4,
    "serving": 4,
    "monitoring": 5,
    "simulation": 6,
    "ops": 7,
    "fraud_cli": 8,
}
ROOMS = {  # feature_engine's rooms, by their first name below the package
    "declarations": 0,
    "state": 1,
    "offline": 2,
    "online": 2,
    "materialize": 3,
    "spark": 3,
    "store": 3,
    "build": 3,
}


def _imports(
    floors: dict[str, int], base: Path, prefix: str = ""
) -> list[tuple[str, int, str, str]]:
    """(file, line, importing part, imported part) of every import between the parts."""
    found = []
    for part in floors:
        paths = [base / f"{part}.py"] if (base / f"{part}.py").exists() else []
        paths += sorted((base / part).rglob("*.py")) if (base / part).is_dir() else []
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if prefix and not name.startswith(prefix):
                        continue
                    target = name.removeprefix(prefix).split(".")[0]
                    if target in floors and target != part:
                        rel = str(path.relative_to(PROJECT_ROOT))
                        found.append((rel, node.lineno, part, target))
    return found


def _packages() -> list[tuple[str, int, str, str]]:
    return _imports(FLOORS, PROJECT_ROOT)


def test_no_package_imports_a_higher_floor() -> None:
    upward = [
        f"{file}:{line} {package} -> {target}"
        for file, line, package, target in _packages()
        if FLOORS[target] > FLOORS[package]
    ]
    assert upward == []


def test_training_and_serving_do_not_import_each_other() -> None:
    sideways = [
        f"{file}:{line} {package} -> {target}"
        for file, line, package, target in _packages()
        if FLOORS[target] == FLOORS[package]
    ]
    assert sideways == []


def test_nothing_imports_the_command_line() -> None:
    importers = {package for _, _, package, target in _packages() if target == "fraud_cli"}
    assert importers == set()
    assert {package for _, _, package, _ in _packages()} >= {"feature_repo", "fraud_cli"}


def test_the_engine_never_imports_the_declarations() -> None:
    """The engine takes feature_repo's tables as arguments: it can be read, tested and reused
    without them, and a declaration change never needs an engine change."""
    imported = {target for _, _, package, target in _packages() if package == "feature_engine"}
    assert "feature_repo" not in imported
    assert imported >= {"fraud_platform"}  # the scan really reads the engine


def test_the_engines_rooms_import_downward_only() -> None:
    found = _imports(ROOMS, PROJECT_ROOT / "feature_engine", prefix="feature_engine.")
    upward = [
        f"{file}:{line} {room} -> {target}"
        for file, line, room, target in found
        if ROOMS[target] >= ROOMS[room] and not (ROOMS[target] == ROOMS[room] == 3)
    ]
    assert upward == []
    assert {room for _, _, room, _ in found} >= {"state", "offline", "online", "spark"}


def test_feature_repo_holds_declarations_only() -> None:
    """What a user edits and Feast reads: the declaration tables, the Feast objects, the YAMLs."""
    modules = sorted(path.name for path in (PROJECT_ROOT / "feature_repo").glob("*.py"))
    assert len(modules) <= 6, modules  # the engine lives in feature_engine/
    assert {"definitions.py", "velocity.py", "derived.py", "services.py"} <= set(modules)
    folders = [p.name for p in (PROJECT_ROOT / "feature_repo").iterdir() if p.is_dir()]
    assert set(folders) <= {"__pycache__"}
