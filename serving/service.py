"""Scoring, end to end: features -> model -> explanation -> ingestion -> prediction log.

Everything here is resolved once at start-up (:func:`build_service`) and shared by requests;
:meth:`ScoringService.score` is blocking (Redis, the log's write) and runs on the API's thread
pool, never on the event loop. Batch semantics: every item's features are read (in one call)
*before* any item of the batch is ingested, so items of one batch do not see one another; the
batch is then ingested in timestamp order. Send dependent transactions in separate requests to
have them see each other.

The prediction-log rows of a request are written (to the OS) after its ingestion was accepted
and before its answer: every answered prediction is in the log, and none that was refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from feature_engine.declarations import MICROS_PER_SECOND
from feature_engine.state.fields import STATE_TIME_FIELDS
from feature_engine.state.fold import Transaction
from feature_engine.state.request import is_unknown, lateness_us
from feature_engine.store import from_epoch_us, request_row, to_epoch_us
from feature_repo.services import STATE_VELOCITY
from fraud_platform.contracts import (
    AMOUNT,
    CUSTOMER_ID,
    LAT,
    LONG,
    MERCHANT_ID,
    TIMESTAMP,
    TRANSACTION_ID,
)
from fraud_platform.journal import Journal, JournalError
from serving.features import FeatureReader, feature_types, make_readers
from serving.ingest import Ingestor
from serving.metrics import Metrics
from serving.model import (
    ModelBundle,
    ModelHolder,
    bound_registry_requests,
    current_version,
    load_by_alias,
)
from serving.online_store import (
    REDIS_ERRORS,
    OnlineStoreGuard,
    install_fast_client,
    make_probe,
)
from serving.prediction_log import PredictionLog, prediction_record
from serving.schemas import LabelIn, TransactionIn
from serving.stream import StreamPublisher

if TYPE_CHECKING:
    from pathlib import Path

    from feast import FeatureStore

    from feature_engine.online.writer import OnlineStateWriter
    from fraud_platform.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class IngestJournals:
    """The durable twins of what the API folds into Redis (:mod:`feature_engine.offline.events`)."""

    transactions: Journal
    labels: Journal

    @classmethod
    def open(cls, directory: Path, fsync_seconds: float) -> IngestJournals:
        """Open both journals (recovering segments of a crashed process)."""
        from feature_engine.offline.events import open_journals

        return cls(*open_journals(directory, fsync_seconds))

    def close(self) -> None:
        """Seal, fsync and compact both."""
        self.transactions.close()
        self.labels.close()


def _request_fields(txn: Transaction, timestamp: datetime) -> dict[str, Any]:
    """A scored transaction's fields (contracts.REQUEST_FIELDS), with its event time."""
    return {
        TRANSACTION_ID: txn.transaction_id,
        CUSTOMER_ID: txn.customer_id,
        MERCHANT_ID: txn.merchant_id,
        TIMESTAMP: timestamp,
        AMOUNT: txn.amount,
        LAT: txn.lat,
        LONG: txn.long,
    }


def _transaction_record(txn: Transaction) -> dict[str, Any]:
    """A scored transaction as a row of the raw transactions table (data/schema.py)."""
    return _request_fields(txn, from_epoch_us(txn.ts_us))


class ServiceUnavailableError(RuntimeError):
    """A dependency (the online store, the model) is missing; answered as HTTP 503."""


