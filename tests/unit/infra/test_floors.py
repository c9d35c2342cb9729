"""The floor plan: every package imports only packages on its own floor or below.

Floors, ground first: fraud_platform (settings, contracts, journal: imports no step) -> data ->
feature_repo -> training and serving (side by side, neither imports the other) -> monitoring ->
simulation -> fraud_cli (the command line, which nothing imports). tests/ and benchmarks/ stand
outside the house. Every import statement counts, the lazy ones inside functions included.
"""

from __future__ import annotations

import ast

from fraud_platform.settings import PROJECT_ROOT

FLOORS = {
    "fraud_platform": 0,
    "data": 1,
    "feature_repo": 2,
    "training": 3,
    "serving": 3,
    "monitoring": 4,
    "simulation": 5,
    "fraud_cli": 6,
}


def _imports() -> list[tuple[str, int, str, str]]:
    """(file, line, importing package, imported package) of every first-party import."""
    found = []
    for package in FLOORS:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    target = name.split(".")[0]
                    if target in FLOORS and target != package:
                        rel = str(path.relative_to(PROJECT_ROOT))
                        found.append((rel, node.lineno, package, target))
    return found


def test_no_package_imports_a_higher_floor() -> None:
    upward = [
        f"{file}:{line} {package} -> {target}"
        for file, line, package, target in _imports()
        if FLOORS[target] > FLOORS[package]
    ]
    assert upward == []


def test_training_and_serving_do_not_import_each_other() -> None:
    sideways = [
        f"{file}:{line} {package} -> {target}"
        for file, line, package, target in _imports()
        if FLOORS[target] == FLOORS[package]
    ]
    assert sideways == []


def test_nothing_imports_the_command_line() -> None:
    importers = {package for _, _, package, target in _imports() if target == "fraud_cli"}
    assert importers == set()
    assert {package for _, _, package, _ in _imports()} >= {"feature_repo", "fraud_cli"}
