"""Fixtures of the data tests: the project's parameters and one small synthetic data set."""

from __future__ import annotations

import pandas as pd
import pytest

from data.generate import generate
from fraud_platform.settings import GenerateParams, load_params

from .data_helpers import SMALL_CUSTOMERS, SMALL_DAYS, SMALL_SEED, kaggle_frame


@pytest.fixture(scope="session")
def generate_params() -> GenerateParams:
    """The project's generate parameters (params.yaml)."""
    return load_params().generate


@pytest.fixture(scope="session")
def small_tables(generate_params: GenerateParams) -> dict[str, pd.DataFrame]:
    """A small synthetic data set; treat as read-only (copy before changing)."""
    return generate(generate_params, SMALL_SEED, n_customers=SMALL_CUSTOMERS, days=SMALL_DAYS)


@pytest.fixture
def kaggle_rows(small_tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The first 300 small-table transactions in the Kaggle schema."""
    return kaggle_frame(small_tables, n_rows=300)
