"""Small synthetic training projects: their parameters, their roots, an isolated environment.

``small_params`` is the repo's ``params.yaml`` shrunk so that 3-fold CV has positives;
:func:`isolated_environment` gives a test its own MLflow store and puts back the Feast
variables and MLflow globals afterwards. The integration tests build the projects
(``tests/integration/training/conftest.py``); the unit tests use the parameters only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from feature_engine.feast_cli import feast_command
from fraud_platform.settings import (
    PROJECT_ROOT,
    Params,
    Settings,
    feast_environment,
    get_settings,
)

N_CUSTOMERS = 150
DAYS = 14
EARLY_SHARE = 0.6  # the early root keeps transactions before this share of the period
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # apply and offline retrieval never connect


def small_params() -> dict:
    """params.yaml of the repo, shrunk and with more fraud, so that 3-fold CV has positives."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["generate"].update(
        n_customers=N_CUSTOMERS,
        n_merchants=60,
        days=DAYS,
        card_testing_rate=0.03,
        account_takeover_rate=0.05,
        compromised_merchant_rate=0.05,
    )
    params["train"].update(k_folds=3, reference_sample_size=300)
    return params


def write_params(root: Path, params: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def feast_apply(settings: Settings) -> subprocess.Popen[str]:
    env = {**os.environ, **feast_environment(settings)}
    return subprocess.Popen(
        feast_command("apply"),
        cwd=settings.paths.feature_repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@dataclass
class Project:
    """An applied feature project in its own root."""

    root: Path
    settings: Settings
    params: Params
    tables: dict[str, pd.DataFrame]


def early_tables(
    tables: dict[str, pd.DataFrame], share: float, start: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """The raw tables as they were before ``share`` of the period: later transactions removed.

    The period starts at ``start`` (the generator's ``start_date``); the warm-up before it is
    kept whole, as it trains nothing.
    """
    tx = tables["transactions"]
    last = tx["timestamp"].max()
    cutoff = start + (last - start) * share
    kept = tx.loc[tx["timestamp"] < cutoff].reset_index(drop=True)
    labels = tables["labels"]
    return {
        **tables,
        "transactions": kept,
        "labels": labels.loc[labels["transaction_id"].isin(kept["transaction_id"])],
    }


@contextmanager
def isolated_environment(mlflow_dir: Path) -> Iterator[pytest.MonkeyPatch]:
    """MLflow store in ``mlflow_dir`` for the command lines run in-process; MLflow globals restored.

    Only the ``fraud train`` commands (which read the process settings, as a command line
    should) need the environment; the library calls take their settings explicitly.
    """
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    # MLflow keeps the URIs in module globals; put back whatever another test had set.
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_URL", UNREACHABLE_REDIS)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir / 'mlflow.db'}")
        get_settings.cache_clear()
        try:
            yield patch
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved
            get_settings.cache_clear()
