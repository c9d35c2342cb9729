"""Freshness: fold each scored transaction into the online state (customer and merchant).

Decision (see ``SERVING_INGEST_MODE``): by default the write happens *right after scoring, off
the response path*, on one background thread, because the write costs two Redis round trips
(read both states, then one compare-and-set script per entity) plus the merge, more than the
whole feature read. To keep
the freshness of a synchronous write, a request first waits for any pending ingestion of its
own customer or merchant (:class:`PendingGate`): a customer's next transaction always sees the
previous one, as long as both reach the same worker process. With several worker processes,
use ``SERVING_INGEST_MODE=sync`` (the write happens inside the request, before the answer).

Lag (request received -> state written) is a Prometheus histogram. Concurrent writes of one
customer lose nothing: :class:`~feature_engine.online.writer.OnlineStateWriter`'s compare-and-set
script refuses a stale write and the merge runs again on the state it hands back.

Outages. Nothing here waits on a dead Redis: a reader stops waiting for pending writes as soon
as the store is known to be down (its request is then answered 503), the queue put never blocks
(a full queue makes the request write inline), and the background writer keeps a write that
failed on a connection error and retries it, in order, once the store answers again (the merge
is idempotent for a retried transaction), so a transaction answered before an outage still
reaches the online state after it, as long as the process lives.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from feature_engine.state.fold import Transaction
from serving.online_store import REDIS_ERRORS

logger = logging.getLogger(__name__)

EntityKey = tuple[str, str]  # ("customer" | "merchant", id)


def entity_keys(txn: Transaction) -> tuple[EntityKey, EntityKey]:
    """The two states a transaction changes."""
    return ("customer", txn.customer_id), ("merchant", txn.merchant_id)


class PendingGate:
    """Counts pending ingestions per entity; lets a reader wait until its entities are clear."""

    def __init__(self) -> None:
        """Empty gate."""
        self._pending: Counter[EntityKey] = Counter()
        self._cond = threading.Condition()

    def add(self, keys: Iterable[EntityKey]) -> None:
        """Mark entities as having a write in flight."""
        with self._cond:
            self._pending.update(keys)

    def done(self, keys: Iterable[EntityKey]) -> None:
        """A write finished (or failed): release its entities."""
        with self._cond:
            self._pending.subtract(keys)
            for key in [k for k, n in self._pending.items() if n <= 0]:
                del self._pending[key]
            self._cond.notify_all()

    def wake(self) -> None:
        """Make every waiter re-check its condition (the store went down, say)."""
        with self._cond:
            self._cond.notify_all()

    def wait_clear(
        self,
        keys: Sequence[EntityKey],
        timeout: float,
        give_up: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Wait until none of ``keys`` has a write in flight, or ``give_up()`` turns true.

        Args:
            keys: The entities the reader is about to read.
            timeout: Longest wait in seconds.
            give_up: Checked whenever the gate changes or :meth:`wake` is called.

        Returns:
            False if the timeout passed first (the read may then miss that write).
        """

        def clear() -> bool:
            return not any(key in self._pending for key in keys)

        with self._cond:
            if clear():
                return True
            self._cond.wait_for(lambda: clear() or give_up(), timeout)
            return clear()


@dataclass(frozen=True)
class _Job:
    txns: tuple[Transaction, ...]
    received: float  # perf_counter() when the request arrived


