"""Serving-only knobs (``SERVING_*`` environment variables).

Addresses, keys and the model name live in :mod:`fraud_platform.settings`; this holds only what
no other step of the platform reads: how the API reads features, ingests and logs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingConfig(BaseSettings):
    """Tunables of the scoring API.

    Attributes:
        feature_path: ``feast`` (default) goes through ``FeatureStore.get_online_features`` on
            the feature service; ``direct`` reads the four state views in one Redis pipeline and
            runs the registered on-demand function (resolved once; ~5x faster, measured in
            benchmarks/bench_serving.py). Both return the same numbers (tested).
        ingest_mode: ``async`` folds a scored transaction into the online state on a background
            thread right after scoring, and a later request of the same customer or merchant
            waits for it (read-your-writes inside one worker process); ``sync`` ingests inside
            the request before answering (needed for read-your-writes across several workers).
        ingest_wait_seconds: Longest wait of a request for a pending ingestion of its entities.
        ingest_queue_size: Bound of the ingestion queue; when full, the request ingests inline.
        model_poll_seconds: How often the registry alias is checked for a new model version.
        log_rotate_seconds: A prediction-log file is closed at least this often (if non-empty).
        log_queue_size: Bound of the prediction-log queue (backpressure, never a silent drop).
    """

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore")

    feature_path: Literal["direct", "feast"] = "feast"
    ingest_mode: Literal["async", "sync"] = "async"
    ingest_wait_seconds: float = Field(default=2.0, gt=0)
    ingest_queue_size: int = Field(default=10_000, gt=0)
    model_poll_seconds: float = Field(default=30.0, gt=0)
    log_rotate_seconds: float = Field(default=300.0, gt=0)
    log_queue_size: int = Field(default=100_000, gt=0)


@lru_cache(maxsize=1)
def get_serving_config() -> ServingConfig:
    """The process-wide serving configuration (read once)."""
    return ServingConfig()
