"""Scoring, end to end: features -> model -> explanation -> prediction log -> ingestion.

Everything here is resolved once at start-up (:func:`build_service`) and shared by requests.
Batch semantics: every item's features are read (in one call) *before* any item of the batch
is ingested, so items of one batch do not see one another; the batch is then ingested in
timestamp order. Send dependent transactions in separate requests to have them see each other.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from feature_repo.logic import MICROS_PER_SECOND, STATE_TIME_FIELDS, Transaction, lateness_us
from feature_repo.store import request_row, to_epoch_us
from serving.features import FeatureReader, make_reader
from serving.ingest import Ingestor
from serving.metrics import Metrics
from serving.model import ModelBundle, ModelHolder, current_version, load_by_alias
from serving.prediction_log import PredictionLog
from serving.schemas import TransactionIn

if TYPE_CHECKING:
    from feast import FeatureStore

    from fraud_platform.settings import Settings

logger = logging.getLogger(__name__)

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _is_unknown(value: Any) -> bool:
    """A feature the online state could not answer exactly (NaN, or null through Feast)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class ServiceUnavailableError(RuntimeError):
    """A dependency (the online store, the model) is missing; answered as HTTP 503."""


@dataclass
class ScoringService:
    """The API's long-lived parts."""

    store: FeatureStore
    reader: FeatureReader
    models: ModelHolder
    ingestor: Ingestor
    log: PredictionLog
    metrics: Metrics
    lateness_seconds: float  # features.max_lateness_seconds: later than this is not exact

    def model(self) -> ModelBundle:
        """The current model, or 503 if none could be loaded yet."""
        bundle = self.models.bundle
        if bundle is None:
            raise ServiceUnavailableError(f"no model loaded: {self.models.last_error}")
        return bundle

    def score(self, items: Sequence[TransactionIn], received: float) -> list[dict[str, Any]]:
        """Score transactions, log them, and hand them to ingestion.

        Args:
            items: Validated transactions.
            received: ``time.perf_counter()`` when the request arrived (for the lag metric).

        Returns:
            One ``ScoreOut``-shaped dict per item, in order.

        Raises:
            ServiceUnavailableError: Redis unreachable or no model.
        """
        bundle = self.model()  # one bundle for the whole request, whatever the poller does
        txns = [
            Transaction(
                transaction_id=item.transaction_id or uuid.uuid4().hex,
                customer_id=item.customer_id,
                merchant_id=item.merchant_id,
                ts_us=to_epoch_us(item.timestamp),
                amount=float(item.amount),
                lat=float(item.lat),
                long=float(item.long),
            )
            for item in items
        ]
        if not self.ingestor.before_read(txns):
            self.metrics.ingest_wait_timeouts.inc()
        rows = [
            request_row(t.customer_id, t.merchant_id, item.timestamp, t.amount, t.lat, t.long)
            for t, item in zip(txns, items, strict=True)
        ]
        started = time.perf_counter()
        try:
            features = self.reader.read(rows)
        except REDIS_ERRORS as exc:
            self.metrics.store_errors.inc()
            raise ServiceUnavailableError(f"online store unreachable: {exc}") from exc
        self.metrics.feature_fetch.observe(time.perf_counter() - started)

        lateness_bound = self.lateness_seconds
        scored_at = datetime.now(UTC)
        model_version = {"name": bundle.name, "version": bundle.version, "run_id": bundle.run_id}
        results = []
        for txn, item, read in zip(txns, items, features, strict=True):
            state_times = [read.pop(field) for field in STATE_TIME_FIELDS.values()]
            values = read
            late_seconds = max(lateness_us(txn.ts_us, t) for t in state_times) / MICROS_PER_SECOND
            late_beyond_bound = late_seconds > lateness_bound
            if late_beyond_bound:
                self.metrics.late_beyond_bound.inc()
            probability, x, contributions = bundle.score(values)
            prediction = "FRAUD" if probability >= bundle.threshold else "LEGIT"
            cold_start = bool(values.get("is_new_customer") or values.get("is_new_merchant"))
            unknown = [name for name, value in values.items() if _is_unknown(value)]
            if unknown:
                self.metrics.unknown_features.inc(len(unknown))
            self.metrics.predictions.labels(prediction).inc()
            if cold_start:
                self.metrics.cold_starts.inc()
            self.log.append(
                {
                    "transaction_id": txn.transaction_id,
                    "customer_id": txn.customer_id,
                    "merchant_id": txn.merchant_id,
                    "timestamp": item.timestamp,
                    "scored_at": scored_at,
                    **values,
                    "probability": probability,
                    "prediction": prediction,
                    "threshold": bundle.threshold,
                    "model_name": bundle.name,
                    "model_version": bundle.version,
                    "model_run_id": bundle.run_id,
                    "cold_start": cold_start,
                }
            )
            results.append(
                {
                    "transaction_id": txn.transaction_id,
                    "prediction": prediction,
                    "probability": probability,
                    "threshold": bundle.threshold,
                    "explanation": bundle.explain(x, contributions),
                    "model_version": model_version,
                    "cold_start": cold_start,
                    "features": {k: None if k in unknown else v for k, v in values.items()},
                    "unknown_features": unknown,
                    "lateness_seconds": late_seconds,
                    "late_beyond_bound": late_beyond_bound,
                }
            )
        try:
            self.ingestor.submit(txns, received)
        except REDIS_ERRORS as exc:  # sync mode only; async failures are logged and counted
            self.metrics.store_errors.inc()
            raise ServiceUnavailableError(f"online store unreachable: {exc}") from exc
        self.metrics.ingest_backlog.set(self.ingestor.backlog)
        return results

    def readiness(self) -> list[str]:
        """Reasons the service cannot score now; empty when ready."""
        reasons = []
        try:
            self.reader.ping()
        except REDIS_ERRORS as exc:
            reasons.append(f"online store unreachable: {exc}")
        if self.models.bundle is None:
            reasons.append(f"no model loaded: {self.models.last_error}")
        return reasons

    def close(self) -> None:
        """Stop polling, drain ingestion, flush the prediction log."""
        self.models.stop()
        self.ingestor.close()
        self.log.close()


