"""The prediction log: every scored transaction, appended off the hot path to Parquet.

Requests put one record each on a bounded queue; one thread buffers them and writes a file
``predictions-<utc>-<pid>-<seq>.parquet`` every ``prediction_log_rotate_rows`` rows or every
``SERVING_LOG_ROTATE_SECONDS`` seconds, whichever comes first, and once more on shutdown, so a
graceful stop loses nothing. Each file is written to a hidden temporary name and renamed into
place: readers (monitoring) never see a half-written file.

Columns: one per feature under the feature's own name, plus ``transaction_id, customer_id,
merchant_id, timestamp`` (event time, UTC), ``scored_at`` (UTC), ``probability, prediction,
threshold, model_name, model_version, model_run_id, cold_start``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STOP = object()


class PredictionLog:
    """Queue plus background Parquet writer."""

    def __init__(
        self, directory: Path, rotate_rows: int, rotate_seconds: float, queue_size: int
    ) -> None:
        """Set up; call :meth:`start` before use.

        Args:
            directory: Folder of the log files (created on start).
            rotate_rows: Rows per file at most.
            rotate_seconds: A non-empty buffer is written at least this often.
            queue_size: Bound of the queue; a full queue blocks the request (backpressure).
        """
        self.directory = directory
        self._rotate_rows = rotate_rows
        self._rotate_seconds = rotate_seconds
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.rows_written = 0
        self.files_written = 0
        self.failures = 0

    def start(self) -> None:
        """Create the folder and start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record (never drops; blocks only if the writer is far behind)."""
        self._queue.put(record)

    def _run(self) -> None:
        buffer: list[dict[str, Any]] = []
        first_at = 0.0
        while True:
            timeout = None
            if buffer:
                timeout = max(0.0, first_at + self._rotate_seconds - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush(buffer)
                return
            if item is not None:
                if not buffer:
                    first_at = time.monotonic()
                buffer.append(item)
            if buffer and (
                len(buffer) >= self._rotate_rows
                or time.monotonic() - first_at >= self._rotate_seconds
            ):
                self._flush(buffer)
                buffer = []

    def _flush(self, buffer: list[dict[str, Any]]) -> None:
        if not buffer:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"predictions-{stamp}-{os.getpid()}-{self._seq:06d}.parquet"
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            pq.write_table(pa.Table.from_pylist(buffer), tmp)
            os.replace(tmp, final)
        except Exception:  # disk full, say: keep serving, say so loudly
            self.failures += len(buffer)
            logger.exception("could not write %d prediction-log rows to %s", len(buffer), final)
            return
        self.rows_written += len(buffer)
        self.files_written += 1

    def close(self, timeout: float = 60.0) -> None:
        """Write everything queued and stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=timeout)
            self._thread = None