@dataclass
class ScoringService:
    """The API's long-lived parts."""

    store: FeatureStore
    readers: dict[str, FeatureReader]  # feature service -> its reader: a model's names one
    models: ModelHolder
    ingestor: Ingestor | StreamPublisher
    log: PredictionLog
    metrics: Metrics
    guard: OnlineStoreGuard
    lateness_seconds: float  # features.max_lateness_seconds: later than this is not exact
    writer: OnlineStateWriter
    ingested: IngestJournals
    log_blank: dict[str, None]  # every feature column of the prediction log, as null

    def model(self) -> ModelBundle:
        """The current model, or 503 if none could be loaded yet."""
        bundle = self.models.bundle
        if bundle is None:
            raise ServiceUnavailableError(self.models.unavailable_reason)
        return bundle

    def _store_unavailable(self, exc: BaseException | None = None) -> ServiceUnavailableError:
        if exc is not None:
            self.guard.failed(exc)
        self.metrics.store_errors.inc()
        return ServiceUnavailableError(self.guard.reason or f"online store unreachable: {exc}")

    def score(self, items: Sequence[TransactionIn], received: float) -> list[dict[str, Any]]:
        """Score transactions, hand them to ingestion, then log them (before the answer).

        Blocking (Redis, the log's write): runs on the API's thread pool. Answers 503 at once,
        without touching Redis, while the online-store guard knows the store is down.

        Args:
            items: Validated transactions.
            received: ``time.perf_counter()`` when the request arrived (for the lag metric).

        Returns:
            One ``ScoreOut``-shaped dict per item, in order.

        Raises:
            ServiceUnavailableError: Redis unreachable or no model.
        """
        if not self.guard.up:  # known down: answer at once, touch nothing
            raise self._store_unavailable()
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
        try:
            clear = self.ingestor.before_read(txns)
        except REDIS_ERRORS as exc:  # stream mode asks Redis
            raise self._store_unavailable(exc) from exc
        if not clear:
            if not self.guard.up:  # the store went down while we waited for its writes
                raise self._store_unavailable()
            self.metrics.ingest_wait_timeouts.inc()
        rows = [
            request_row(t.customer_id, t.merchant_id, item.timestamp, t.amount, t.lat, t.long)
            for t, item in zip(txns, items, strict=True)
        ]
        started = time.perf_counter()
        try:
            # The features of the service the model was trained on (the holder only loads a
            # model whose service has a reader).
            features = self.readers[bundle.feature_service].read(rows)
        except REDIS_ERRORS as exc:
            raise self._store_unavailable(exc) from exc
        self.metrics.feature_fetch.observe(time.perf_counter() - started)

        lateness_bound = self.lateness_seconds
        scored_at = datetime.now(UTC)
        model_version = {"name": bundle.name, "version": bundle.version, "run_id": bundle.run_id}
        results = []
        records = []
        for txn, item, read in zip(txns, items, features, strict=True):
            state_times = [read.pop(field) for field in STATE_TIME_FIELDS.values()]
            values = read
            late_seconds = max(lateness_us(txn.ts_us, t) for t in state_times) / MICROS_PER_SECOND
            late_beyond_bound = late_seconds > lateness_bound
            if late_beyond_bound:
                self.metrics.late_beyond_bound.inc()
            probability, x, contributions = bundle.score(values)
            prediction = bundle.prediction(probability)
            cold_start = bool(values.get("is_new_customer") or values.get("is_new_merchant"))
            unknown = [name for name, value in values.items() if is_unknown(value)]
            if unknown:
                self.metrics.unknown_features.inc(len(unknown))
            records.append(
                prediction_record(
                    _request_fields(txn, item.timestamp),
                    scored_at,
                    {**self.log_blank, **values},  # the log's columns of other services: null
                    probability=probability,
                    prediction=prediction,
                    threshold=bundle.threshold,
                    model=model_version,
                    cold_start=cold_start,
                )
            )
            results.append(
                {
                    "transaction_id": txn.transaction_id,
                    "prediction": prediction,
                    "probability": probability,
                    "threshold": bundle.threshold,
                    "review_threshold": bundle.review_at,
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
        except REDIS_ERRORS as exc:  # stream or sync mode (or a full queue): the write failed
            raise self._store_unavailable(exc) from exc
        # Journaled once the write is accepted (done, in sync mode; queued, in async mode; in
        # the stream, in stream mode) and before the answer: every answered transaction is in
        # the journal, so the online state can be rebuilt from raw data plus the journal
        # (fraud features rebuild-online), whatever Redis lost (the stream's tail with it).
        self._journal(self.ingested.transactions, [_transaction_record(t) for t in txns])
        self.metrics.ingest_backlog.set(self.ingestor.backlog)
        if not self.log.append_many(records):  # in the OS before the answer leaves
            logger.error("answering %d prediction(s) that are not in the log", len(records))
        for result in results:
            self.metrics.predictions.labels(result["prediction"]).inc()
            self.metrics.scores.observe(float(result["probability"]))  # type: ignore[arg-type]
            if result["cold_start"]:
                self.metrics.cold_starts.inc()
        return results

    def _journal(self, journal: Journal, records: list[dict[str, Any]]) -> None:
        try:
            journal.append_many(records)
        except JournalError as exc:  # disk full, say: refuse rather than lose durability
            self.metrics.ingest_failures.inc()
            raise ServiceUnavailableError(f"cannot journal the ingested events: {exc}") from exc

    def ingest_labels(self, items: Sequence[LabelIn]) -> dict[str, Any]:
        """Journal arrived labels, then fold each into its merchant's online label state.

        Idempotent by transaction id: a label posted again is journaled again (the offline
        reader keeps the first) but not folded again.

        Returns:
            A ``LabelsOut``-shaped dict.

        Raises:
            ServiceUnavailableError: Redis unreachable or the journal cannot be written.
        """
        if not self.guard.up:
            raise self._store_unavailable()
        now = datetime.now(UTC)
        records: list[dict[str, Any]] = [
            {
                "transaction_id": item.transaction_id,
                "merchant_id": item.merchant_id,
                "is_fraud": int(item.is_fraud),
                "label_timestamp": item.label_timestamp or now,
                "fraud_pattern": item.fraud_pattern if item.is_fraud else "none",
            }
            for item in items
        ]
        self._journal(self.ingested.labels, records)
        duplicates = []
        for record in records:
            try:
                applied = self.writer.ingest_label(
                    record["merchant_id"],
                    record["transaction_id"],
                    to_epoch_us(record["label_timestamp"]),
                    bool(record["is_fraud"]),
                )
            except REDIS_ERRORS as exc:  # journaled: a rebuild (or a retry) folds it
                raise self._store_unavailable(exc) from exc
            if not applied:
                duplicates.append(record["transaction_id"])
        self.metrics.labels_ingested.inc(len(records) - len(duplicates))
        return {
            "received": len(records),
            "applied": len(records) - len(duplicates),
            "duplicates": duplicates,
        }

    def readiness(self) -> tuple[list[str], list[str]]:
        """Why the service cannot score now, and what is wrong although it can (no I/O).

        Returns:
            ``(reasons, warnings)``; ready when ``reasons`` is empty.
        """
        reasons = []
        if not self.guard.up:
            reasons.append(self.guard.reason)
        if self.models.bundle is None:
            reasons.append(self.models.unavailable_reason)
        warnings = [self.models.registry_missing] if self.models.registry_missing else []
        if idle := self.ingestor.liveness_warning():
            # A warning, not a reason: answers stay exact for every card without unfolded
            # transactions, and taking every replica out would turn a stale fold into an outage.
            warnings.append(idle)
        return reasons, warnings

    def refresh_gauges(self) -> None:
        """Set the state gauges of ``/metrics`` from the parts' current state."""
        bundle = self.models.bundle
        self.metrics.set_model(
            None if bundle is None else (bundle.name, bundle.version, bundle.run_id)
        )
        self.metrics.store_up.set(1 if self.guard.up else 0)
        self.metrics.model_loaded.set(0 if self.models.bundle is None else 1)
        self.metrics.model_registry_missing.set(1 if self.models.registry_missing else 0)
        self.metrics.ingest_backlog.set(self.ingestor.backlog)
        if isinstance(self.ingestor, StreamPublisher):
            stream = self.ingestor.stream.decode()
            alive, age = self.ingestor.workers_alive, self.ingestor.heartbeat_age_seconds
            if alive is not None:  # known after the first check
                self.metrics.ingest_workers_alive.labels(stream).set(alive)
            self.metrics.ingest_heartbeat_age.labels(stream).set(
                float("inf") if age is None else age
            )

    def close(self) -> None:
        """Stop polling, drain ingestion, close the prediction log (fsync + compaction)."""
        self.models.stop()
        self.ingestor.close()
        self.guard.stop()
        self.log.close()
        self.ingested.close()


def build_service(settings: Settings) -> ScoringService:
    """Open the store, resolve the reader and writer, start the threads; never block on I/O.

    Nothing here waits for Redis or MLflow: the model loads on a background thread and the
    online store's state is learnt by the guard's probe, so the API answers ``/health`` as soon
    as uvicorn is up, whatever state its dependencies are in.
    """
    from feature_engine.online.online_only import ONLINE_ONLY
    from feature_engine.online.redis_layout import RedisLayout
    from feature_engine.online.writer import OnlineStateWriter
    from feature_engine.store import open_store
    from feature_repo.services import FEATURE_SERVICE_NAME
    from fraud_platform.settings import load_params

    params = load_params(settings.paths.params_file)
    bound_registry_requests(
        settings.serving_registry_timeout_seconds, settings.serving_registry_retries
    )
    # The store, then the API's fail-fast client installed into it, then one Redis layout on
    # that client shared by the reader and the writer.
    store = open_store(settings, offline_store=ONLINE_ONLY)  # no DuckDB in the API (~45 MiB)
    client = install_fast_client(store, settings.serving_redis_timeout_seconds)
    layout = RedisLayout(store)
    readers = make_readers(store, layout, settings.serving_feature_path)
    writer = OnlineStateWriter(layout, params.features, STATE_VELOCITY)
    metrics = Metrics()
    uri, name, alias = settings.tracking_uri, settings.model_name, settings.model_alias
    models = ModelHolder(
        load=lambda: load_by_alias(uri, name, alias),
        version_now=lambda: current_version(uri, name, alias),
        service_features={name: reader.names for name, reader in readers.items()},
        poll_seconds=settings.serving_model_poll_seconds,
        target=settings.model_uri,
    )
    guard = OnlineStoreGuard(ping=make_probe(client))
    ingestor: Ingestor | StreamPublisher
    if settings.serving_ingest_mode == "stream":
        ingestor = StreamPublisher(
            client,
            writer,
            store.project,
            settings.serving_ingest_wait_seconds,
            store_up=lambda: guard.up,
            count_unwaited=metrics.ingest_unwaited.inc,
        )
    else:
        ingestor = Ingestor(
            write=writer.ingest_transaction,
            mode=settings.serving_ingest_mode,
            queue_size=settings.serving_ingest_queue_size,
            wait_seconds=settings.serving_ingest_wait_seconds,
            observe_lag=metrics.ingest_lag.observe,
            count_failure=metrics.ingest_failures.inc,
            store_up=lambda: guard.up,
            store_failed=guard.failed,
        )

    def store_changed(up: bool) -> None:
        ingestor.store_changed(up)  # wake readers waiting for writes that cannot happen now
        metrics.store_up.set(int(up))

    guard.on_change = store_changed
    # The default service's features first: the log's columns are those of every service served.
    served = sorted(readers, key=lambda name: name != FEATURE_SERVICE_NAME)
    log_types = feature_types(store, served)
    log = PredictionLog(
        settings.paths.prediction_log_dir,
        log_types,
        rotate_rows=settings.prediction_log_rotate_rows,
        rotate_seconds=settings.serving_log_rotate_seconds,
        fsync_seconds=settings.serving_log_fsync_seconds,
        count_failure=metrics.prediction_log_failures.inc,
    )
    log.start()
    ingested = IngestJournals.open(settings.paths.ingested_dir, settings.serving_log_fsync_seconds)
    models.start()
    ingestor.start()
    guard.start()
    return ScoringService(
        store,
        readers,
        models,
        ingestor,
        log,
        metrics,
        guard,
        params.features.max_lateness_seconds,
        writer,
        ingested,
        dict.fromkeys(log_types),
    )
