"""The prediction log's one writer: every scored transaction, in the OS before its answer is sent.

Each scored transaction is one record of the ``predictions`` journal
(:mod:`fraud_platform.journal`), appended inside the request, before the response: one JSON
line, one ``os.write``. So ``kill -9`` of the API loses no answered prediction, SIGTERM loses
none either, and a machine crash loses at most ``SERVING_LOG_FSYNC_SECONDS`` (1 s) of them.
Segments rotate every ``prediction_log_rotate_rows`` rows or ``SERVING_LOG_ROTATE_SECONDS``
seconds and are compacted to Parquet.

The record is a contract (:mod:`fraud_platform.contracts`): ``transaction_id, customer_id,
merchant_id, timestamp`` (event time, UTC), the request's own ``amount, lat, long`` (so a
transaction can be recomputed from its row), ``scored_at`` (UTC), one column per feature under
the feature's own name, then ``probability, prediction, threshold, model_name, model_version,
model_run_id, cold_start``. :func:`prediction_record` builds it here, and only here; monitoring
and the simulation read it with :func:`fraud_platform.contracts.read_prediction_log`, which
never returns a torn record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraud_platform import contracts as c
from fraud_platform.journal import Journal, JournalError, JournalRecordError

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)


class PredictionLog:
    """The API's prediction journal; a failed write is counted and logged, never a failed answer."""

    def __init__(
        self,
        directory: Path,
        feature_types: Mapping[str, str],
        *,
        rotate_rows: int,
        rotate_seconds: float,
        fsync_seconds: float,
        count_failure: Callable[[], None] = lambda: None,
    ) -> None:
        """Set up; call :meth:`start` before use.

        Args:
            directory: Folder of the log (created on start).
            feature_types: Feature name -> journal type (``int64``/``float64``).
            rotate_rows: Rows per segment at most.
            rotate_seconds: A segment is sealed (and compacted to Parquet) at least this often.
            fsync_seconds: Longest time a row stays in the OS without ``fsync``.
            count_failure: Called once per row that could not be written.
        """
        self.directory = directory
        self.journal = Journal(
            directory,
            c.PREDICTION_LOG,
            c.prediction_log_columns(feature_types),
            fsync_seconds=fsync_seconds,
            rotate_records=rotate_rows,
            rotate_seconds=rotate_seconds,
        )
        self._count_failure = count_failure

    def start(self) -> None:
        """Compact what a killed predecessor left, open a segment, start the fsync thread."""
        self.journal.open()
        if self.journal.stats.recovered:
            logger.warning(
                "prediction log: recovered %d segment(s) of a process that did not stop cleanly",
                self.journal.stats.recovered,
            )

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> bool:
        """Write a request's records (one system call). Call before answering.

        Returns:
            Whether they were written; on failure they are counted and logged (the scoring
            answer still goes out: an unlogged prediction beats no prediction).
        """
        try:
            self.journal.append_many(records)
            return True
        except (JournalError, JournalRecordError) as exc:
            for _ in records:
                self._count_failure()
            logger.error("prediction log: %d row(s) not written: %s", len(records), exc)
            return False

    def close(self) -> None:
        """Seal, fsync and compact the open segment (graceful shutdown)."""
        self.journal.close()


def prediction_record(
    request: Mapping[str, Any],
    scored_at: datetime,
    features: Mapping[str, Any],
    *,
    probability: float,
    prediction: str,
    threshold: float,
    model: Mapping[str, str],
    cold_start: bool,
) -> dict[str, Any]:
    """One row of the log: the request, when it was scored, its features, the model's answer.

    Args:
        request: The request's fields (:data:`fraud_platform.contracts.REQUEST_FIELDS`).
        scored_at: When it was scored (UTC).
        features: The features the model saw, by name (unknown ones as NaN or ``None``).
        probability: The model's fraud probability.
        prediction: ``FRAUD``, ``REVIEW`` or ``LEGIT``.
        threshold: The model's threshold.
        model: ``name``, ``version`` and ``run_id`` of the model version that scored it.
        cold_start: Whether the customer or the merchant was new.

    Returns:
        The record, keyed by the columns of :func:`fraud_platform.contracts.prediction_log_columns`.
    """
    return {
        **{name: request[name] for name in c.REQUEST_FIELDS},
        c.SCORED_AT: scored_at,
        **features,
        c.PROBABILITY: probability,
        c.PREDICTION: prediction,
        c.THRESHOLD: threshold,
        "model_name": model["name"],
        "model_version": model["version"],
        "model_run_id": model["run_id"],
        "cold_start": cold_start,
    }