def build_service(settings: Settings) -> ScoringService:
    """Open the store, resolve the reader and writer, load the model, start the threads."""
    from feature_repo.online_state import OnlineStateWriter
    from feature_repo.store import open_store
    from fraud_platform.settings import load_params

    params = load_params(settings.paths.params_file)
    store = open_store(settings)
    reader = make_reader(store, settings.serving_feature_path)
    writer = OnlineStateWriter(store, params.features)
    metrics = Metrics()
    uri, name, alias = settings.tracking_uri, settings.model_name, settings.model_alias
    models = ModelHolder(
        load=lambda: load_by_alias(uri, name, alias),
        version_now=lambda: current_version(uri, name, alias),
        service_features=reader.names,
        poll_seconds=settings.serving_model_poll_seconds,
    )
    ingestor = Ingestor(
        write=writer.ingest_transaction,
        mode=settings.serving_ingest_mode,
        queue_size=settings.serving_ingest_queue_size,
        wait_seconds=settings.serving_ingest_wait_seconds,
        observe_lag=metrics.ingest_lag.observe,
        count_failure=metrics.ingest_failures.inc,
    )
    log = PredictionLog(
        settings.paths.prediction_log_dir,
        rotate_rows=settings.prediction_log_rotate_rows,
        rotate_seconds=settings.serving_log_rotate_seconds,
        queue_size=settings.serving_log_queue_size,
    )
    models.start()
    ingestor.start()
    log.start()
    return ScoringService(
        store, reader, models, ingestor, log, metrics, params.features.max_lateness_seconds
    )
