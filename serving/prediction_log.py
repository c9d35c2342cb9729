"""The prediction log: every scored transaction, in the OS before its answer is sent.

Each scored transaction is one record of the ``predictions`` journal
(:mod:`fraud_platform.journal`), appended inside the request, before the response: one JSON
line, one ``os.write``. So ``kill -9`` of the API loses no answered prediction, SIGTERM loses
none either, and a machine crash loses at most ``SERVING_LOG_FSYNC_SECONDS`` (1 s) of them.
Segments rotate every ``prediction_log_rotate_rows`` rows or ``SERVING_LOG_ROTATE_SECONDS``
seconds and are compacted to Parquet; readers (monitoring) go through
:func:`read_prediction_log`, which never returns a torn record.

Columns: ``transaction_id, customer_id, merchant_id, timestamp`` (event time, UTC), the request's
own ``amount, lat, long`` (so a transaction can be recomputed from its row), ``scored_at`` (UTC),
one column per feature under the feature's own name, then ``probability, prediction, threshold,
model_name, model_version, model_run_id, cold_start``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraud_platform.journal import Journal, JournalError, JournalRecordError, read_journal

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

LOG_NAME = "predictions"  # files predictions-<utc>-<pid>-<seq>.jsonl / .parquet

# What the request said, and when it was scored.
REQUEST_COLUMNS: dict[str, str] = {
    "transaction_id": "string",
    "customer_id": "string",
    "merchant_id": "string",
    "timestamp": "timestamp",
    "amount": "float64",
    "lat": "float64",
    "long": "float64",
    "scored_at": "timestamp",
}
# What the model answered.
OUTCOME_COLUMNS: dict[str, str] = {
    "probability": "float64",
    "prediction": "string",
    "threshold": "float64",
    "model_name": "string",
    "model_version": "string",
    "model_run_id": "string",
    "cold_start": "bool",
}
# Every column of the log that is not a feature (monitoring tells features from the rest).
NON_FEATURE_COLUMNS: frozenset[str] = frozenset(REQUEST_COLUMNS) | frozenset(OUTCOME_COLUMNS)


def log_columns(feature_types: Mapping[str, str]) -> dict[str, str]:
    """The log's columns, in order, for a feature service's features (name -> journal type)."""
    clash = NON_FEATURE_COLUMNS & set(feature_types)
    if clash:
        raise ValueError(f"feature names clash with prediction-log columns: {sorted(clash)}")
    return {**REQUEST_COLUMNS, **feature_types, **OUTCOME_COLUMNS}


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
            LOG_NAME,
            log_columns(feature_types),
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


def read_prediction_log(
    folder: Path, *, columns: Sequence[str] | None = None, modified_since: float | None = None
) -> pd.DataFrame:
    """Every complete row of the prediction log, oldest segment first: the one reader.

    Reads the open (JSON lines) and compacted (Parquet) segments of every API process; a row
    being written at that very moment is either whole or absent, never torn.

    Args:
        folder: The prediction log folder (``data/prediction_log``).
        columns: Read only these columns (those present).
        modified_since: Only segments modified at or after this POSIX time.

    Returns:
        The rows; an empty frame without columns when there are none.
    """
    table = read_journal(folder, LOG_NAME, columns=columns, modified_since=modified_since)
    return table.to_pandas()