class Ingestor:
    """Applies the writes, inline or on a background thread, and measures their lag."""

    def __init__(
        self,
        write: Callable[[Transaction], None],
        mode: str,
        queue_size: int,
        wait_seconds: float,
        observe_lag: Callable[[float], None],
        count_failure: Callable[[], None],
        store_up: Callable[[], bool] = lambda: True,
        store_failed: Callable[[BaseException], None] = lambda exc: None,
        retry_seconds: float = 0.25,
    ) -> None:
        """Set up the writer; call :meth:`start` before use.

        Args:
            write: Folds one transaction into the online state (the OnlineStateWriter).
            mode: ``async`` or ``sync``.
            queue_size: Bound of the queue; a full queue makes the request write inline.
            wait_seconds: Longest wait of a reader for its entities' pending writes.
            observe_lag: Records one lag in seconds.
            count_failure: Counts a write given up (logged; the request had been answered).
            store_up: Whether the online store counts as up (the guard's state).
            store_failed: Reports a connection error to the guard.
            retry_seconds: Pause of the background writer between retries while the store is
                down.
        """
        self._write = write
        self.mode = mode
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._wait_seconds = wait_seconds
        self._observe_lag = observe_lag
        self._count_failure = count_failure
        self._store_up = store_up
        self._store_failed = store_failed
        self._retry_seconds = retry_seconds
        self._closing = threading.Event()
        self.gate = PendingGate()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background writer (async mode)."""
        if self.mode == "async":
            self._thread = threading.Thread(target=self._run, name="ingestor", daemon=True)
            self._thread.start()

    def before_read(self, txns: Sequence[Transaction]) -> bool:
        """Wait for pending writes of these transactions' entities (read-your-writes).

        Returns at once when the store goes down meanwhile (the caller then answers 503).

        Returns:
            False if the wait ended before the entities were clear.
        """
        keys = [key for txn in txns for key in entity_keys(txn)]
        return self.gate.wait_clear(keys, self._wait_seconds, give_up=self._store_down)

    def _store_down(self) -> bool:
        return not self._store_up()

    def liveness_warning(self) -> str:
        """Nothing to warn about: ingestion runs in this process."""
        return ""

    def store_changed(self, up: bool) -> None:
        """The guard's hook: wake readers waiting on the gate when the store goes down."""
        if not up:
            self.gate.wake()

    def submit(self, txns: Sequence[Transaction], received: float) -> None:
        """Ingest scored transactions, in timestamp order.

        Raises:
            Exception: In sync mode, whatever the write raised (Redis down, say).
        """
        ordered = tuple(sorted(txns, key=lambda t: (t.ts_us, t.transaction_id)))
        if self.mode == "async":
            keys = [key for txn in ordered for key in entity_keys(txn)]
            self.gate.add(keys)
            try:
                self._queue.put_nowait(_Job(ordered, received))
                return
            except queue.Full:
                self.gate.done(keys)  # backpressure: this request writes inline instead
        self._apply(_Job(ordered, received), raise_errors=True)

    def _apply(self, job: _Job, raise_errors: bool) -> None:
        for txn in job.txns:
            try:
                self._write(txn)
            except Exception:
                self._count_failure()
                if raise_errors:
                    raise
                logger.exception("ingestion of %s failed", txn.transaction_id)
        self._observe_lag(time.perf_counter() - job.received)

    def _apply_retrying(self, job: _Job) -> None:
        """Apply a queued job; on a connection error, wait for the store and go on from there."""
        remaining = list(job.txns)
        while remaining:
            if not self._store_up():
                if self._closing.is_set():
                    break  # shutting down during an outage: give up, counted below
                time.sleep(self._retry_seconds)
                continue
            try:
                self._write(remaining[0])
            except REDIS_ERRORS as exc:
                self._store_failed(exc)
                if self._closing.is_set():
                    break
                continue  # retried once the store answers (the merge is idempotent)
            except Exception:
                self._count_failure()
                logger.exception("ingestion of %s failed", remaining[0].transaction_id)
            remaining.pop(0)
        for txn in remaining:
            self._count_failure()
            logger.error("ingestion of %s given up: store down at shutdown", txn.transaction_id)
        if not remaining:
            self._observe_lag(time.perf_counter() - job.received)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._apply_retrying(job)
            finally:
                self.gate.done([key for txn in job.txns for key in entity_keys(txn)])

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue (every accepted write is applied) and stop.

        While the online store is down, the writes still queued are given up (counted as
        failures) instead of waiting for it.
        """
        self._closing.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def backlog(self) -> int:
        """Writes waiting in the queue."""
        return self._queue.qsize()
