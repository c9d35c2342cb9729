"""One small synthetic project per session: raw data -> offline tables -> `feast apply`.

Two roots are built: ``full`` (the whole period) and ``early`` (only the transactions before
60 % of the period, with their labels). Both are applied with the real ``feast`` CLI, in
parallel, and the full root's training set is retrieved once through the real
``get_historical_features``. MLflow stores live in each test's own tmp folder.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from feature_repo.services import STATE_VELOCITY
from fraud_platform.settings import Settings, load_params
from tests.support.training_projects import (
    EARLY_SHARE,
    UNREACHABLE_REDIS,
    Project,
    early_tables,
    feast_apply,
    isolated_environment,
    small_params,
    write_params,
)
from training.dataset import TrainingSet


@pytest.fixture(scope="session")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Project]:
    """``full`` and ``early`` projects, built and applied once for the session."""
    from data.generate import generate, write_tables
    from feature_engine.offline.pipeline import build_features

    raw_params = small_params()
    built: dict[str, Project] = {}
    for name in ("full", "early"):
        root = tmp_path_factory.mktemp(f"training_{name}")
        write_params(root, raw_params)
        settings = Settings(
            project_root=root,
            redis_url=UNREACHABLE_REDIS,
            mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",  # never the outer env's
        )
        params = load_params(settings.paths.params_file)
        tables = generate(params.generate, params.seed)
        if name == "early":
            start = pd.Timestamp(params.generate.start_date, tz="UTC")
            tables = early_tables(tables, EARLY_SHARE, start)
        write_tables(tables, settings.paths.raw_dir)
        build_features(settings.paths, params.features, STATE_VELOCITY)
        built[name] = Project(root=root, settings=settings, params=params, tables=tables)
    applies = {name: feast_apply(project.settings) for name, project in built.items()}
    for name, process in applies.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"feast apply ({name}) failed:\n{output}"
    return built


@pytest.fixture(scope="session")
def retrieve(projects: dict[str, Project]) -> Callable[[str], TrainingSet]:
    """Training sets retrieved through Feast, cached per project name."""
    from training.dataset import load_training_set

    cache: dict[str, TrainingSet] = {}

    def get(name: str) -> TrainingSet:
        if name not in cache:
            with isolated_environment(projects[name].root):
                cache[name] = load_training_set(projects[name].settings, progress=lambda _: None)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def training_set(retrieve: Callable[[str], TrainingSet]) -> TrainingSet:
    """The full project's training set."""
    return retrieve("full")
