"""Prometheus metrics of the API, on a registry of its own (one per app instance).

Several workers (``fraud serve api --workers N``) share one ``/metrics``: the command points
``PROMETHEUS_MULTIPROC_DIR`` at an empty folder before uvicorn starts them, so prometheus_client
keeps every worker's values in memory-mapped files there, and whichever worker answers
``/metrics`` adds them up (:func:`exposition`). The command also sets
``FRAUD_METRICS_MULTIPROC_DIR`` to the same folder, and that is what says "several workers":
Feast 0.67 sets ``PROMETHEUS_MULTIPROC_DIR`` to a temporary folder of its own when
``feast.metrics`` is imported, in every process, so that variable alone says nothing.

Counters and histograms sum over workers; gauges say how they combine (``multiprocess_mode``):
the ingestion backlog sums over live workers, "the online store is up" and "a model is loaded"
are the worst live worker's value. A single worker (the default, and every test app) uses its
own registry alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
MULTIPROCESS_DIR_ENV = "FRAUD_METRICS_MULTIPROC_DIR"  # ours: set only by `fraud serve api`


def multiprocess_dir() -> str | None:
    """The shared metrics folder of a multi-worker API, or ``None`` for a single process."""
    return os.environ.get(MULTIPROCESS_DIR_ENV) or None


def use_multiprocess_dir(directory: Path) -> None:
    """Make the workers about to start share ``directory`` (emptied) for their metrics."""
    prepare_multiprocess_dir(directory)
    os.environ[PROMETHEUS_DIR_ENV] = os.environ[MULTIPROCESS_DIR_ENV] = str(directory)


def prepare_multiprocess_dir(directory: Path) -> Path:
    """Create ``directory`` empty for a new set of workers (old workers' files would count)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``/metrics``: every worker's values in multiprocess mode."""
    folder = multiprocess_dir()
    if folder:
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=folder)
        return generate_latest(combined)
    return generate_latest(registry)


def mark_worker_stopped() -> None:
    """Drop this worker's live gauges from the shared folder (on shutdown)."""
    folder = multiprocess_dir()
    if folder:
        multiprocess.mark_process_dead(os.getpid(), path=folder)


_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


_SCORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


@dataclass
class Metrics:
    """Every metric the API exports."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        """Create the metrics on this instance's registry."""
        r = self.registry
        self.requests = Counter(
            "fraud_api_requests", "HTTP requests by endpoint and status.",
            ["endpoint", "method", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "fraud_api_request_seconds", "Request latency by endpoint (server side).",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            "fraud_api_predictions", "Scored transactions by decision (FRAUD, REVIEW, LEGIT).",
            ["prediction"], registry=r,
        )  # fmt: skip
        self.scores = Histogram(
            "fraud_api_score", "Calibrated fraud probability of each scored transaction.",
            buckets=_SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.cold_starts = Counter(
            "fraud_api_cold_starts", "Scored transactions of an unknown customer or merchant.",
            registry=r,
        )  # fmt: skip
        self.labels_ingested = Counter(
            "fraud_api_labels_ingested", "Labels folded into the online label state.",
            registry=r,
        )  # fmt: skip
        self.late_beyond_bound = Counter(
            "fraud_api_late_beyond_bound",
            "Transactions older than the stored state by more than the lateness bound "
            "(features not exact).",
            registry=r,
        )  # fmt: skip
        self.unknown_features = Counter(
            "fraud_api_unknown_features",
            "Features answered as unknown (the online state could not give the exact value).",
            registry=r,
        )  # fmt: skip
        self.feature_fetch = Histogram(
            "fraud_api_feature_fetch_seconds", "Online feature read (one call per request).",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ingest_lag = Histogram(
            "fraud_api_ingestion_lag_seconds",
            "Request received -> transaction folded into the online state.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ingest_failures = Counter(
            "fraud_api_ingestion_failures", "Online-state writes that failed.", registry=r
        )
        self.ingest_wait_timeouts = Counter(
            "fraud_api_ingestion_wait_timeouts",
            "Reads that gave up waiting for a pending write of their entity.", registry=r,
        )  # fmt: skip
        self.ingest_unwaited = Counter(
            "fraud_api_ingestion_unwaited_reads",
            "Reads of an entity with stream entries pending that did not wait for them: no "
            "live ingestion worker (the answer may miss those transactions).", registry=r,
        )  # fmt: skip
        # Stream mode only (labelled: exported once set, so the other modes show no series).
        self.ingest_workers_alive = Gauge(
            "fraud_api_ingestion_workers_alive",
            "Ingestion workers that beat within the last 5 s (stream mode).", ["stream"],
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.ingest_heartbeat_age = Gauge(
            "fraud_api_ingestion_worker_heartbeat_age_seconds",
            "Seconds since the latest beat of any ingestion worker (stream mode).", ["stream"],
            registry=r, multiprocess_mode="livemin",
        )  # fmt: skip
        self.ingest_backlog = Gauge(
            "fraud_api_ingestion_backlog", "Writes waiting in the ingestion queue.", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.model_info = Gauge(
            "fraud_api_model_version", "Served model version (value 1).",
            ["name", "version", "run_id"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self._model_labels: tuple[str, str, str] | None = None
        self.store_errors = Counter(
            "fraud_api_online_store_errors", "Requests answered 503: online store unreachable.",
            registry=r,
        )  # fmt: skip
        self.store_up = Gauge(
            "fraud_api_online_store_up",
            "1 while the online store answers, 0 while requests are answered 503 without trying.",
            registry=r, multiprocess_mode="livemin",
        )  # fmt: skip
        self.store_up.set(1)
        self.model_loaded = Gauge(
            "fraud_api_model_loaded", "1 once a model is loaded (0: /predict answers 503).",
            registry=r, multiprocess_mode="livemin",
        )  # fmt: skip
        self.model_registry_missing = Gauge(
            "fraud_api_model_registry_entry_missing",
            "1 when the served model's registry entry (version or alias) no longer exists; the "
            "model in memory keeps scoring.", registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.prediction_log_failures = Counter(
            "fraud_api_prediction_log_failures",
            "Scored transactions that could not be written to the prediction log.", registry=r,
        )  # fmt: skip

    def set_model(self, labels: tuple[str, str, str] | None) -> None:
        """Say which model is served: its (name, version, run id) at 1, a replaced one at 0.

        A replaced version is set to 0 rather than removed: in multiprocess mode a worker's
        values live in its file, and a removed label set would keep its last value there.
        """
        if labels == self._model_labels:
            return
        if self._model_labels is not None:
            self.model_info.labels(*self._model_labels).set(0)
        if labels is not None:
            self.model_info.labels(*labels).set(1)
        self._model_labels = labels
